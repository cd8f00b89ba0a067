package client

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sscsi/secrets-store/providers/plugin"
	"github.com/sscsi/secrets-store/providers/vault/params"
)

func newClient(t *testing.T, h http.HandlerFunc, max int64) *Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c, err := New(Config{Connection: params.Connection{Address: srv.URL, Namespace: "team"}, MaxResponseBytes: max})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestErrorsKeepVaultTextButNotEchoedInput(t *testing.T) {
	c := newClient(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Vault-Namespace") != "team" || r.Header.Get("X-Vault-Token") != "tok" {
			http.Error(w, `{"errors":["missing headers"]}`, 500)
			return
		}
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"errors":["invalid common_name SECRETARG"]}`))
	}, 0)
	_, err := c.Do(t.Context(), Request{Op: "write pki/issue/x", Method: "PUT", Path: "pki/issue/x", Body: []byte(`{"common_name":"SECRETARG"}`), Token: "tok", UserData: true})
	if !errors.Is(err, plugin.ErrInvalidParameters) || strings.Contains(err.Error(), "SECRETARG") || !strings.Contains(err.Error(), "400") {
		t.Fatalf("err = %v", err)
	}
	_, err = c.Do(t.Context(), Request{Op: "read x", Method: "GET", Path: "x", Token: "tok"})
	if !strings.Contains(err.Error(), "invalid common_name") {
		t.Fatalf("Vault's text dropped for a request without user data: %v", err)
	}
}

func TestResponseBounded(t *testing.T) {
	c := newClient(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"data":{"v":"` + strings.Repeat("x", 4096) + `"}}`))
	}, 1024)
	_, err := c.Do(t.Context(), Request{Op: "read x", Method: "GET", Path: "x", Token: "t"})
	if err == nil || !strings.Contains(err.Error(), "larger than 1024 bytes") || strings.Contains(err.Error(), "xxxx") {
		t.Fatalf("err = %v", err)
	}
}

func TestRedirectToAnotherHostRefused(t *testing.T) {
	var leaked bool
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leaked = leaked || r.Header.Get("X-Vault-Token") != ""
	}))
	t.Cleanup(evil.Close)
	c := newClient(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, evil.URL+"/v1/x", http.StatusTemporaryRedirect)
	}, 0)
	_, err := c.Do(t.Context(), Request{Op: "read x", Method: "GET", Path: "x", Token: "tok"})
	if err == nil || leaked {
		t.Fatalf("redirect followed (token leaked: %v): %v", leaked, err)
	}
	if !errors.Is(err, plugin.ErrUnavailable) {
		t.Errorf("kind: %v", err)
	}
}

func TestStatusKinds(t *testing.T) {
	for status, kind := range map[int]error{403: plugin.ErrPermissionDenied, 404: plugin.ErrNotFound, 429: plugin.ErrThrottled, 503: plugin.ErrUnavailable, 401: plugin.ErrUnauthenticated} {
		c := newClient(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(status) }, 0)
		_, err := c.Do(t.Context(), Request{Op: "read x", Method: "GET", Path: "x", Token: "t"})
		if !errors.Is(err, kind) || !IsStatus(err, status) {
			t.Errorf("%d: %v", status, err)
		}
	}
	c := newClient(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(400) }, 0)
	if _, err := c.Login(t.Context(), "kubernetes", "r", "jwt"); !errors.Is(err, plugin.ErrUnauthenticated) {
		t.Errorf("rejected login: %v", err)
	}
}
