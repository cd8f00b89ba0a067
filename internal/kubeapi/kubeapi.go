// Package kubeapi is the one way every binary of this repository (the
// driver, the providers, the SecretSync controller) loads its Kubernetes
// client configuration, and it keeps Kubernetes object bodies out of the
// logs at any verbosity.
//
// client-go logs every request and response body at -v>=8 (truncated to
// 1 KiB at 8, 10 KiB at 9, whole at 10): a synced Secret's data, a token
// review, an event. Linking this package installs, before main runs, a
// klog filter that replaces the value of those log entries with their
// size. klog's filter applies to klog's own functions and to the loggers
// client-go takes from a context without one (klog.FromContext), which is
// every path of these binaries; a binary must not install a contextual
// logger of its own (klog.SetLoggerWithOptions with ContextualLogger(true)
// or klog.NewContext with a logger that is not klog's), which would bypass
// it. klog.SetLogger (the JSON format) keeps it.
package kubeapi

import (
	"fmt"
	"strings"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

// Load returns the client configuration from the kubeconfig file at path,
// or the in-cluster configuration when path is empty.
func Load(path string) (*rest.Config, error) {
	var rc *rest.Config
	var err error
	if path != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", path)
	} else {
		rc, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("load Kubernetes client config (--kubeconfig %q): %w", path, err)
	}
	return rc, nil
}

// The filter is process-wide because klog is; it is installed at init,
// before any goroutine logs (klog.SetLogFilter is not safe to call later).
func init() { klog.SetLogFilter(bodyFilter{}) }

// Omitted replaces a body in a log entry.
const Omitted = "[body not logged]"

// bodyFilter implements klog.LogFilter.
type bodyFilter struct{}

var _ klog.LogFilter = bodyFilter{}

// bodyKey is the key client-go's rest package logs bodies under
// (rest.logBody: "Request Body" / "Response Body", "body", ...).
const bodyKey = "body"

// FilterS replaces the value of every "body" key. The message is kept, so
// the log still shows that a request happened.
func (bodyFilter) FilterS(msg string, kv []any) (string, []any) {
	var out []any
	for i := 0; i+1 < len(kv); i += 2 {
		if k, ok := kv[i].(string); ok && strings.EqualFold(k, bodyKey) {
			if out == nil {
				out = append([]any(nil), kv...)
			}
			out[i+1] = fmt.Sprintf("%s (%d bytes)", Omitted, size(kv[i+1]))
		}
	}
	if out == nil {
		return msg, kv
	}
	return msg, out
}

// FilterF drops the arguments of printf-style lines about bodies (older
// client-go logged "Response Body: %s").
func (bodyFilter) FilterF(format string, args []any) (string, []any) {
	if strings.Contains(format, "Body") {
		return "%s", []any{Omitted + ": " + strings.ReplaceAll(strings.SplitN(format, ":", 2)[0], "%", "")}
	}
	return format, args
}

// Filter passes print-style arguments through unchanged.
func (bodyFilter) Filter(args []any) []any { return args }

func size(v any) int {
	switch b := v.(type) {
	case string:
		return len(b)
	case []byte:
		return len(b)
	default:
		return len(fmt.Sprint(v))
	}
}
