package plugin

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"
)

// Keys kubelet and the driver put into the mount attributes.
const (
	AttrPodName        = "csi.storage.k8s.io/pod.name"
	AttrPodNamespace   = "csi.storage.k8s.io/pod.namespace"
	AttrPodUID         = "csi.storage.k8s.io/pod.uid"
	AttrServiceAccount = "csi.storage.k8s.io/serviceAccount.name"
	AttrTokens         = "csi.storage.k8s.io/serviceAccount.tokens" //nolint:gosec // G101: an attribute name, not a credential
	AttrSPCName        = "secretProviderClass"
)

// Keys our SecretSync controller adds to the mount attributes: the
// SecretSync a pod-less mount is for (its namespace is AttrPodNamespace).
// Providers that keep state per pod (provider-vault's leased values) keep
// it per SecretSync with them; upstream providers ignore unknown keys, and
// upstream's controller does not send them.
const (
	AttrSecretSyncName = "secrets-store.sync.x-k8s.io/secretsync.name"
	AttrSecretSyncUID  = "secrets-store.sync.x-k8s.io/secretsync.uid"
)

// Pod identifies the pod a volume is mounted for.
type Pod struct {
	Name           string
	Namespace      string
	UID            string
	ServiceAccount string
}

// SecretSync identifies the SecretSync a pod-less mount is for (empty
// for a pod's volume). Its namespace is the Pod's.
type SecretSync struct {
	Name string
	UID  string
}

// Token is a service-account token kubelet requested for one audience.
type Token struct {
	Token               string    `json:"token"`
	ExpirationTimestamp time.Time `json:"expirationTimestamp"`
}

// Request is the decoded form of a v1alpha1.MountRequest. Backends never see
// JSON strings.
type Request struct {
	// Attributes are the SecretProviderClass parameters overlaid with the
	// volume attributes, token key removed.
	Attributes map[string]string
	// Secrets is the nodePublishSecretRef data (token key removed).
	Secrets map[string]string
	// TargetPath is the volume's tmpfs mount on the host.
	TargetPath string
	// Permission is the default file mode the driver asks for.
	Permission fs.FileMode
	// CurrentVersions maps object id to the version mounted now (rotation).
	CurrentVersions map[string]string
	// Pod is the pod the volume belongs to.
	Pod Pod
	// SecretSync is the SecretSync a mount without a pod is for (set by
	// our SecretSync controller; empty otherwise).
	SecretSync SecretSync
	// Tokens maps audience to token; read from Secrets first, then
	// Attributes (kubelet puts them in one or the other).
	Tokens map[string]Token
}

// Token returns the token for audience, or an error wrapping
// ErrUnauthenticated that says how to configure it.
func (r *Request) Token(audience string) (Token, error) {
	t, ok := r.Tokens[audience]
	if !ok || t.Token == "" {
		return Token{}, fmt.Errorf("%w: no service account token for audience %q; add it to the CSIDriver's tokenRequests", ErrUnauthenticated, audience)
	}
	return t, nil
}

// DecodeRequest turns the wire request into a Request. Errors wrap
// ErrInvalidParameters and never quote values (they may be secret).
func DecodeRequest(in *v1alpha1.MountRequest) (*Request, error) {
	r := &Request{TargetPath: in.GetTargetPath(), CurrentVersions: map[string]string{}}
	if err := decodeMap(in.GetAttributes(), &r.Attributes); err != nil {
		return nil, fmt.Errorf("%w: attributes: %v", ErrInvalidParameters, err)
	}
	if err := decodeMap(in.GetSecrets(), &r.Secrets); err != nil {
		return nil, fmt.Errorf("%w: secrets: not a JSON object of strings", ErrInvalidParameters)
	}
	perm := strings.TrimSpace(in.GetPermission())
	r.Permission = 0o644
	if perm != "" {
		var p uint64
		if err := json.Unmarshal([]byte(perm), &p); err != nil {
			// Some drivers send the string form, e.g. "\"420\"".
			s, serr := strconv.Unquote(perm)
			if serr != nil {
				return nil, fmt.Errorf("%w: permission %q is not a number", ErrInvalidParameters, perm)
			}
			if p, err = strconv.ParseUint(s, 10, 32); err != nil {
				return nil, fmt.Errorf("%w: permission %q is not a number", ErrInvalidParameters, perm)
			}
		}
		if p > 0o777 {
			return nil, fmt.Errorf("%w: permission %#o has bits beyond 0777", ErrInvalidParameters, p)
		}
		r.Permission = fs.FileMode(p)
	}
	for _, v := range in.GetCurrentObjectVersion() {
		r.CurrentVersions[v.GetId()] = v.GetVersion()
	}
	tokens, err := takeTokens(r.Secrets, r.Attributes)
	if err != nil {
		return nil, err
	}
	r.Tokens = tokens
	r.Pod = Pod{
		Name:           r.Attributes[AttrPodName],
		Namespace:      r.Attributes[AttrPodNamespace],
		UID:            r.Attributes[AttrPodUID],
		ServiceAccount: r.Attributes[AttrServiceAccount],
	}
	r.SecretSync = SecretSync{Name: r.Attributes[AttrSecretSyncName], UID: r.Attributes[AttrSecretSyncUID]}
	return r, nil
}

func decodeMap(s string, out *map[string]string) error {
	*out = map[string]string{}
	s = strings.TrimSpace(s)
	if s == "" || s == "null" {
		return nil
	}
	m := map[string]string{}
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return fmt.Errorf("not a JSON object of strings")
	}
	*out = m
	return nil
}

// takeTokens removes the token key from both maps so that backends cannot
// log it by accident, preferring the secrets map.
func takeTokens(secrets, attrs map[string]string) (map[string]Token, error) {
	raw, ok := secrets[AttrTokens]
	if !ok || raw == "" {
		raw = attrs[AttrTokens]
	}
	delete(secrets, AttrTokens)
	delete(attrs, AttrTokens)
	tokens := map[string]Token{}
	if raw == "" {
		return tokens, nil
	}
	if err := json.Unmarshal([]byte(raw), &tokens); err != nil {
		return nil, fmt.Errorf("%w: %s is not a JSON object of {token, expirationTimestamp}", ErrInvalidParameters, AttrTokens)
	}
	return tokens, nil
}
