package main

import "testing"

func TestResourceOf(t *testing.T) {
	for path, want := range map[string]string{
		"/api/v1/namespaces/calls/secrets":                                              "secrets",
		"/api/v1/namespaces/calls/secrets/s0001":                                        "secrets",
		"/apis/secret-sync.x-k8s.io/v1alpha1/namespaces/calls/secretsyncs/s0001/status": "secretsyncs/status",
		"/apis/secret-sync.x-k8s.io/v1alpha1/secretsyncs":                               "secretsyncs",
		"/api/v1/namespaces/calls/serviceaccounts/app/token":                            "serviceaccounts/token",
		"/api/v1/namespaces/calls":                                                      "namespaces",
		"/apis/events.k8s.io/v1/namespaces/calls/events":                                "events",
		"/healthz": "/healthz",
	} {
		if got := resourceOf(path); got != want {
			t.Errorf("resourceOf(%q) = %q, want %q", path, got, want)
		}
	}
}
