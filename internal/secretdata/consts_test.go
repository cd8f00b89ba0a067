package secretdata

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// The package keeps its own copies of core/v1's names (linking core/v1 costs the driver ~2 MB of
// code); they must stay equal.
func TestConstantsMatchCoreV1(t *testing.T) {
	for got, want := range map[string]string{
		string(TypeOpaque):              string(corev1.SecretTypeOpaque),
		string(TypeServiceAccountToken): string(corev1.SecretTypeServiceAccountToken),
		string(TypeBootstrapToken):      string(corev1.SecretTypeBootstrapToken),
		string(TypeTLS):                 string(corev1.SecretTypeTLS),
		string(TypeDockerConfigJSON):    string(corev1.SecretTypeDockerConfigJson),
		string(TypeDockercfg):           string(corev1.SecretTypeDockercfg),
		string(TypeBasicAuth):           string(corev1.SecretTypeBasicAuth),
		string(TypeSSHAuth):             string(corev1.SecretTypeSSHAuth),
		KeyDockerConfigJSON:             corev1.DockerConfigJsonKey,
		KeyDockercfg:                    corev1.DockerConfigKey,
		KeyBasicAuthUsername:            corev1.BasicAuthUsernameKey,
		KeyBasicAuthPassword:            corev1.BasicAuthPasswordKey,
		KeySSHAuthPrivateKey:            corev1.SSHAuthPrivateKey,
		KeyTLSCert:                      corev1.TLSCertKey,
		KeyTLSKey:                       corev1.TLSPrivateKeyKey,
	} {
		if got != want {
			t.Errorf("%q, want %q (k8s.io/api/core/v1)", got, want)
		}
	}
	if MaxBytes != corev1.MaxSecretSize {
		t.Errorf("MaxBytes = %d, want %d", MaxBytes, corev1.MaxSecretSize)
	}
}
