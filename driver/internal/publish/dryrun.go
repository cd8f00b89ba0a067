package publish

import (
	"context"
	"fmt"

	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	ssv1 "github.com/sscsi/secrets-store/driver/apis/v1"
	"github.com/sscsi/secrets-store/driver/internal/spc"
	"github.com/sscsi/secrets-store/internal/atomicfs"
)

// DryRun is a mount without a volume, for SecretProviderClass authors
// (`sscsi fetch`): the class is checked, the provider called and its answer
// validated exactly as for a pod's first mount, with the same errors, and
// nothing is written.
type DryRun struct {
	// Class is the SecretProviderClass, as its author wrote it.
	Class *ssv1.SecretProviderClass
	// Pod stands in for the pod: its namespace and service account decide
	// the identity; the name and UID only reach the provider.
	Pod Pod
	// Tokens is kubelet's csi.storage.k8s.io/serviceAccount.tokens JSON.
	Tokens string
	// TargetPath is an empty directory on a memory filesystem: legacy
	// providers write into it; the caller reads and removes it.
	TargetPath string
	Limits     atomicfs.Limits
}

// DryRunResult is what the provider answered.
type DryRunResult struct {
	Provider string
	Versions []*v1alpha1.ObjectVersion
	// Files are the validated files; nil when Legacy.
	Files []atomicfs.File
	// Legacy: the provider wrote into TargetPath itself.
	Legacy bool
}

// oneClass is a spc.Getter holding the class under test.
type oneClass struct{ c *ssv1.SecretProviderClass }

func (o oneClass) Get(_ context.Context, namespace, name string) (*ssv1.SecretProviderClass, error) {
	if o.c.Name != name || o.c.Namespace != namespace {
		return nil, fmt.Errorf("%w: %s/%s", spc.ErrNotFound, namespace, name)
	}
	return o.c, nil
}

// Run performs the dry run through providers (the driver's plugin client).
func (d DryRun) Run(ctx context.Context, providers Providers) (*DryRunResult, error) {
	if d.Class == nil || d.Pod.Namespace == "" || d.Pod.ServiceAccount == "" || d.TargetPath == "" {
		return nil, fmt.Errorf("%w: a dry run needs a class, a namespace, a service account and a target path", ErrInvalidRequest)
	}
	class := d.Class.DeepCopy()
	class.Namespace = d.Pod.Namespace
	s, err := spc.Resolve(ctx, oneClass{class}, d.Pod.Namespace, class.Name)
	if err != nil {
		return nil, withUpstreamSPCPhrase(d.Pod.Namespace, class.Name, err)
	}
	vc := map[string]string{
		AttrSPC: class.Name, AttrPodNamespace: d.Pod.Namespace, AttrPodName: d.Pod.Name, AttrPodUID: d.Pod.UID,
		AttrServiceAccount: d.Pod.ServiceAccount, "csi.storage.k8s.io/ephemeral": "true",
	}
	var secrets map[string]string
	if d.Tokens != "" {
		secrets = map[string]string{AttrTokens: d.Tokens}
	}
	mreq, err := buildMountRequest(s, Request{TargetPath: d.TargetPath, VolumeContext: vc, Secrets: secrets}, nil)
	if err != nil {
		return nil, err
	}
	a, err := ask(ctx, providers, s, mreq, d.Limits)
	if err != nil {
		return nil, fmt.Errorf("failed to mount secrets store objects for pod %s/%s, err: %w", d.Pod.Namespace, d.Pod.Name, err)
	}
	return &DryRunResult{Provider: s.Provider, Versions: a.versions, Files: a.files, Legacy: a.legacy}, nil
}
