package vault

import (
	"strings"
	"testing"
)

func TestIssuesOnRead(t *testing.T) {
	for _, c := range []struct {
		engine, rel string
		want        bool
	}{
		{"database", "creds/app", true},
		{"database", "static-creds/app", false},
		{"database", "creds", false},
		{"database", "roles/app", false},
		{"aws", "creds/deploy", true},
		{"aws", "sts/deploy", true},
		{"aws", "config/root", false},
		{"gcp", "roleset/ci/key", true},
		{"gcp", "roleset/ci/token", false},
		{"gcp", "roleset//key", false},
		{"gcp", "key/ci", true},
		{"gcp", "static-account/sa/key", true},
		{"gcp", "impersonated-account/sa/token", false},
		{"ldap", "creds/dyn", true},
		{"ldap", "static-cred/svc", false},
		{"kv", "data/app/db", false},
		{"kv", "creds/x", false},
		{"pki", "cert/ca", false},
		{"pki", "issue/web", false},
		{"my-plugin", "creds/x", false},
	} {
		if got := issuesOnRead(c.engine, c.rel); got != c.want {
			t.Errorf("issuesOnRead(%q, %q) = %v, want %v", c.engine, c.rel, got, c.want)
		}
	}
}

func TestRelativeMount(t *testing.T) {
	for _, c := range []struct{ answered, path, want string }{
		{"database/", "database/creds/app", "database/"},
		{"team/db/", "team/db/creds/app", "team/db/"},
		// A child namespace named in the path: Vault answers with the
		// namespace's full path.
		{"parent/child/database/", "child/database/creds/app", "child/database/"},
		{"other/", "database/creds/app", ""},
		{"", "database/creds/app", ""},
		{"database", "database/creds/app", "database/"},
	} {
		if got := relativeMount(c.answered, c.path); got != c.want {
			t.Errorf("relativeMount(%q, %q) = %q, want %q", c.answered, c.path, got, c.want)
		}
	}
}

// FuzzEngineLookup: the mount path and engine type come from Vault's
// answer (untrusted) and the path from a SecretProviderClass: no panic,
// and the mount used is a prefix of the path ending with a slash.
func FuzzEngineLookup(f *testing.F) {
	f.Add("database/", "database/creds/app", "database")
	f.Add("parent/child/database/", "child/database/creds/app", "database")
	f.Add("gcp", "gcp/roleset/x/key", "gcp")
	f.Add("/", "//", "aws")
	f.Fuzz(func(t *testing.T, answered, path, engine string) {
		mount := relativeMount(answered, path)
		if mount != "" && (!strings.HasPrefix(path, mount) || !strings.HasSuffix(mount, "/")) {
			t.Fatalf("relativeMount(%q, %q) = %q: not a prefix of the path ending with a slash", answered, path, mount)
		}
		issuesOnRead(engine, strings.TrimPrefix(path, mount))
		for e := range leasingReads {
			issuesOnRead(e, path)
		}
	})
}
