// Package tlschain issues throwaway certificate chains and encodes them the
// ways secret stores hold them (PEM in several key formats, PKCS#12), for
// tests of the code that splits TLS bundles into kubernetes.io/tls Secrets.
package tlschain

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	"software.sslmate.com/src/go-pkcs12"
)

// Chain is a leaf certificate issued by an intermediate issued by a root,
// with the leaf's key.
type Chain struct {
	Leaf, Inter *x509.Certificate
	LeafKey     crypto.Signer
}

// New issues a fresh chain valid for an hour around now; the leaf key is
// RSA 2048 when rsaLeaf, else EC P-256.
func New(t testing.TB, rsaLeaf bool) Chain {
	t.Helper()
	now := time.Now()
	issue := func(serial int64, cn string, ca bool, pub crypto.PublicKey, parent *x509.Certificate, signer crypto.Signer) *x509.Certificate {
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			IsCA: ca, BasicConstraintsValid: true, DNSNames: []string{cn},
		}
		if parent == nil {
			parent = tmpl
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	ecKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	rootKey, interKey := ecKey(), ecKey()
	root := issue(1, "root", true, rootKey.Public(), nil, rootKey)
	inter := issue(2, "inter", true, interKey.Public(), root, rootKey)
	var leafKey crypto.Signer = ecKey()
	if rsaLeaf {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		leafKey = k
	}
	leaf := issue(3, "leaf.example", false, leafKey.Public(), inter, interKey)
	return Chain{Leaf: leaf, Inter: inter, LeafKey: leafKey}
}

// CertPEM encodes the certificates as PEM, in order.
func CertPEM(cs ...*x509.Certificate) []byte {
	var b []byte
	for _, c := range cs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return b
}

// KeyPEM encodes the key in the given format: "pkcs1", "ec" or "pkcs8".
func KeyPEM(t testing.TB, k crypto.Signer, format string) []byte {
	t.Helper()
	var b *pem.Block
	switch format {
	case "pkcs1":
		b = &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k.(*rsa.PrivateKey))}
	case "ec":
		der, err := x509.MarshalECPrivateKey(k.(*ecdsa.PrivateKey))
		if err != nil {
			t.Fatal(err)
		}
		b = &pem.Block{Type: "EC PRIVATE KEY", Bytes: der}
	default:
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		b = &pem.Block{Type: "PRIVATE KEY", Bytes: der}
	}
	return pem.EncodeToMemory(b)
}

// PFXBase64 is the chain as a password-less PKCS#12 archive, base64.
func (c Chain) PFXBase64(t testing.TB) []byte {
	t.Helper()
	der, err := pkcs12.Modern.Encode(c.LeafKey, c.Leaf, []*x509.Certificate{c.Inter}, "")
	if err != nil {
		t.Fatal(err)
	}
	return []byte(base64.StdEncoding.EncodeToString(der))
}
