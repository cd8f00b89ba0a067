package secretdata

import (
	"bytes"
	"encoding/base64"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"software.sslmate.com/src/go-pkcs12"

	"github.com/sscsi/secrets-store/test/tlschain"
)

func TestSplitTLS(t *testing.T) {
	rsaC, ecC := tlschain.New(t, true), tlschain.New(t, false)
	chainRSA, chainEC := tlschain.CertPEM(rsaC.Leaf, rsaC.Inter), tlschain.CertPEM(ecC.Leaf, ecC.Inter)
	for _, tc := range []struct {
		name      string
		in        []byte
		wantCerts []byte
		wantKey   bool
	}{
		{"pkcs1 key then chain", append(tlschain.KeyPEM(t, rsaC.LeafKey, "pkcs1"), chainRSA...), chainRSA, true},
		{"chain then pkcs8 rsa key", append(append([]byte{}, chainRSA...), tlschain.KeyPEM(t, rsaC.LeafKey, "pkcs8")...), chainRSA, true},
		{"ec key with openssl bag attributes", []byte("Bag Attributes\n    friendlyName: x\n" + string(chainEC) + "Key Attributes: <No Attributes>\n" + string(tlschain.KeyPEM(t, ecC.LeafKey, "ec"))), chainEC, true},
		{"pkcs8 ec key", append(append([]byte{}, chainEC...), tlschain.KeyPEM(t, ecC.LeafKey, "pkcs8")...), chainEC, true},
		{"certificates only", chainEC, chainEC, false},
		{"base64 pfx", ecC.PFXBase64(t), chainEC, true},
		{"base64 pfx with rsa key, wrapped", wrap(rsaC.PFXBase64(t)), chainRSA, true},
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
				if err := CheckKeyPair(b.certs, b.key); err != nil {
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
	c := tlschain.New(t, false)
	key := tlschain.KeyPEM(t, c.LeafKey, "ec")
	secret := "s3cr3t-value-never-echoed"
	enc := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: []byte{1}})
	for name, in := range map[string][]byte{
		"plain text":         []byte(secret),
		"csr block":          append(tlschain.CertPEM(c.Leaf), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte{1}})...),
		"two keys":           append(append(tlschain.CertPEM(c.Leaf), key...), key...),
		"trailing garbage":   append(tlschain.CertPEM(c.Leaf), []byte(secret)...),
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
	c := tlschain.New(t, false)
	der, err := pkcs12.Modern.WithIterations(maxPFXIterations+1).Encode(c.LeafKey, c.Leaf, nil, "")
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
	ok, err := pkcs12.Modern.WithIterations(600_000).Encode(c.LeafKey, c.Leaf, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := splitTLS(ok); err != nil {
		t.Errorf("binary PFX with 600000 iterations: %v", err)
	}
}

func TestCheckKeyPairMismatch(t *testing.T) {
	a, b := tlschain.New(t, false), tlschain.New(t, false)
	if err := CheckKeyPair(tlschain.CertPEM(a.Leaf), tlschain.KeyPEM(t, b.LeafKey, "ec")); err == nil {
		t.Fatal("mismatched key accepted")
	}
	if err := CheckKeyPair(tlschain.CertPEM(a.Inter, a.Leaf), tlschain.KeyPEM(t, a.LeafKey, "ec")); err == nil {
		t.Fatal("chain with the leaf not first accepted")
	}
}

func FuzzSplitTLS(f *testing.F) {
	c := tlschain.New(f, false)
	f.Add(append(tlschain.CertPEM(c.Leaf, c.Inter), tlschain.KeyPEM(f, c.LeafKey, "pkcs8")...))
	f.Add(c.PFXBase64(f))
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
