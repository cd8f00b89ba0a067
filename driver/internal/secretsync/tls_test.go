package secretsync

import (
	"bytes"
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
	"strings"
	"testing"
	"time"

	"software.sslmate.com/src/go-pkcs12"
)

// testChain is a leaf certificate issued by an intermediate issued by a
// root, with the leaf's key.
type testChain struct {
	leaf, inter *x509.Certificate
	leafKey     crypto.Signer
}

func newChain(t testing.TB, rsaLeaf bool) testChain {
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
	return testChain{leaf: leaf, inter: inter, leafKey: leafKey}
}

func certPEM(cs ...*x509.Certificate) []byte {
	var b []byte
	for _, c := range cs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return b
}

// keyPEM encodes the key in the given format: "pkcs1", "ec" or "pkcs8".
func keyPEM(t testing.TB, k crypto.Signer, format string) []byte {
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

func (c testChain) pfxBase64(t testing.TB) []byte {
	t.Helper()
	der, err := pkcs12.Modern.Encode(c.leafKey, c.leaf, []*x509.Certificate{c.inter}, "")
	if err != nil {
		t.Fatal(err)
	}
	return []byte(base64.StdEncoding.EncodeToString(der))
}

func TestSplitTLS(t *testing.T) {
	rsaC, ecC := newChain(t, true), newChain(t, false)
	chainRSA, chainEC := certPEM(rsaC.leaf, rsaC.inter), certPEM(ecC.leaf, ecC.inter)
	for _, tc := range []struct {
		name      string
		in        []byte
		wantCerts []byte
		wantKey   bool
	}{
		{"pkcs1 key then chain", append(keyPEM(t, rsaC.leafKey, "pkcs1"), chainRSA...), chainRSA, true},
		{"chain then pkcs8 rsa key", append(append([]byte{}, chainRSA...), keyPEM(t, rsaC.leafKey, "pkcs8")...), chainRSA, true},
		{"ec key with openssl bag attributes", []byte("Bag Attributes\n    friendlyName: x\n" + string(chainEC) + "Key Attributes: <No Attributes>\n" + string(keyPEM(t, ecC.leafKey, "ec"))), chainEC, true},
		{"pkcs8 ec key", append(append([]byte{}, chainEC...), keyPEM(t, ecC.leafKey, "pkcs8")...), chainEC, true},
		{"certificates only", chainEC, chainEC, false},
		{"base64 pfx", ecC.pfxBase64(t), chainEC, true},
		{"base64 pfx with rsa key, wrapped", wrap(rsaC.pfxBase64(t)), chainRSA, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := splitTLS(tc.in)
			if err != nil {
				t.Fatalf("splitTLS: %v", err)
			}
			if !bytes.Equal(b.certs, tc.wantCerts) {
				t.Errorf("certs differ from the chain in order:\n%s", b.certs)
			}
			if (b.key != nil) != tc.wantKey {
				t.Fatalf("key present = %v, want %v", b.key != nil, tc.wantKey)
			}
			if tc.wantKey {
				if err := checkKeyPair(b.certs, b.key); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

func wrap(b []byte) []byte {
	var out []byte
	for len(b) > 64 {
		out = append(append(out, b[:64]...), '\n')
		b = b[64:]
	}
	return append(out, b...)
}

func TestSplitTLSRejects(t *testing.T) {
	c := newChain(t, false)
	key := keyPEM(t, c.leafKey, "ec")
	secret := "s3cr3t-value-never-echoed"
	enc := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: []byte{1}})
	for name, in := range map[string][]byte{
		"plain text":         []byte(secret),
		"csr block":          append(certPEM(c.leaf), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte{1}})...),
		"two keys":           append(append(certPEM(c.leaf), key...), key...),
		"trailing garbage":   append(certPEM(c.leaf), []byte(secret)...),
		"broken certificate": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte(secret)}),
		"encrypted key":      enc,
		"bad base64 pfx":     []byte(base64.StdEncoding.EncodeToString([]byte(secret))),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := splitTLS(in)
			if err == nil {
				t.Fatal("no error")
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("error quotes the input: %v", err)
			}
		})
	}
}

func TestSplitTLSRejectsCostlyPFX(t *testing.T) {
	c := newChain(t, false)
	der, err := pkcs12.Modern.WithIterations(maxPFXIterations+1).Encode(c.leafKey, c.leaf, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = splitTLS([]byte(base64.StdEncoding.EncodeToString(der)))
	if err == nil || !strings.Contains(err.Error(), "iterations") {
		t.Fatalf("err = %v, want a refusal of the iteration count", err)
	}
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Errorf("refusing took %s: the key derivation ran", d)
	}
	ok, err := pkcs12.Modern.WithIterations(600_000).Encode(c.leafKey, c.leaf, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := splitTLS(ok); err != nil {
		t.Errorf("binary PFX with 600000 iterations: %v", err)
	}
}

func TestCheckKeyPairMismatch(t *testing.T) {
	a, b := newChain(t, false), newChain(t, false)
	if err := checkKeyPair(certPEM(a.leaf), keyPEM(t, b.leafKey, "ec")); err == nil {
		t.Fatal("mismatched key accepted")
	}
	if err := checkKeyPair(certPEM(a.inter, a.leaf), keyPEM(t, a.leafKey, "ec")); err == nil {
		t.Fatal("chain with the leaf not first accepted")
	}
}

func FuzzSplitTLS(f *testing.F) {
	c := newChain(f, false)
	f.Add(append(certPEM(c.leaf, c.inter), keyPEM(f, c.leafKey, "pkcs8")...))
	f.Add(c.pfxBase64(f))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		b, err := splitTLS(in)
		if err != nil {
			return
		}
		for rest := b.certs; len(bytes.TrimSpace(rest)) > 0; {
			var blk *pem.Block
			blk, rest = pem.Decode(rest)
			if blk == nil || blk.Type != "CERTIFICATE" {
				t.Fatalf("certs output is not only CERTIFICATE blocks")
			}
		}
		if b.key != nil {
			blk, _ := pem.Decode(b.key)
			if blk == nil || parseKey(blk) != nil {
				t.Fatalf("key output does not parse")
			}
		}
	})
}
