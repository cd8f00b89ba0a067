package client

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sscsi/secrets-store/providers/plugin"
	"github.com/sscsi/secrets-store/providers/vault/params"
)

// selfSigned returns a CA-capable certificate for 127.0.0.1 and its key, PEM.
func selfSigned(t *testing.T, cn string) (certPEM, keyPEM []byte, pair tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})
	pair, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return certPEM, keyPEM, pair
}

func write(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestConfinedTLSFilesAgainstMTLSServer: a SecretProviderClass's CA,
// CA directory and client pair inside the allowed directory work against
// a server that requires the client certificate.
func TestConfinedTLSFilesAgainstMTLSServer(t *testing.T) {
	serverCert, _, serverPair := selfSigned(t, "server")
	clientCert, clientKey, _ := selfSigned(t, "client")
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(clientCert)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"data":{"ok":true}}`))
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{serverPair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)

	allowed := t.TempDir()
	write(t, filepath.Join(allowed, "ca.crt"), serverCert)
	write(t, filepath.Join(allowed, "cas", "a.pem"), serverCert)
	write(t, filepath.Join(allowed, "tls.crt"), clientCert)
	write(t, filepath.Join(allowed, "tls.key"), clientKey)
	for name, tl := range map[string]params.TLS{
		"ca file":      {CACert: params.File{Dir: allowed, Name: "ca.crt"}, ClientCert: params.File{Dir: allowed, Name: "tls.crt"}, ClientKey: params.File{Dir: allowed, Name: "tls.key"}},
		"ca directory": {CADirectory: params.File{Dir: allowed, Name: "cas"}, ClientCert: params.File{Dir: allowed, Name: "tls.crt"}, ClientKey: params.File{Dir: allowed, Name: "tls.key"}},
		"operator":     {CACert: params.File{Name: filepath.Join(allowed, "ca.crt")}, ClientCert: params.File{Name: filepath.Join(allowed, "tls.crt")}, ClientKey: params.File{Name: filepath.Join(allowed, "tls.key")}},
	} {
		c, err := New(Config{Connection: params.Connection{Address: srv.URL, TLS: tl}})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := c.Do(t.Context(), Request{Op: "read x", Method: http.MethodGet, Path: "x", Token: "t"}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestConfinedTLSFilesRefused: symlinks out of the allowed directory,
// FIFOs, devices, directories and oversized files are refused with
// InvalidArgument naming the parameter, never quoting file contents.
func TestConfinedTLSFilesRefused(t *testing.T) {
	const secret = "NODE-PRIVATE-KEY-MATERIAL"
	outside := t.TempDir()
	write(t, filepath.Join(outside, "node.key"), []byte("-----BEGIN EC PRIVATE KEY-----\n"+secret+"\n-----END EC PRIVATE KEY-----\n"))
	write(t, filepath.Join(outside, "notpem"), []byte(secret))
	allowed := t.TempDir()
	if err := os.Symlink(filepath.Join(outside, "node.key"), filepath.Join(allowed, "escape.key")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(allowed, "escape-dir")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../../../../../../.."+filepath.Join(outside, "notpem"), filepath.Join(allowed, "rel-escape")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(allowed, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(allowed, "big.pem"), make([]byte, maxTLSFileBytes+1))
	write(t, filepath.Join(allowed, "notpem"), []byte(secret))
	if err := os.Symlink("/dev/zero", filepath.Join(allowed, "zero")); err != nil {
		t.Fatal(err)
	}
	clientCert, _, _ := selfSigned(t, "client")
	write(t, filepath.Join(allowed, "tls.crt"), clientCert)
	in := func(name string) params.File { return params.File{Dir: allowed, Name: name} }
	for name, c := range map[string]struct {
		tls   params.TLS
		param string
	}{
		"symlink out":          {params.TLS{CACert: in("escape.key")}, params.ParamCACertPath},
		"relative symlink out": {params.TLS{CACert: in("rel-escape")}, params.ParamCACertPath},
		"directory symlink":    {params.TLS{CADirectory: in("escape-dir")}, params.ParamCADirectory},
		"fifo":                 {params.TLS{CACert: in("fifo")}, params.ParamCACertPath},
		"device":               {params.TLS{CACert: in("zero")}, params.ParamCACertPath},
		"directory as file":    {params.TLS{CACert: in(".")}, params.ParamCACertPath},
		"too large":            {params.TLS{CACert: in("big.pem")}, params.ParamCACertPath},
		"not PEM":              {params.TLS{CACert: in("notpem")}, params.ParamCACertPath},
		"missing":              {params.TLS{CACert: in("absent")}, params.ParamCACertPath},
		"client key escapes":   {params.TLS{ClientCert: in("tls.crt"), ClientKey: in("escape.key")}, params.ParamTLSClientKeyPath},
		"client key not a key": {params.TLS{ClientCert: in("tls.crt"), ClientKey: in("notpem")}, params.ParamTLSClientKeyPath},
	} {
		done := make(chan error, 1)
		go func() {
			_, err := New(Config{Connection: params.Connection{Address: "https://127.0.0.1:1", TLS: c.tls}})
			done <- err
		}()
		var err error
		select {
		case err = <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: reading the file hangs", name)
		}
		if !errors.Is(err, plugin.ErrInvalidParameters) || !strings.Contains(err.Error(), "parameter "+c.param) {
			t.Errorf("%s: err = %v, want InvalidArgument naming parameter %s", name, err, c.param)
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("%s: error quotes file contents: %v", name, err)
		}
	}
	// A CA directory's symlinks out of it are skipped, not followed.
	write(t, filepath.Join(allowed, "cas", "ok.pem"), clientCert)
	if err := os.Symlink(filepath.Join(outside, "node.key"), filepath.Join(allowed, "cas", "out.pem")); err != nil {
		t.Fatal(err)
	}
	pool, err := readCADirectory(in("cas"))
	if err != nil {
		t.Fatal(err)
	}
	//lint:ignore SA1019 Subjects is exact for a pool built from PEM (no system roots)
	if n := len(pool.Subjects()); n != 1 { //nolint:staticcheck // Subjects is fine for a pool built from PEM
		t.Errorf("CA directory pool has %d certificates, want 1 (the symlink out skipped)", n)
	}
}
