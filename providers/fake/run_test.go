package fake

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAdminAPINeedsToken: the admin API changes what pods mount; only a
// caller that can read the token file (root on the node) may use it.
func TestAdminAPINeedsToken(t *testing.T) {
	dir := t.TempDir()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, Config{Socket: filepath.Join(dir, "fake.sock"), AdminAddr: addr}) }()
	t.Cleanup(func() { cancel(); <-done })

	tokenFile := filepath.Join(dir, DefaultAdminTokenName)
	var token string
	for deadline := time.Now().Add(10 * time.Second); ; {
		b, err := os.ReadFile(tokenFile)
		if err == nil {
			token = strings.TrimSpace(string(b))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no token file: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if fi, err := os.Stat(tokenFile); err != nil || fi.Mode().Perm() != 0o600 || len(token) != 64 {
		t.Fatalf("token file mode %v (err %v), token length %d", fi.Mode(), err, len(token))
	}
	put := func(auth string) int {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPut, "http://"+addr+"/v1/objects/greeting", strings.NewReader("changed"))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		var resp *http.Response
		for deadline := time.Now().Add(10 * time.Second); ; {
			resp, err = http.DefaultClient.Do(req)
			if err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, auth := range []string{"", "Bearer ", "Bearer wrong", token, fmt.Sprintf("Bearer %s0", token)} {
		if code := put(auth); code != http.StatusUnauthorized {
			t.Errorf("PUT with Authorization %.20q: %d, want 401", auth, code)
		}
	}
	if code := put("Bearer " + token); code != http.StatusOK {
		t.Fatalf("PUT with the token: %d, want 200", code)
	}
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz without a token: %v %v", resp, err)
	}
	resp.Body.Close()
}
