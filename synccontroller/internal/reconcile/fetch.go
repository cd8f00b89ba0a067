package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/status"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	ssv1 "github.com/sscsi/secrets-store/driver/apis/v1"
	"github.com/sscsi/secrets-store/internal/pluginclient"
	"github.com/sscsi/secrets-store/providers/plugin"
	syncv1 "github.com/sscsi/secrets-store/synccontroller/apis/v1alpha1"
)

// Mount attributes the controller sets, as kubelet does for a pod's volume.
const (
	attrPodNamespace   = "csi.storage.k8s.io/pod.namespace"
	attrServiceAccount = "csi.storage.k8s.io/serviceAccount.name"
	attrTokens         = "csi.storage.k8s.io/serviceAccount.tokens"
	attrSPC            = "secretProviderClass"
)

// mountTimeout bounds one provider call.
const mountTimeout = 60 * time.Second

// fetch calls the provider and returns its files by path. The files are
// secret and live only in memory.
func (r *Reconciler) fetch(ctx context.Context, ss *syncv1.SecretSync, spc *ssv1.SecretProviderClass, tokens string) (map[string][]byte, error) {
	provider := string(spc.Spec.Provider)
	if err := pluginclient.ValidateName(provider); err != nil {
		return nil, fail(syncv1.ReasonControllerSPCError, "SecretProviderClass %s/%s: spec.provider: %v", spc.Namespace, spc.Name, err)
	}
	for _, k := range slices.Sorted(maps.Keys(spc.Spec.Parameters)) {
		if reservedParameter(k) {
			return nil, fail(syncv1.ReasonControllerSPCError, "SecretProviderClass %s/%s: spec.parameters: key %q is reserved for the mount's identity (kubelet and this controller set it); remove it", spc.Namespace, spc.Name, k)
		}
	}
	attrs := make(map[string]string, len(spc.Spec.Parameters)+6)
	maps.Copy(attrs, spc.Spec.Parameters)
	attrs[attrPodNamespace] = ss.Namespace
	attrs[attrServiceAccount] = ss.Spec.ServiceAccountName
	attrs[attrSPC] = spc.Name
	attrs[attrTokens] = tokens
	// The SecretSync's own identity: providers that keep state per pod
	// (provider-vault's leased values) keep it per SecretSync with it. The
	// UID makes a SecretSync deleted and created again a new owner.
	attrs[plugin.AttrSecretSyncName] = ss.Name
	attrs[plugin.AttrSecretSyncUID] = string(ss.UID)
	ab, err := json.Marshal(attrs)
	if err != nil {
		return nil, fail(syncv1.ReasonControllerInternal, "encode mount attributes: %v", err)
	}
	req := &v1alpha1.MountRequest{Attributes: string(ab), Secrets: "null", Permission: "420"}
	mctx, cancel := context.WithTimeout(ctx, mountTimeout)
	defer cancel()
	resp, err := r.cfg.Provider.Mount(mctx, provider, req)
	switch {
	case errors.Is(err, pluginclient.ErrProviderNotFound), errors.Is(err, pluginclient.ErrProviderUnavailable):
		return nil, fail(syncv1.ReasonProviderNotAvailable, "provider %q of SecretProviderClass %s/%s: %v; is it a container of the sync controller's pod?", provider, spc.Namespace, spc.Name, err)
	case err != nil:
		st := status.Convert(err)
		return nil, fail(syncv1.ReasonProviderError, "provider %q: %s: %s", provider, st.Code(), st.Message())
	case resp.GetError().GetCode() != "":
		return nil, fail(syncv1.ReasonProviderError, "provider %q answered error %s", provider, resp.GetError().GetCode())
	case len(resp.GetFiles()) == 0:
		return nil, fail(syncv1.ReasonProviderError, "provider %q returned no files: a provider that writes into the target path itself cannot be used without a pod", provider)
	}
	files := make(map[string][]byte, len(resp.GetFiles()))
	for _, f := range resp.GetFiles() {
		if _, dup := files[f.GetPath()]; dup {
			return nil, fail(syncv1.ReasonProviderError, "provider %q returned file %q twice", provider, f.GetPath())
		}
		files[f.GetPath()] = f.GetContents()
	}
	return files, nil
}

// reservedParameter reports whether a SecretProviderClass parameter would
// pose as the mount's identity: kubelet's pod attributes (a forged pod UID
// would make a provider keep this SecretSync's leased values under a
// pod's key) and the SecretSync key this controller sets.
func reservedParameter(k string) bool {
	return strings.HasPrefix(k, "csi.storage.k8s.io/") || k == plugin.AttrSecretSyncName || k == plugin.AttrSecretSyncUID
}

// fileNames lists the paths of files for messages (never contents).
func fileNames(files map[string][]byte) string {
	names := slices.Sorted(maps.Keys(files))
	if len(names) > 20 {
		names = append(names[:20], fmt.Sprintf("... (%d in all)", len(names)))
	}
	return strings.Join(names, ", ")
}
