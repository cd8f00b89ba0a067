package vaulttest

import (
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
)

// EnableKV mounts the KV secrets engine at path, version 1 or 2, and waits until it accepts writes
// (a new KV v2 mount needs a moment to set itself up).
func (s *Server) EnableKV(t T, path string, version int) {
	t.Helper()
	if version != 1 && version != 2 {
		t.Fatalf("vaulttest: EnableKV %s: version %d, want 1 or 2", path, version)
	}
	path = strings.Trim(path, "/")
	err := s.Client(t).Sys().MountWithContext(t.Context(), path, &api.MountInput{
		Type: "kv", Options: map[string]string{"version": strconv.Itoa(version)},
	})
	if err != nil {
		t.Fatalf("vaulttest: mounting KV v%d at %s: %v", version, path, err)
	}
	s.mu.Lock()
	s.kv[path] = version
	s.mu.Unlock()
	if version == 1 {
		return
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := s.Client(t).Logical().ReadWithContext(t.Context(), path+"/config")
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("vaulttest: KV v2 at %s not ready after 30 s: %v", path, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// PutKV writes data at path of the KV mount (mounted by EnableKV) and returns the new version
// (KV v2) or 0 (KV v1).
func (s *Server) PutKV(t T, mount, path string, data map[string]any) int {
	t.Helper()
	mount = strings.Trim(mount, "/")
	s.mu.Lock()
	version := s.kv[mount]
	s.mu.Unlock()
	c := s.Client(t)
	switch version {
	case 1:
		if err := c.KVv1(mount).Put(t.Context(), path, data); err != nil {
			t.Fatalf("vaulttest: writing KV v1 %s/%s: %v", mount, path, err)
		}
		return 0
	case 2:
		sec, err := c.KVv2(mount).Put(t.Context(), path, data)
		if err != nil {
			t.Fatalf("vaulttest: writing KV v2 %s/%s: %v", mount, path, err)
		}
		return sec.VersionMetadata.Version
	default:
		t.Fatalf("vaulttest: PutKV: %s is not a KV mount made by EnableKV", mount)
		return 0
	}
}

// DeleteKVVersions soft-deletes versions of a KV v2 secret (reads of them then fail).
func (s *Server) DeleteKVVersions(t T, mount, path string, versions ...int) {
	t.Helper()
	if err := s.Client(t).KVv2(strings.Trim(mount, "/")).DeleteVersions(t.Context(), path, versions); err != nil {
		t.Fatalf("vaulttest: deleting versions %v of %s/%s: %v", versions, mount, path, err)
	}
}
