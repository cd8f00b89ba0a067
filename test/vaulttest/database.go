package vaulttest

import (
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
)

// DBRole is a role of the database secrets engine issuing PostgreSQL users with real leases.
type DBRole struct {
	// Name of the role (<mount>/creds/<Name>). Required.
	Name string
	// DefaultTTL and MaxTTL of the leases (0: 1h and 24h).
	DefaultTTL, MaxTTL time.Duration
}

// EnableDatabase mounts the database secrets engine at mount, connects it to pg (connection "pg",
// Vault's postgresql-database-plugin, as pg's superuser) and writes the roles. Each role creates
// a login role valid until its lease expires and drops it on revocation.
func (s *Server) EnableDatabase(t T, mount string, pg *Postgres, roles ...DBRole) {
	t.Helper()
	mount = strings.Trim(mount, "/")
	if err := s.Client(t).Sys().MountWithContext(t.Context(), mount, &api.MountInput{Type: "database"}); err != nil {
		t.Fatalf("vaulttest: mounting the database engine at %s: %v", mount, err)
	}
	s.Write(t, mount+"/config/pg", map[string]any{
		"plugin_name":       "postgresql-database-plugin",
		"connection_url":    pg.ConnectionURL(),
		"username":          pg.User,
		"password":          pg.Password,
		"allowed_roles":     "*", // DatabaseRole may add roles later
		"verify_connection": true,
	})
	for _, r := range roles {
		s.DatabaseRole(t, mount, r)
	}
}

// DatabaseRole writes (or rewrites) a role on the "pg" connection of the database engine at mount.
func (s *Server) DatabaseRole(t T, mount string, r DBRole) {
	t.Helper()
	if r.Name == "" {
		t.Fatalf("vaulttest: database role without a Name")
	}
	if r.DefaultTTL == 0 {
		r.DefaultTTL = time.Hour
	}
	if r.MaxTTL == 0 {
		r.MaxTTL = 24 * time.Hour
	}
	s.Write(t, strings.Trim(mount, "/")+"/roles/"+r.Name, map[string]any{
		"db_name": "pg",
		"creation_statements": []string{
			`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`,
			`GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{{name}}";`,
		},
		"default_ttl": r.DefaultTTL.String(),
		"max_ttl":     r.MaxTTL.String(),
	})
}
