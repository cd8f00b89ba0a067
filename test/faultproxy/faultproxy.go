// Package faultproxy is a reverse proxy for AWS API emulators that counts
// calls by API and region and injects the errors an emulator does not
// produce (throttling, server errors, access denied).
package faultproxy

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sort"
	"strings"
	"sync"
)

// Rule makes matching calls fail. Empty API or Region match any.
type Rule struct {
	// API is "<service>.<Operation>", e.g. "secretsmanager.BatchGetSecretValue".
	API string
	// Region matches the request's signing region.
	Region string
	// Status is the HTTP status to answer (e.g. 400, 503).
	Status int
	// Code is the AWS error code, e.g. ThrottlingException.
	Code string
	// Times is how many calls fail; 0 means every call.
	Times int
}

// Proxy forwards to an emulator. Safe for concurrent use.
type Proxy struct {
	// URL is the proxy's endpoint.
	URL    string
	server *httptest.Server

	mu     sync.Mutex // guards rules and counts
	rules  []*Rule
	counts map[string]int
}

// New starts a proxy in front of target.
func New(target string) (*Proxy, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("target %q: %w", target, err)
	}
	p := &Proxy{counts: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(u)
	p.server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		api, region := Classify(r, body)
		if rule := p.record(api, region); rule != nil {
			writeError(w, r, rule)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	p.URL = p.server.URL
	return p, nil
}

// Close stops the proxy.
func (p *Proxy) Close() { p.server.Close() }

// Inject adds a rule; rules are tried in order.
func (p *Proxy) Inject(r Rule) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rules = append(p.rules, &r)
}

// Clear removes all rules.
func (p *Proxy) Clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rules = nil
}

// Counts returns calls by "<api>" (failed ones included).
func (p *Proxy) Counts() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int, len(p.counts))
	for k, v := range p.counts {
		api, _, _ := strings.Cut(k, "@")
		out[api] += v
	}
	return out
}

// CountsByRegion returns calls by "<api>@<region>".
func (p *Proxy) CountsByRegion() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int, len(p.counts))
	for k, v := range p.counts {
		out[k] = v
	}
	return out
}

// Total returns the number of calls seen.
func (p *Proxy) Total() int {
	n := 0
	for _, v := range p.Counts() {
		n += v
	}
	return n
}

// ResetCounts zeroes the counters.
func (p *Proxy) ResetCounts() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.counts = map[string]int{}
}

// Summary formats counts as sorted "api: n" lines.
func Summary(counts map[string]int) string {
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "  %-45s %d\n", k, counts[k])
	}
	return b.String()
}

func (p *Proxy) record(api, region string) *Rule {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.counts[api+"@"+region]++
	for _, r := range p.rules {
		if r.API != "" && r.API != api || r.Region != "" && r.Region != region {
			continue
		}
		if r.Times < 0 {
			continue // used up
		}
		if r.Times > 0 {
			r.Times--
			if r.Times == 0 {
				r.Times = -1
			}
		}
		return r
	}
	return nil
}

// Classify names a request's API ("sts.AssumeRoleWithWebIdentity",
// "ssm.GetParameters", ...) and signing region ("" when unsigned).
func Classify(r *http.Request, body []byte) (api, region string) {
	if t := r.Header.Get("X-Amz-Target"); t != "" {
		svc, op, _ := strings.Cut(t, ".")
		switch svc {
		case "AmazonSSM":
			svc = "ssm"
		}
		api = svc + "." + op
	} else if v, err := url.ParseQuery(string(body)); err == nil && v.Get("Action") != "" {
		api = "sts." + v.Get("Action")
	} else {
		api = "unknown." + r.Method
	}
	if a := r.Header.Get("Authorization"); a != "" {
		if i := strings.Index(a, "Credential="); i >= 0 {
			parts := strings.Split(strings.SplitN(a[i+len("Credential="):], ",", 2)[0], "/")
			if len(parts) >= 5 {
				region = parts[2]
				if api == "unknown."+r.Method {
					api = parts[3] + "." + r.Method
				}
			}
		}
	}
	return api, region
}

func writeError(w http.ResponseWriter, r *http.Request, rule *Rule) {
	msg := "injected by faultproxy"
	if r.Header.Get("X-Amz-Target") != "" {
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.Header().Set("X-Amzn-Errortype", rule.Code)
		w.WriteHeader(rule.Status)
		fmt.Fprintf(w, `{"__type":%q,"message":%q}`, rule.Code, msg)
		return
	}
	kind := "Sender"
	if rule.Status >= 500 {
		kind = "Receiver"
	}
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(rule.Status)
	fmt.Fprintf(w, `<ErrorResponse><Error><Type>%s</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>faultproxy</RequestId></ErrorResponse>`, kind, rule.Code, msg)
}
