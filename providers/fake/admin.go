package fake

import (
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
//	GET /healthz
func (b *Backend) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("/v1/objects", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			http.Error(w, "use GET", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(b.Versions())
	})
	mux.HandleFunc("/v1/objects/", func(w http.ResponseWriter, r *http.Request) {
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
	return mux
}
