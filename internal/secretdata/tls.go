package secretdata

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"

	"software.sslmate.com/src/go-pkcs12"
)

// tlsBundle is a certificate chain and its private key, both PEM encoded.
type tlsBundle struct {
	certs []byte // CERTIFICATE blocks, in bundle order (leaf first)
	key   []byte // one private key block; nil when the bundle has none
}

// splitTLS splits a PEM bundle (certificates and at most one RSA, EC or
// PKCS#8 private key, explanatory text between blocks allowed) or a PKCS#12
// (PFX) archive, base64 or binary, without password. Any other PEM block,
// an encrypted key or undecodable data is an error. Errors never quote the
// input.
func splitTLS(data []byte) (tlsBundle, error) {
	if bytes.Contains(data, []byte("-----BEGIN ")) {
		return splitPEM(data)
	}
	return splitPFX(data)
}

func splitPEM(data []byte) (tlsBundle, error) {
	var out tlsBundle
	rest := data
	n := 0
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		n++
		if _, enc := b.Headers["Proc-Type"]; enc {
			return tlsBundle{}, fmt.Errorf("PEM block %d (%s) is encrypted; store the key unencrypted", n, b.Type)
		}
		switch b.Type {
		case "CERTIFICATE":
			if _, err := x509.ParseCertificate(b.Bytes); err != nil {
				return tlsBundle{}, fmt.Errorf("PEM block %d: invalid certificate: %w", n, err)
			}
			out.certs = append(out.certs, pem.EncodeToMemory(&pem.Block{Type: b.Type, Bytes: b.Bytes})...)
		case "RSA PRIVATE KEY", "EC PRIVATE KEY", "PRIVATE KEY":
			if out.key != nil {
				return tlsBundle{}, fmt.Errorf("PEM block %d: more than one private key in the bundle", n)
			}
			if err := parseKey(b); err != nil {
				return tlsBundle{}, fmt.Errorf("PEM block %d: invalid %s: %w", n, b.Type, err)
			}
			out.key = pem.EncodeToMemory(&pem.Block{Type: b.Type, Bytes: b.Bytes})
		case "EC PARAMETERS":
			// openssl ecparam -genkey writes these before the key; they carry
			// nothing the key itself does not.
		default:
			return tlsBundle{}, fmt.Errorf("PEM block %d has type %q; only CERTIFICATE and RSA, EC or PKCS#8 PRIVATE KEY blocks are allowed", n, b.Type)
		}
	}
	if n == 0 {
		return tlsBundle{}, errors.New("no PEM block could be decoded")
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return tlsBundle{}, fmt.Errorf("data after PEM block %d is not PEM", n)
	}
	return out, nil
}

func parseKey(b *pem.Block) error {
	var err error
	switch b.Type {
	case "RSA PRIVATE KEY":
		_, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		_, err = x509.ParseECPrivateKey(b.Bytes)
	default:
		_, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	}
	return err
}

func splitPFX(data []byte) (tlsBundle, error) {
	der := data
	compact := bytes.Join(bytes.Fields(data), nil)
	if dec, err := base64.StdEncoding.DecodeString(string(compact)); err == nil {
		der = dec
	}
	if err := checkPFXIterations(der); err != nil {
		return tlsBundle{}, err
	}
	key, leaf, cas, err := pkcs12.DecodeChain(der, "")
	if err != nil {
		return tlsBundle{}, fmt.Errorf("neither PEM nor a password-less PKCS#12 (PFX) archive, binary or base64: %w", err)
	}
	var out tlsBundle
	for _, c := range append([]*x509.Certificate{leaf}, cas...) {
		out.certs = append(out.certs, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	switch key.(type) {
	case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
	default:
		return tlsBundle{}, fmt.Errorf("PFX private key of type %T is not supported", key)
	}
	k, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return tlsBundle{}, fmt.Errorf("encode PFX private key as PKCS#8: %w", err)
	}
	out.key = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k})
	return out, nil
}

// TLSPart returns the part of a bundle a kubernetes.io/tls key receives.
func TLSPart(data []byte, key string) ([]byte, error) {
	b, err := splitTLS(data)
	if err != nil {
		return nil, err
	}
	switch key {
	case KeyTLSCert:
		if len(b.certs) == 0 {
			return nil, errors.New("the bundle has no CERTIFICATE")
		}
		return b.certs, nil
	case KeyTLSKey:
		if b.key == nil {
			return nil, errors.New("the bundle has no private key")
		}
		return b.key, nil
	}
	return nil, fmt.Errorf("key %q is not split from a bundle", key)
}

// CheckKeyPair verifies that the private key belongs to the first
// certificate of the chain.
func CheckKeyPair(certs, key []byte) error {
	if _, err := tls.X509KeyPair(certs, key); err != nil {
		return fmt.Errorf("tls.key does not match the first certificate of tls.crt (put the leaf first): %w", err)
	}
	return nil
}
