package vaulttest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Role binds a Vault auth role to Kubernetes service accounts.
type Role struct {
	// ServiceAccounts and Namespaces the role accepts (both required; "*" is Vault's wildcard for
	// the kubernetes method only).
	ServiceAccounts, Namespaces []string
	// Policies attached to the tokens the role issues.
	Policies []string
	// TTL and MaxTTL of the issued tokens (0: the mount's defaults).
	TTL, MaxTTL time.Duration
	// Audience the service account token must carry. The kubernetes method: optional (any
	// audience the apiserver accepts). The jwt method: required, default "vault".
	Audience string
}

// reviewerNamespace and reviewerName name the service account whose token Vault's kubernetes auth
// method uses to call the TokenReview API.
const (
	reviewerNamespace = "kube-system"
	reviewerName      = "vaulttest-token-reviewer"
)

// EnableKubernetesAuth enables the kubernetes auth method at mount, configured against the
// kube-apiserver of rc: a service account with system:auth-delegator reviews every login's token
// (a real TokenReview per login).
func (s *Server) EnableKubernetesAuth(t T, mount string, rc *rest.Config) {
	t.Helper()
	mount = strings.Trim(mount, "/")
	cs := clientset(t, rc)
	ctx := t.Context()
	_, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: reviewerName},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "system:auth-delegator"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: reviewerNamespace, Name: reviewerName}},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("vaulttest: token reviewer binding: %v", err)
	}
	// A long-lived token: the local cluster's Vault outlives any one test.
	reviewerJWT := ServiceAccountToken(t, rc, reviewerNamespace, reviewerName, 30*24*time.Hour)
	if err := s.Client(t).Sys().EnableAuthWithOptionsWithContext(ctx, mount, &api.EnableAuthOptions{Type: "kubernetes"}); err != nil {
		t.Fatalf("vaulttest: enabling kubernetes auth at %s: %v", mount, err)
	}
	s.Write(t, "auth/"+mount+"/config", map[string]any{
		"kubernetes_host":      rc.Host,
		"kubernetes_ca_cert":   string(caPEM(t, rc)),
		"token_reviewer_jwt":   reviewerJWT,
		"disable_local_ca_jwt": true,
	})
}

// KubernetesRole writes a role of the kubernetes auth method at mount.
func (s *Server) KubernetesRole(t T, mount, name string, r Role) {
	t.Helper()
	if len(r.ServiceAccounts) == 0 || len(r.Namespaces) == 0 {
		t.Fatalf("vaulttest: kubernetes role %s: ServiceAccounts and Namespaces are required", name)
	}
	data := map[string]any{
		"bound_service_account_names":      r.ServiceAccounts,
		"bound_service_account_namespaces": r.Namespaces,
		"token_policies":                   r.Policies,
	}
	if r.Audience != "" {
		data["audience"] = r.Audience
	}
	addTTLs(data, r)
	s.Write(t, "auth/"+strings.Trim(mount, "/")+"/role/"+name, data)
}

// EnableJWTAuth enables the jwt auth method at mount, validating service account tokens of the
// kube-apiserver of rc with its signing keys (from its JWKS) and its issuer.
func (s *Server) EnableJWTAuth(t T, mount string, rc *rest.Config) {
	t.Helper()
	mount = strings.Trim(mount, "/")
	raw := clientset(t, rc).Discovery().RESTClient()
	ctx := t.Context()
	disc, err := raw.Get().AbsPath("/.well-known/openid-configuration").DoRaw(ctx)
	if err != nil {
		t.Fatalf("vaulttest: reading the apiserver's OIDC discovery document: %v", err)
	}
	var d struct {
		Issuer string `json:"issuer"`
	}
	if err := json.Unmarshal(disc, &d); err != nil || d.Issuer == "" {
		t.Fatalf("vaulttest: OIDC discovery document without an issuer (%v)", err)
	}
	jwks, err := raw.Get().AbsPath("/openid/v1/jwks").DoRaw(ctx)
	if err != nil {
		t.Fatalf("vaulttest: reading the apiserver's JWKS: %v", err)
	}
	keys, err := jwksToPEM(jwks)
	if err != nil {
		t.Fatalf("vaulttest: apiserver JWKS: %v", err)
	}
	if err := s.Client(t).Sys().EnableAuthWithOptionsWithContext(ctx, mount, &api.EnableAuthOptions{Type: "jwt"}); err != nil {
		t.Fatalf("vaulttest: enabling jwt auth at %s: %v", mount, err)
	}
	s.Write(t, "auth/"+mount+"/config", map[string]any{
		"jwt_validation_pubkeys": keys,
		"bound_issuer":           d.Issuer,
	})
}

// JWTRole writes a role of the jwt auth method at mount accepting the tokens of the service
// accounts r.ServiceAccounts in r.Namespaces (no wildcards) with audience r.Audience.
func (s *Server) JWTRole(t T, mount, name string, r Role) {
	t.Helper()
	if r.Audience == "" {
		r.Audience = "vault"
	}
	var subjects []string
	for _, ns := range r.Namespaces {
		for _, sa := range r.ServiceAccounts {
			subjects = append(subjects, "system:serviceaccount:"+ns+":"+sa)
		}
	}
	if len(subjects) == 0 {
		t.Fatalf("vaulttest: jwt role %s: ServiceAccounts and Namespaces are required", name)
	}
	data := map[string]any{
		"role_type":       "jwt",
		"user_claim":      "sub",
		"bound_audiences": []string{r.Audience},
		"bound_claims":    map[string]any{"sub": subjects},
		"token_policies":  r.Policies,
	}
	addTTLs(data, r)
	s.Write(t, "auth/"+strings.Trim(mount, "/")+"/role/"+name, data)
}

func addTTLs(data map[string]any, r Role) {
	if r.TTL > 0 {
		data["token_ttl"] = r.TTL.String()
	}
	if r.MaxTTL > 0 {
		data["token_max_ttl"] = r.MaxTTL.String()
	}
}

// Login logs in at auth/<mount>/login with role and a service account token (kubernetes or jwt
// method) and returns the Vault client token.
func (s *Server) Login(t T, mount, role, jwt string) string {
	t.Helper()
	sec, err := s.ClientWithToken(t, "").Logical().WriteWithContext(t.Context(),
		"auth/"+strings.Trim(mount, "/")+"/login", map[string]any{"role": role, "jwt": jwt})
	if err != nil {
		t.Fatalf("vaulttest: login at %s as role %s: %v", mount, role, err)
	}
	if sec == nil || sec.Auth == nil || sec.Auth.ClientToken == "" {
		t.Fatalf("vaulttest: login at %s as role %s: no token in the response", mount, role)
	}
	return sec.Auth.ClientToken
}

// ServiceAccountToken creates namespace and service account name if missing and returns a token
// for it from the TokenRequest API, valid for ttl, with audiences (none: the apiserver's default).
func ServiceAccountToken(t T, rc *rest.Config, namespace, name string, ttl time.Duration, audiences ...string) string {
	t.Helper()
	cs := clientset(t, rc)
	ctx := t.Context()
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("vaulttest: namespace %s: %v", namespace, err)
	}
	_, err = cs.CoreV1().ServiceAccounts(namespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("vaulttest: service account %s/%s: %v", namespace, name, err)
	}
	secs := int64(ttl / time.Second)
	tr, err := cs.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: audiences, ExpirationSeconds: &secs},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("vaulttest: token for %s/%s: %v", namespace, name, err)
	}
	return tr.Status.Token
}

func clientset(t T, rc *rest.Config) *kubernetes.Clientset {
	t.Helper()
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatalf("vaulttest: Kubernetes client: %v", err)
	}
	return cs
}

// caPEM is the CA bundle rc trusts for the apiserver.
func caPEM(t T, rc *rest.Config) []byte {
	t.Helper()
	if len(rc.CAData) > 0 {
		return rc.CAData
	}
	if rc.CAFile != "" {
		b, err := os.ReadFile(rc.CAFile)
		if err != nil {
			t.Fatalf("vaulttest: apiserver CA: %v", err)
		}
		return b
	}
	t.Fatalf("vaulttest: the rest.Config names no apiserver CA")
	return nil
}

// jwksToPEM converts the RSA and EC public keys of a JSON Web Key Set to PEM (PKIX).
func jwksToPEM(jwks []byte) ([]string, error) {
	var set struct {
		Keys []struct {
			Kty string `json:"kty"`
			N   string `json:"n"`
			E   string `json:"e"`
			Crv string `json:"crv"`
			X   string `json:"x"`
			Y   string `json:"y"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(jwks, &set); err != nil {
		return nil, err
	}
	b64 := func(s string) (*big.Int, error) {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			return nil, err
		}
		return new(big.Int).SetBytes(b), nil
	}
	var out []string
	for i, k := range set.Keys {
		var pub any
		switch k.Kty {
		case "RSA":
			n, err1 := b64(k.N)
			e, err2 := b64(k.E)
			if err1 != nil || err2 != nil || !e.IsInt64() {
				return nil, fmt.Errorf("key %d: bad RSA parameters", i)
			}
			pub = &rsa.PublicKey{N: n, E: int(e.Int64())}
		case "EC":
			curves := map[string]elliptic.Curve{"P-256": elliptic.P256(), "P-384": elliptic.P384(), "P-521": elliptic.P521()}
			c, ok := curves[k.Crv]
			x, err1 := b64(k.X)
			y, err2 := b64(k.Y)
			if !ok || err1 != nil || err2 != nil {
				return nil, fmt.Errorf("key %d: bad EC parameters", i)
			}
			// The uncompressed point 0x04 || X || Y, each coordinate padded to the curve's size
			// (ecdsa.PublicKey's X and Y fields are deprecated since Go 1.26).
			size := (c.Params().BitSize + 7) / 8
			if x.BitLen() > 8*size || y.BitLen() > 8*size {
				return nil, fmt.Errorf("key %d: bad EC parameters", i)
			}
			point := make([]byte, 1+2*size)
			point[0] = 4
			x.FillBytes(point[1 : 1+size])
			y.FillBytes(point[1+size:])
			ec, err := ecdsa.ParseUncompressedPublicKey(c, point)
			if err != nil {
				return nil, fmt.Errorf("key %d: %w", i, err)
			}
			pub = ec
		default:
			return nil, fmt.Errorf("key %d: key type %q", i, k.Kty)
		}
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i, err)
		}
		out = append(out, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no keys")
	}
	return out, nil
}
