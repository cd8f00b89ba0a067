package aws

import (
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	ok := Config{Socket: "/run/aws.sock"}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		cfg  Config
		want string
	}{
		"no socket":      {Config{}, "--endpoint"},
		"bad region":     {Config{Socket: "s", Region: "us east"}, "--region"},
		"bad endpoint":   {Config{Socket: "s", EndpointURL: "ftp://x"}, "--endpoint-url"},
		"bad agent":      {Config{Socket: "s", PodIdentityEndpoint: "169.254.170.23"}, "--pod-identity-endpoint"},
		"negative qps":   {Config{Socket: "s", QPS: -1}, "--qps"},
		"negative ttl":   {Config{Socket: "s", CacheTTL: -1}, "--cache-ttl"},
		"negative pin":   {Config{Socket: "s", PinnedCacheTTL: -1}, "--pinned-cache-ttl"},
		"negative role":  {Config{Socket: "s", RoleCacheTTL: -1}, "--role-cache-ttl"},
		"too many tries": {Config{Socket: "s", MaxAttempts: 50}, "--max-attempts"},
	} {
		t.Run(name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate = %v, want an error naming %s", err, tc.want)
			}
		})
	}
}
