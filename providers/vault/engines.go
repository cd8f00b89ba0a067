package vault

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/sscsi/secrets-store/providers/vault/client"
	"github.com/sscsi/secrets-store/providers/vault/lease"
	"github.com/sscsi/secrets-store/providers/vault/params"
)

// A mount without an owner (neither a pod UID nor a SecretSync key, e.g.
// upstream's secrets-store-sync-controller) cannot keep a leased value, so
// a GET that makes Vault issue one must not be sent: the credential would
// never be served and would live until its TTL. Whether an answer carries
// a lease is known only from the answer, but which secrets engine serves a
// path is known before: Vault's sys/internal/ui/mounts/<path> (the Vault
// CLI's KV preflight) answers any token with a capability under that mount
// with the mount's path and engine type. An ownerless GET of a path not yet
// known is preceded by that one call (per identity and mount, remembered
// for engineMemory), and refused when the engine issues a leased
// credential on a GET of that path (leasingReads). Engines not listed
// (KV, PKI, transit, plugins of other names) are read as before; if Vault
// does not answer the lookup (no capability under the mount, an older
// Vault), the read decides as before (see mountState.fetch).

// engineMemory is how long a mount's engine type is remembered per
// identity. An operator who replaces the engine at a path is seen within
// it.
const engineMemory = time.Hour

// maxEngineEntries bounds the (identity, mount) engine types kept.
const maxEngineEntries = 10000

// engineKey is one identity's view of one mount.
type engineKey struct {
	identity string // auth.Identity.Key()
	mount    string // the mount's path, e.g. "database/"
}

// leasingReads lists, per secrets engine type (the "type" of
// sys/internal/ui/mounts), the paths below its mount whose GET issues a
// new leased credential on every read. "*" matches one path segment.
// Static credentials (database/static-creds, ldap/static-cred) and tokens
// without a lease (gcp .../token) are not listed: they are read as before.
var leasingReads = map[string][]string{
	"database":     {"creds/"},
	"aws":          {"creds/", "sts/"},
	"consul":       {"creds/"},
	"nomad":        {"creds/"},
	"rabbitmq":     {"creds/"},
	"azure":        {"creds/"},
	"alicloud":     {"creds/"},
	"mongodbatlas": {"creds/"},
	"terraform":    {"creds/"},
	"ldap":         {"creds/"},
	"openldap":     {"creds/"},
	"gcp":          {"key/", "roleset/*/key", "static-account/*/key"},
	// Engines removed from Vault 1.x, still mounted on old servers.
	"postgresql": {"creds/"},
	"mysql":      {"creds/"},
	"mssql":      {"creds/"},
	"cassandra":  {"creds/"},
	"mongodb":    {"creds/"},
}

// issuesOnRead reports whether a GET of rel (the path below a mount of
// engine) issues a leased credential.
func issuesOnRead(engine, rel string) bool {
	for _, pat := range leasingReads[engine] {
		if matchPrefix(pat, rel) {
			return true
		}
	}
	return false
}

// matchPrefix reports whether path starts with pattern, where a "*"
// segment of pattern matches one non-empty segment of path.
func matchPrefix(pattern, path string) bool {
	for pattern != "" {
		pseg, prest, pdir := strings.Cut(pattern, "/")
		seg, rest, dir := strings.Cut(path, "/")
		if pseg != "*" && pseg != seg || pseg == "*" && seg == "" {
			return false
		}
		if !pdir {
			return true // the pattern's last segment names an endpoint
		}
		if !dir {
			return false
		}
		pattern, path = prest, rest
	}
	return true
}

// mountOf is the mount containing path for identity, if remembered.
func (b *Backend) mountOf(identity, path string) (mount, engine string, ok bool) {
	for i := range len(path) {
		if path[i] != '/' {
			continue
		}
		if engine, ok := b.engines.Get(engineKey{identity, path[:i+1]}); ok {
			return path[:i+1], engine, true
		}
	}
	return "", "", false
}

// relativeMount turns the mount path Vault answered into a prefix of path:
// in a Vault namespace named partly in the request's path, the answer
// starts with the namespace, so leading segments are dropped until it
// matches ("" if it never does).
func relativeMount(answered, path string) string {
	if answered != "" && !strings.HasSuffix(answered, "/") {
		answered += "/" // Vault's mount paths end with a slash
	}
	for answered != "" {
		if strings.HasPrefix(path, answered) {
			return answered
		}
		_, rest, ok := strings.Cut(answered, "/")
		if !ok {
			return ""
		}
		answered = rest
	}
	return ""
}

// refuseOwnerlessIssue is called before an ownerless GET of r (not known
// as leased): it learns which engine serves r's path (one Vault call per
// identity and mount, remembered) and returns lease.ErrNoOwner when that
// GET would issue a leased credential. Any failure of the lookup lets the
// read go ahead (the read then decides, as without the lookup).
func (m *mountState) refuseOwnerlessIssue(ctx context.Context, r params.Request) error {
	id := m.id.Key()
	mount, engine, ok := m.b.mountOf(id, r.Path)
	if !ok {
		// Concurrent lookups of one identity under the same first path
		// segment (usually one mount: the objects of a mount, the
		// SecretSyncs of a service account) share one call; a path the
		// shared answer does not cover is looked up on its own.
		type looked struct {
			path string // the path the flight looked up
			ok   bool
		}
		first, _, _ := strings.Cut(r.Path, "/")
		v, _, _ := m.b.lookups.Do(id+"\x00"+first, func() (any, error) {
			if _, _, ok := m.b.mountOf(id, r.Path); ok {
				return looked{r.Path, true}, nil
			}
			_, _, ok := m.lookupEngine(ctx, r.Path)
			return looked{r.Path, ok}, nil
		})
		switch l := v.(looked); {
		case l.path == r.Path && !l.ok:
			return nil // Vault did not tell: the read decides
		case l.path == r.Path:
		default:
			if _, _, ok := m.b.mountOf(id, r.Path); !ok {
				m.lookupEngine(ctx, r.Path) // another mount under the same first segment
			}
		}
		if mount, engine, ok = m.b.mountOf(id, r.Path); !ok {
			return nil
		}
	}
	if issuesOnRead(engine, strings.TrimPrefix(r.Path, mount)) {
		return fmt.Errorf("a read of this path of the %s secrets engine at %q issues a new leased credential, refused before it is issued: %w", engine, mount, lease.ErrNoOwner)
	}
	return nil
}

// lookupEngine asks Vault which mount and engine serve path, with the
// mount's token, and remembers the answer for the identity.
func (m *mountState) lookupEngine(ctx context.Context, path string) (mount, engine string, ok bool) {
	m.count("engineLookup")
	s, err := m.vault.Do(ctx, client.Request{Op: "mounts " + path, Method: http.MethodGet, Path: "sys/internal/ui/mounts/" + path, Token: m.currentToken(), UserData: true})
	if err != nil {
		return "", "", false
	}
	answered, _ := s.Data["path"].(string)
	engine, _ = s.Data["type"].(string)
	if mount = relativeMount(answered, path); mount == "" || engine == "" {
		return "", "", false
	}
	m.b.engines.Put(engineKey{m.id.Key(), mount}, engine, engineMemory)
	return mount, engine, true
}
