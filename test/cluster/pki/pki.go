// Package pki is the one certificate generator of the test clusters: the local node
// (test/cluster/up.sh, through cmd genpki) and the per-test control planes of the integration tests
// (test/cluster/controlplane). It makes a throwaway certificate authority, ECDSA P-256 client and
// serving certificates signed by it, and the RSA key pair kube-apiserver signs service account
// tokens with, as PEM files in one directory.
//
// Write is idempotent: a file that exists is kept (its CA too), so a running cluster's credentials
// never change under it; only missing ones are made.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Cert describes one certificate signed by the CA, written as <Name>.crt and <Name>.key.
type Cert struct {
	Name         string // file name stem
	CommonName   string
	Organization string // e.g. system:masters; empty for none
	DNSNames     []string
	IPs          []net.IP
	Server       bool // serverAuth
	Client       bool // clientAuth
}

// Spec is a directory's contents: ca.crt/ca.key (CommonName CAName), the certificates, and
// sa.key/sa.pub.
type Spec struct {
	CAName   string
	Validity time.Duration
	Certs    []Cert
}

// Files are the paths of a written directory.
type Files struct {
	Dir, CACert, CAKey, SAKey, SAPub string
}

// Cert returns the certificate and key paths of the named certificate.
func (f Files) Cert(name string) (crt, key string) {
	return filepath.Join(f.Dir, name+".crt"), filepath.Join(f.Dir, name+".key")
}

// Write makes whatever of spec is missing in dir (mode 0700; keys 0600) and returns the paths.
func Write(dir string, spec Spec) (Files, error) {
	f := Files{Dir: dir, CACert: filepath.Join(dir, "ca.crt"), CAKey: filepath.Join(dir, "ca.key"),
		SAKey: filepath.Join(dir, "sa.key"), SAPub: filepath.Join(dir, "sa.pub")}
	if spec.CAName == "" || spec.Validity <= 0 {
		return f, errors.New("pki: CAName and Validity are required")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return f, fmt.Errorf("creating %s: %w", dir, err)
	}
	ca, caKey, err := loadOrCreateCA(f, spec)
	if err != nil {
		return f, err
	}
	for _, c := range spec.Certs {
		crt, key := f.Cert(c.Name)
		if exists(crt) && exists(key) {
			continue
		}
		certPEM, keyPEM, err := issue(ca, caKey, c, spec.Validity)
		if err != nil {
			return f, err
		}
		if err := writeFiles(map[string][]byte{key: keyPEM, crt: certPEM}); err != nil {
			return f, err
		}
	}
	if !exists(f.SAKey) || !exists(f.SAPub) {
		priv, pub, err := serviceAccountKey()
		if err != nil {
			return f, err
		}
		if err := writeFiles(map[string][]byte{f.SAKey: priv, f.SAPub: pub}); err != nil {
			return f, err
		}
	}
	return f, nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func writeFiles(files map[string][]byte) error {
	for path, data := range files {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return fmt.Errorf("writing %s: %w", path, err)
		}
	}
	return nil
}

// loadOrCreateCA reads ca.crt/ca.key, or makes and writes them when ca.crt is missing.
func loadOrCreateCA(f Files, spec Spec) (*x509.Certificate, crypto.Signer, error) {
	if certPEM, err := os.ReadFile(f.CACert); err == nil {
		keyPEM, err := os.ReadFile(f.CAKey)
		if err != nil {
			return nil, nil, fmt.Errorf("%s exists but its key does not: %w", f.CACert, err)
		}
		return parseCA(certPEM, keyPEM)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("reading %s: %w", f.CACert, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: spec.CAName},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(spec.Validity),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("creating CA certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := writeFiles(map[string][]byte{f.CAKey: keyPEM, f.CACert: certPEM}); err != nil {
		return nil, nil, err
	}
	return parseCA(certPEM, keyPEM)
}

func parseCA(certPEM, keyPEM []byte) (*x509.Certificate, crypto.Signer, error) {
	cb, _ := pem.Decode(certPEM)
	if cb == nil {
		return nil, nil, errors.New("ca.crt: no PEM block")
	}
	ca, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("ca.crt: %w", err)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, nil, errors.New("ca.key: no PEM block")
	}
	var key any
	switch kb.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(kb.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(kb.Bytes)
	default: // PRIVATE KEY (PKCS #8, what openssl writes)
		key, err = x509.ParsePKCS8PrivateKey(kb.Bytes)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("ca.key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("ca.key: %T cannot sign", key)
	}
	return ca, signer, nil
}

// issue makes a key and a certificate for c signed by the CA.
func issue(ca *x509.Certificate, caKey crypto.Signer, c Cert, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating key of %s: %w", c.Name, err)
	}
	// Serials must differ per CA, also for a certificate issued again later (its files deleted).
	sn, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, nil, fmt.Errorf("serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: sn.Add(sn, big.NewInt(1)), // never 0
		Subject:      pkix.Name{CommonName: c.CommonName},
		NotBefore:    now.Add(-time.Hour), NotAfter: now.Add(validity),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		DNSNames:              c.DNSNames, IPAddresses: c.IPs,
	}
	if c.Organization != "" {
		tmpl.Subject.Organization = []string{c.Organization}
	}
	if c.Server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if c.Client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("creating certificate %s: %w", c.Name, err)
	}
	if keyPEM, err = encodeKey(key); err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

// serviceAccountKey makes the RSA 2048 key pair kube-apiserver signs and verifies service account
// tokens with (RS256, what the API server's OIDC discovery advertises).
func serviceAccountKey() (privPEM, pubPEM []byte, err error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, fmt.Errorf("generating service account key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding service account public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}),
		pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), nil
}

// Node is the local node's directory (test/cluster/up.sh): every component's client certificate,
// the API server's and kubelet's serving certificates, 30 days. serviceIP is the first address of
// the service CIDR (the kubernetes Service).
func Node(serviceIP net.IP) Spec {
	both := func(c Cert) Cert { c.Server, c.Client = true, true; return c }
	return Spec{CAName: "sscsi-test-ca", Validity: 30 * 24 * time.Hour, Certs: []Cert{
		both(Cert{Name: "apiserver", CommonName: "kube-apiserver",
			DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
			IPs:      []net.IP{net.IPv4(127, 0, 0, 1), serviceIP}}),
		both(Cert{Name: "admin", CommonName: "kubernetes-admin", Organization: "system:masters"}),
		both(Cert{Name: "kubelet", CommonName: "system:node:localhost", Organization: "system:nodes"}),
		both(Cert{Name: "kubelet-serving", CommonName: "system:node:localhost", Organization: "system:nodes",
			DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}),
		both(Cert{Name: "controller-manager", CommonName: "system:kube-controller-manager"}),
		both(Cert{Name: "scheduler", CommonName: "system:kube-scheduler"}),
		both(Cert{Name: "apiserver-kubelet-client", CommonName: "kube-apiserver-kubelet-client", Organization: "system:masters"}),
	}}
}

// ControlPlane is an integration test control plane's directory (test/cluster/controlplane): the
// API server's serving certificate and a system:masters client certificate ("admin"), one day.
func ControlPlane(serviceIP net.IP) Spec {
	return Spec{CAName: "sscsi-integration-ca", Validity: 24 * time.Hour, Certs: []Cert{
		{Name: "apiserver", CommonName: "kube-apiserver", Server: true,
			DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
			IPs:      []net.IP{net.IPv4(127, 0, 0, 1), serviceIP}},
		{Name: "admin", CommonName: "integration-admin", Organization: "system:masters", Client: true},
	}}
}
