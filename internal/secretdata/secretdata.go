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

// SecretType is a Secret's type (core/v1 SecretType; convert with
// corev1.SecretType(t)). The package does not link k8s.io/api/core/v1: its
// code is about 2 MB of every node's driver binary, for a few constants.
type SecretType string

// The Secret types and keys the API server checks (the values of the
// k8s.io/api/core/v1 constants of the same meaning).
const (
	TypeOpaque              SecretType = "Opaque"
	TypeServiceAccountToken SecretType = "kubernetes.io/service-account-token" //nolint:gosec // G101: a Secret type name, not a credential
	TypeBootstrapToken      SecretType = "bootstrap.kubernetes.io/token"       //nolint:gosec // G101: a Secret type name, not a credential
	TypeTLS                 SecretType = "kubernetes.io/tls"
	TypeDockerConfigJSON    SecretType = "kubernetes.io/dockerconfigjson"
	TypeDockercfg           SecretType = "kubernetes.io/dockercfg"
	TypeBasicAuth           SecretType = "kubernetes.io/basic-auth"
	TypeSSHAuth             SecretType = "kubernetes.io/ssh-auth"

	KeyDockerConfigJSON  = ".dockerconfigjson"
	KeyDockercfg         = ".dockercfg"
	KeyBasicAuthUsername = "username"
	KeyBasicAuthPassword = "password"
	KeySSHAuthPrivateKey = "ssh-privatekey"
)

// Keys of a kubernetes.io/tls Secret that are split out of a bundle.
const (
	KeyTLSCert = "tls.crt"
	KeyTLSKey  = "tls.key"
)

// MaxBytes is the API server's limit on a Secret's data.
const MaxBytes = 1 * 1024 * 1024

// ErrTypeRefused: the Secret type is one Kubernetes itself writes
// (service account and bootstrap tokens); no sync may create it.
var ErrTypeRefused = errors.New("secret type refused")

// Type validates a Secret type ("" means Opaque) and returns it.
func Type(s string) (SecretType, error) {
	typ := SecretType(strings.TrimSpace(s))
	if typ == "" {
		typ = TypeOpaque
	}
	if errs := validation.IsQualifiedName(string(typ)); len(errs) > 0 {
		return "", fmt.Errorf("%q is not a valid Secret type: %s", typ, strings.Join(errs, "; "))
	}
	if typ == TypeServiceAccountToken || typ == TypeBootstrapToken {
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
func Value(typ SecretType, key string, file []byte) ([]byte, error) {
	if typ == TypeTLS && (key == KeyTLSCert || key == KeyTLSKey) {
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
func CheckType(typ SecretType, data map[string][]byte) error {
	need := func(keys ...string) error {
		for _, k := range keys {
			if _, ok := data[k]; ok {
				return nil
			}
		}
		return fmt.Errorf("%s needs a data entry with key %s", typ, strings.Join(keys, " or "))
	}
	switch typ {
	case TypeTLS:
		if err := need(KeyTLSCert); err != nil {
			return err
		}
		if err := need(KeyTLSKey); err != nil {
			return err
		}
		return CheckKeyPair(data[KeyTLSCert], data[KeyTLSKey])
	case TypeDockerConfigJSON:
		if err := need(KeyDockerConfigJSON); err != nil {
			return err
		}
		if !json.Valid(data[KeyDockerConfigJSON]) {
			return fmt.Errorf("%s is not valid JSON", KeyDockerConfigJSON)
		}
	case TypeDockercfg:
		if err := need(KeyDockercfg); err != nil {
			return err
		}
		if !json.Valid(data[KeyDockercfg]) {
			return fmt.Errorf("%s is not valid JSON", KeyDockercfg)
		}
	case TypeBasicAuth:
		return need(KeyBasicAuthUsername, KeyBasicAuthPassword)
	case TypeSSHAuth:
		return need(KeySSHAuthPrivateKey)
	}
	return nil
}
