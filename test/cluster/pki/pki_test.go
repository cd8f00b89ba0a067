package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func verify(t *testing.T, f Files, name string, usage x509.ExtKeyUsage) *x509.Certificate {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(readCert(t, f.CACert))
	crt, _ := f.Cert(name)
	c := readCert(t, crt)
	if _, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		t.Errorf("%s does not verify for %v: %v", name, usage, err)
	}
	return c
}

func TestNodeWriteIsIdempotent(t *testing.T) {
	dir := t.TempDir()
	svc := net.IPv4(10, 96, 77, 1)
	f, err := Write(dir, Node(svc))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range Node(svc).Certs {
		got := verify(t, f, c.Name, x509.ExtKeyUsageClientAuth)
		verify(t, f, c.Name, x509.ExtKeyUsageServerAuth)
		if got.Subject.CommonName != c.CommonName || (c.Organization != "" && !slices.Equal(got.Subject.Organization, []string{c.Organization})) {
			t.Errorf("%s subject %v", c.Name, got.Subject)
		}
		if time.Until(got.NotAfter) < 29*24*time.Hour {
			t.Errorf("%s expires %v", c.Name, got.NotAfter)
		}
		_, key := f.Cert(c.Name)
		if st, err := os.Stat(key); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s key mode %v (%v)", c.Name, st.Mode(), err)
		}
	}
	api := readCert(t, filepath.Join(dir, "apiserver.crt"))
	if err := api.VerifyHostname("kubernetes.default.svc.cluster.local"); err != nil {
		t.Error(err)
	}
	if err := api.VerifyHostname("10.96.77.1"); err != nil {
		t.Error(err)
	}

	before := map[string][]byte{}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		before[e.Name()], _ = os.ReadFile(filepath.Join(dir, e.Name()))
	}
	if len(before) != 2*len(Node(svc).Certs)+4 {
		t.Errorf("%d files", len(before))
	}
	// A second run keeps everything; a removed certificate comes back signed by the same CA.
	if err := os.Remove(filepath.Join(dir, "scheduler.crt")); err != nil {
		t.Fatal(err)
	}
	if _, err := Write(dir, Node(svc)); err != nil {
		t.Fatal(err)
	}
	for name, b := range before {
		now, _ := os.ReadFile(filepath.Join(dir, name))
		changed := !bytes.Equal(now, b)
		if changed != (name == "scheduler.crt" || name == "scheduler.key") {
			t.Errorf("%s changed: %v", name, changed)
		}
	}
	verify(t, f, "scheduler", x509.ExtKeyUsageClientAuth)
}

// A directory made by the openssl script before (PKCS #8 CA key) is kept and extended.
func TestWriteKeepsAnOpensslCA(t *testing.T) {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "old-ca"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile(filepath.Join(dir, "ca.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(filepath.Join(dir, "ca.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}), 0o600)
	f, err := Write(dir, ControlPlane(net.IPv4(10, 96, 78, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if c := verify(t, f, "admin", x509.ExtKeyUsageClientAuth); c.Issuer.CommonName != "old-ca" {
		t.Errorf("issuer %v", c.Issuer)
	}
	verify(t, f, "apiserver", x509.ExtKeyUsageServerAuth)
}

func TestWriteRefusesAnIncompleteSpec(t *testing.T) {
	if _, err := Write(t.TempDir(), Spec{}); err == nil {
		t.Error("no error for an empty spec")
	}
}
