// Package secretdata turns files fetched from a secret store into the
// content of a Kubernetes Secret: the type and key rules the API server
// applies (checked up front, so the error names the field), splitting TLS
// bundles (PEM or PKCS#12) into tls.crt and tls.key, and the size limit. It
// also names the marks every Secret written by this project carries. The
// driver's secretObjects sync and the SecretSync controller share it, so a
// Secret built from the same files is the same whichever wrote it.
//
// Errors never quote file contents.
package secretdata

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Ownership marks (see the coordination board; the driver and the
// SecretSync controller use the same names).
const (
	// ManagedLabel ("true") marks every Secret this project writes.
	ManagedLabel = "secrets-store.csi.k8s.io/managed"
	// CreatedByAnnotation names the object that created the Secret, as
	// "<Kind>/<name>" (Kind SecretProviderClass or SecretSync). A writer
	// updates only Secrets whose mark names it.
	CreatedByAnnotation = "secrets-store.csi.k8s.io/created-by"
	// AllowAdoptionAnnotation ("true"), set by a Secret's owner, lets a
	// writer take over a Secret it did not create.
	AllowAdoptionAnnotation = "secrets-store.csi.k8s.io/allow-adoption"
)

// Keys of a kubernetes.io/tls Secret that are split out of a bundle.
const (
	KeyTLSCert = corev1.TLSCertKey
	KeyTLSKey  = corev1.TLSPrivateKeyKey
)

// MaxBytes is the API server's limit on a Secret's data.
const MaxBytes = corev1.MaxSecretSize

// ErrTypeRefused: the Secret type is one Kubernetes itself writes
// (service account and bootstrap tokens); no sync may create it.
var ErrTypeRefused = errors.New("secret type refused")

// Type validates a Secret type ("" means Opaque) and returns it.
func Type(s string) (corev1.SecretType, error) {
	typ := corev1.SecretType(strings.TrimSpace(s))
	if typ == "" {
		typ = corev1.SecretTypeOpaque
	}
	if errs := validation.IsQualifiedName(string(typ)); len(errs) > 0 {
		return "", fmt.Errorf("%q is not a valid Secret type: %s", typ, strings.Join(errs, "; "))
	}
	if typ == corev1.SecretTypeServiceAccountToken || typ == corev1.SecretTypeBootstrapToken {
		return "", fmt.Errorf("%w: %q Secrets are written by Kubernetes itself, not synced", ErrTypeRefused, typ)
	}
	return typ, nil
}

// Key validates the name of a data key.
func Key(k string) error {
	if k == "" {
		return errors.New("is empty")
	}
	if errs := validation.IsConfigMapKey(k); len(errs) > 0 {
		return fmt.Errorf("%q: %s", k, strings.Join(errs, "; "))
	}
	return nil
}

// Value returns what key of a typ Secret receives from a file: for
// kubernetes.io/tls, the tls.crt or tls.key part of a bundle; else the
// file as it is.
func Value(typ corev1.SecretType, key string, file []byte) ([]byte, error) {
	if typ == corev1.SecretTypeTLS && (key == KeyTLSCert || key == KeyTLSKey) {
		return TLSPart(file, key)
	}
	return file, nil
}

// Size is what data counts against MaxBytes.
func Size(data map[string][]byte) int {
	n := 0
	for k, v := range data {
		n += len(k) + len(v)
	}
	return n
}

// CheckType applies the API server's rules for the well-known types up
// front, so the error says which key is wrong.
func CheckType(typ corev1.SecretType, data map[string][]byte) error {
	need := func(keys ...string) error {
		for _, k := range keys {
			if _, ok := data[k]; ok {
				return nil
			}
		}
		return fmt.Errorf("%s needs a data entry with key %s", typ, strings.Join(keys, " or "))
	}
	switch typ {
	case corev1.SecretTypeTLS:
		if err := need(KeyTLSCert); err != nil {
			return err
		}
		if err := need(KeyTLSKey); err != nil {
			return err
		}
		return CheckKeyPair(data[KeyTLSCert], data[KeyTLSKey])
	case corev1.SecretTypeDockerConfigJson:
		if err := need(corev1.DockerConfigJsonKey); err != nil {
			return err
		}
		if !json.Valid(data[corev1.DockerConfigJsonKey]) {
			return fmt.Errorf("%s is not valid JSON", corev1.DockerConfigJsonKey)
		}
	case corev1.SecretTypeDockercfg:
		if err := need(corev1.DockerConfigKey); err != nil {
			return err
		}
		if !json.Valid(data[corev1.DockerConfigKey]) {
			return fmt.Errorf("%s is not valid JSON", corev1.DockerConfigKey)
		}
	case corev1.SecretTypeBasicAuth:
		return need(corev1.BasicAuthUsernameKey, corev1.BasicAuthPasswordKey)
	case corev1.SecretTypeSSHAuth:
		return need(corev1.SSHAuthPrivateKey)
	}
	return nil
}
