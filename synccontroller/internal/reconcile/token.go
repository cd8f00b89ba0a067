package reconcile

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	syncv1 "github.com/sscsi/secrets-store/synccontroller/apis/v1alpha1"
)

// token is one entry of csi.storage.k8s.io/serviceAccount.tokens, the
// shape kubelet gives CSI drivers and providers read.
type token struct {
	Token               string    `json:"token"`
	ExpirationTimestamp time.Time `json:"expirationTimestamp"`
}

// tokens mints one token per audience for spec.serviceAccountName and
// returns them as the JSON value of csi.storage.k8s.io/serviceAccount.tokens.
// The returned string is secret: it is never logged.
func (r *Reconciler) tokens(ctx context.Context, ss *syncv1.SecretSync) (string, error) {
	auds := r.cfg.Audiences
	if len(auds) == 0 {
		auds = []string{""} // the API server's own audience, as a CSI tokenRequest with audience ""
	}
	secs := int64(r.cfg.TokenTTL / time.Second)
	out := make(map[string]token, len(auds))
	for _, aud := range auds {
		tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &secs}}
		if aud != "" {
			tr.Spec.Audiences = []string{aud}
		}
		got, err := r.cfg.Core.CoreV1().ServiceAccounts(ss.Namespace).CreateToken(ctx, ss.Spec.ServiceAccountName, tr, metav1.CreateOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return "", fail(syncv1.ReasonServiceAccountError, "service account %s/%s (spec.serviceAccountName) not found: create it or fix spec.serviceAccountName",
				ss.Namespace, ss.Spec.ServiceAccountName)
		case apierrors.IsForbidden(err) && strings.Contains(err.Error(), "ValidatingAdmissionPolicy"):
			return "", fail(syncv1.ReasonVAPCheckFailed, "token for service account %s/%s (audience %q) refused by an admission policy: %v",
				ss.Namespace, ss.Spec.ServiceAccountName, aud, err)
		case apierrors.IsForbidden(err):
			return "", fail(syncv1.ReasonServiceAccountError, "the controller may not request tokens for service account %s/%s: %v",
				ss.Namespace, ss.Spec.ServiceAccountName, err)
		case err != nil:
			return "", fail(syncv1.ReasonServiceAccountError, "token for service account %s/%s: %v", ss.Namespace, ss.Spec.ServiceAccountName, err)
		}
		out[aud] = token{Token: got.Status.Token, ExpirationTimestamp: got.Status.ExpirationTimestamp.Time}
	}
	b, err := json.Marshal(out)
	if err != nil {
		return "", fail(syncv1.ReasonControllerInternal, "encode tokens: %v", err)
	}
	return string(b), nil
}
