package fake

import (
	"crypto/subtle"
	"encoding/json"
	"io"
	"net/http"
	"strings"
)

// maxValueBytes bounds one value set through the admin API.
const maxValueBytes = 1 << 20

// AdminHandler serves the run-time API:
//
//	PUT /v1/objects/<objectName>   body = new value; bumps the version
//	GET /v1/objects                JSON {objectName: version}
//	GET /v1/served                 JSON {objectName: {mounts, withCurrentVersion}}
//	GET /healthz
//
// Every call but /healthz needs "Authorization: Bearer <token>"; an empty
// token refuses them all.
func (b *Backend) AdminHandler(token string) http.Handler {
	mux := http.NewServeMux()
	authed := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	authed.HandleFunc("/v1/objects", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			http.Error(w, "use GET", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(b.Versions())
	})
	authed.HandleFunc("/v1/served", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			http.Error(w, "use GET", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(b.ServedCounts())
	})
	authed.HandleFunc("/v1/objects/", func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/v1/objects/")
		if name == "" || r.Method != http.MethodPut {
			http.Error(w, "use PUT /v1/objects/<objectName> with the value as body", http.StatusBadRequest)
			return
		}
		v, err := io.ReadAll(io.LimitReader(r.Body, maxValueBytes+1))
		if err != nil || len(v) > maxValueBytes {
			http.Error(w, "body unreadable or larger than 1 MiB", http.StatusBadRequest)
			return
		}
		ver := b.Set(name, v)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"objectName": name, "version": ver})
	})
	mux.Handle("/", requireToken(token, authed))
	return mux
}

// requireToken passes requests that carry the bearer token.
func requireToken(token string, next http.Handler) http.Handler {
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if token == "" || subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", "Bearer")
			http.Error(w, "the admin API needs Authorization: Bearer <token from the provider's token file (fake-admin.token next to its socket)>", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}
