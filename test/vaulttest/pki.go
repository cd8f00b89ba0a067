package vaulttest

import (
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
)

// PKIRole is a PKI role that issues leaf certificates.
type PKIRole struct {
	// Name of the role (pki/issue/<Name>). Required.
	Name string
	// AllowedDomains, with subdomains and the bare domains allowed. Default: example.com.
	AllowedDomains []string
	// TTL and MaxTTL of issued certificates (0: 1h and 24h).
	TTL, MaxTTL time.Duration
	// GenerateLease makes every issued certificate a lease (renewable, revocable), as a database
	// credential is.
	GenerateLease bool
}

// EnablePKI mounts the PKI engine at mount, generates a root CA and writes role, and returns the
// CA certificate (PEM).
func (s *Server) EnablePKI(t T, mount string, role PKIRole) []byte {
	t.Helper()
	mount = strings.Trim(mount, "/")
	if role.Name == "" {
		t.Fatalf("vaulttest: EnablePKI %s: PKIRole.Name is empty", mount)
	}
	if len(role.AllowedDomains) == 0 {
		role.AllowedDomains = []string{"example.com"}
	}
	if role.TTL == 0 {
		role.TTL = time.Hour
	}
	if role.MaxTTL == 0 {
		role.MaxTTL = 24 * time.Hour
	}
	err := s.Client(t).Sys().MountWithContext(t.Context(), mount, &api.MountInput{
		Type: "pki", Config: api.MountConfigInput{MaxLeaseTTL: "87600h"},
	})
	if err != nil {
		t.Fatalf("vaulttest: mounting PKI at %s: %v", mount, err)
	}
	root := s.Write(t, mount+"/root/generate/internal", map[string]any{
		"common_name": "vaulttest root CA", "ttl": "87600h", "key_type": "ec", "key_bits": 256,
	})
	caPEM, _ := root.Data["certificate"].(string)
	if caPEM == "" {
		t.Fatalf("vaulttest: PKI %s: no root certificate in the response", mount)
	}
	s.Write(t, mount+"/roles/"+role.Name, map[string]any{
		"allowed_domains":    role.AllowedDomains,
		"allow_subdomains":   true,
		"allow_bare_domains": true,
		"key_type":           "ec",
		"key_bits":           256,
		"ttl":                role.TTL.String(),
		"max_ttl":            role.MaxTTL.String(),
		"generate_lease":     role.GenerateLease,
	})
	return []byte(caPEM + "\n")
}
