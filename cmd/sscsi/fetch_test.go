package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sscsi/secrets-store/providers/fake"
	"github.com/sscsi/secrets-store/providers/plugin"
)

// serveFake runs the real fake provider on a unix socket in a temporary
// directory and returns that directory.
func serveFake(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	srv, err := plugin.New(plugin.Config{Name: "fake", Backend: fake.New()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, filepath.Join(dir, "fake.sock")) }()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(dir, "fake.sock")); err == nil {
			return dir
		}
		if time.Now().After(deadline) {
			t.Fatal("fake provider socket did not appear")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

const fetchSPC = `apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata: {name: app}
spec:
  provider: fake
  parameters:
    objects: |
      - {objectName: user, value: alice, version: v7}
      - {objectName: db/pass, value: s3cr3t-fetch-value, filePermission: "0440"}
`

// TestFetch: a dry run through the real fake provider's socket lists the
// files (path, size, mode, version) without values unless asked, as text or
// JSON; a class that would fail fails with the mount's message and exit 1.
func TestFetch(t *testing.T) {
	dir := serveFake(t)
	base := []string{"fetch", "-f", "-", "--namespace", "team", "--service-account", "app", "--audience", "none", "--provider-dirs", dir}
	var out, errb bytes.Buffer
	if rc := dispatch(t.Context(), base, strings.NewReader(fetchSPC), &out, &errb); rc != 0 {
		t.Fatalf("rc = %d: %s", rc, errb.String())
	}
	text := out.String()
	for _, want := range []string{"team/app", `provider "fake"`, "2 files", "db/pass", "18  0440", "user", "5  0644  v7"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "s3cr3t-fetch-value") {
		t.Error("a value was printed without --show-values")
	}

	out.Reset()
	if rc := dispatch(t.Context(), append(base, "--show-values", "--output", "json"), strings.NewReader(fetchSPC), &out, &errb); rc != 0 {
		t.Fatalf("rc = %d: %s", rc, errb.String())
	}
	var got fetchOutput
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("json: %v\n%s", err, out.String())
	}
	if len(got.Files) != 2 || got.Files[0].Path != "db/pass" || got.Files[0].Contents != "s3cr3t-fetch-value" || got.Files[0].Mode != "0440" ||
		got.Objects["user"] != "v7" || got.Provider != "fake" {
		t.Errorf("json = %+v", got)
	}

	// Failures read like the mount's FailedMount message, exit 1.
	for name, c := range map[string]struct{ spc, want string }{
		"no provider":  {strings.Replace(fetchSPC, "provider: fake", "provider: nosuch", 1), `code = Unavailable desc = failed to mount secrets store objects for pod team/sscsi-fetch, err: error connecting to provider "nosuch"`},
		"bad path":     {strings.Replace(fetchSPC, "objectName: user", "objectName: ../user", 1), "code = InvalidArgument"},
		"provider set": {strings.Replace(fetchSPC, "provider: fake", "provider: ''", 1), "provider not set in team/app"},
	} {
		t.Run(name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if rc := dispatch(t.Context(), base, strings.NewReader(c.spc), &out, &errb); rc != 1 || !strings.Contains(errb.String(), c.want) {
				t.Fatalf("rc = %d, stderr %q, want 1 and %q", rc, errb.String(), c.want)
			}
		})
	}
	if rc := dispatch(t.Context(), []string{"fetch", "-f", "-"}, strings.NewReader(fetchSPC), &out, &errb); rc != 2 {
		t.Errorf("missing flags: rc = %d, want 2", rc)
	}
}
