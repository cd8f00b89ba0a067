package vaulttest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"testing"
)

// TestJWKSToPEM converts one RSA and one EC key of each curve and reads them back.
func TestJWKSToPEM(t *testing.T) {
	enc := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	keys := []map[string]string{{"kty": "RSA", "n": enc(rsaKey.N.Bytes()), "e": enc(big.NewInt(int64(rsaKey.E)).Bytes())}}
	want := []any{&rsaKey.PublicKey}
	for name, c := range map[string]elliptic.Curve{"P-256": elliptic.P256(), "P-384": elliptic.P384(), "P-521": elliptic.P521()} {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		point, err := k.PublicKey.Bytes() // 0x04 || X || Y
		if err != nil {
			t.Fatal(err)
		}
		size := (len(point) - 1) / 2
		// JWK coordinates may come without leading zero bytes: strip them to check the padding.
		x, y := new(big.Int).SetBytes(point[1:1+size]), new(big.Int).SetBytes(point[1+size:])
		keys = append(keys, map[string]string{"kty": "EC", "crv": name, "x": enc(x.Bytes()), "y": enc(y.Bytes())})
		want = append(want, &k.PublicKey)
	}
	jwks, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	pems, err := jwksToPEM(jwks)
	if err != nil {
		t.Fatal(err)
	}
	if len(pems) != len(want) {
		t.Fatalf("%d PEM keys, want %d", len(pems), len(want))
	}
	for i, p := range pems {
		block, _ := pem.Decode([]byte(p))
		if block == nil {
			t.Fatalf("key %d: no PEM block", i)
		}
		got, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			t.Fatalf("key %d: %v", i, err)
		}
		if !got.(interface{ Equal(crypto.PublicKey) bool }).Equal(want[i]) {
			t.Errorf("key %d: round trip changed the key", i)
		}
	}

	// Hostile sets: an off-curve point, an oversized coordinate, an unknown curve, no keys.
	oversized := enc(bytes.Repeat([]byte{0xff}, 80))
	for _, bad := range []string{
		`{"keys":[{"kty":"EC","crv":"P-256","x":"AQ","y":"AQ"}]}`,
		`{"keys":[{"kty":"EC","crv":"P-256","x":"` + oversized + `","y":"AQ"}]}`,
		`{"keys":[{"kty":"EC","crv":"P-192","x":"AQ","y":"AQ"}]}`,
		`{"keys":[]}`,
	} {
		if _, err := jwksToPEM([]byte(bad)); err == nil {
			t.Errorf("jwksToPEM(%s) = nil error", bad)
		}
	}
}
