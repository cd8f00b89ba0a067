package aws_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/sscsi/secrets-store/providers/aws/auth"
	"github.com/sscsi/secrets-store/providers/plugin"
	"github.com/sscsi/secrets-store/test/faultproxy"
)

func TestSecretsManagerStringAndBinary(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	strName, binName := e.name("db/password"), e.name("cert")
	v1 := e.putSecret(region, strName, sdkaws.String("s3cr3t"), nil)
	bin := []byte{0x00, 0xff, 0x10, 'x', 0x80}
	e.putSecret(region, binName, nil, bin)

	got := e.mustMount("p1", "app", objects(
		fmt.Sprintf("- objectName: %s\n  objectType: secretsmanager", strName),
		fmt.Sprintf("- objectName: %s\n  objectType: secretsmanager\n  objectAlias: tls/cert.der\n  filePermission: \"0600\"", binName),
	))
	file := strings.ReplaceAll(strName, "/", "_")
	if f := got[file]; f.contents != "s3cr3t" || f.version != v1 || f.mode != 0o644 {
		t.Errorf("string secret = %+v, want contents s3cr3t version %s mode 0644", f, v1)
	}
	if f := got["tls/cert.der"]; f.contents != string(bin) || f.mode != 0o600 {
		t.Errorf("binary secret = %q mode %o, want raw bytes %q mode 0600", f.contents, f.mode, bin)
	}
	if n := e.proxy.Counts()["secretsmanager.BatchGetSecretValue"]; n != 1 {
		t.Errorf("BatchGetSecretValue calls = %d, want 1 for two secrets", n)
	}
	if n := e.proxy.Counts()["secretsmanager.GetSecretValue"]; n != 0 {
		t.Errorf("GetSecretValue calls = %d, want 0 (unpinned secrets are batched)", n)
	}
}

func TestSecretsManagerVersionsAndStages(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	n := e.name("rotating")
	v1 := e.putSecret(region, n, sdkaws.String("old"), nil)
	v2 := e.putSecret(region, n, sdkaws.String("new"), nil)

	got := e.mustMount("p1", "app", objects(
		fmt.Sprintf("- {objectName: %s, objectType: secretsmanager, objectAlias: latest}", n),
		fmt.Sprintf("- {objectName: %s, objectType: secretsmanager, objectAlias: pinned, objectVersion: %s}", n, v1),
		fmt.Sprintf("- {objectName: %s, objectType: secretsmanager, objectAlias: previous, objectVersionLabel: AWSPREVIOUS}", n),
		fmt.Sprintf("- {objectName: %s, objectType: secretsmanager, objectAlias: current, objectVersionLabel: AWSCURRENT}", n),
	))
	want := map[string]mounted{
		"latest": {"new", 0o644, v2}, "pinned": {"old", 0o644, v1}, "previous": {"old", 0o644, v1}, "current": {"new", 0o644, v2},
	}
	for f, w := range want {
		if got[f] != w {
			t.Errorf("%s = %+v, want %+v", f, got[f], w)
		}
	}
	c := e.proxy.Counts()
	if c["secretsmanager.GetSecretValue"] != 2 || c["secretsmanager.BatchGetSecretValue"] != 1 {
		t.Errorf("calls = %v, want 2 GetSecretValue (pinned id, AWSPREVIOUS) and 1 batch (latest and AWSCURRENT share it)", c)
	}
}

func TestSecretsManagerJMESPath(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	n := e.name("json")
	e.putSecret(region, n, sdkaws.String(`{"username":"admin","password":"hunter2","port":5432,"nested":{"key":"v"}}`), nil)
	got := e.mustMount("p1", "app", objects(
		"- objectName: "+n,
		"  objectType: secretsmanager",
		"  objectAlias: db.json",
		"  jmesPath:",
		"    - {path: username, objectAlias: user}",
		"    - {path: password, objectAlias: pass, filePermission: \"0400\"}",
		"    - {path: nested.key, objectAlias: nested/key}",
	))
	if got["user"].contents != "admin" || got["pass"].contents != "hunter2" || got["pass"].mode != 0o400 || got["nested/key"].contents != "v" {
		t.Errorf("jmesPath files = %+v", got)
	}
	if !strings.Contains(got["db.json"].contents, `"username"`) {
		t.Errorf("main file = %q, want the whole JSON document", got["db.json"].contents)
	}
	if got["user"].version != got["db.json"].version {
		t.Errorf("jmesPath file version %q differs from its object's %q", got["user"].version, got["db.json"].version)
	}

	_, err := e.mount("p2", "app", objects("- {objectName: "+n+", objectType: secretsmanager, jmesPath: [{path: port, objectAlias: port}]}"))
	wantKind(t, err, plugin.ErrInvalidParameters)
	if !strings.Contains(err.Error(), "jmesPath[0].path") || !strings.Contains(err.Error(), "not a string") || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("non-string result error = %v", err)
	}
	plainName := e.name("plain")
	e.putSecret(region, plainName, sdkaws.String("not json hunter2"), nil)
	_, err = e.mount("p3", "app", objects("- {objectName: "+plainName+", objectType: secretsmanager, jmesPath: [{path: a, objectAlias: a}]}"))
	wantKind(t, err, plugin.ErrInvalidParameters)
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error quotes the secret value: %v", err)
	}
}

func TestSecretsManagerBatchesOfTwenty(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	var lines []string
	for i := range 25 {
		n := e.name(fmt.Sprintf("s%02d", i))
		e.putSecret(region, n, sdkaws.String(fmt.Sprintf("value-%d", i)), nil)
		lines = append(lines, fmt.Sprintf("- {objectName: %s, objectType: secretsmanager}", n))
	}
	got := e.mustMount("p1", "app", objects(lines...))
	if len(got) != 25 || got[e.name("s24")].contents != "value-24" {
		t.Fatalf("got %d files", len(got))
	}
	if n := e.proxy.Counts()["secretsmanager.BatchGetSecretValue"]; n != 2 {
		t.Errorf("BatchGetSecretValue calls = %d, want 2 (20 + 5)", n)
	}
}

func TestSSMParameters(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	plain, secure, versioned := e.name("plain"), "/"+e.name("app/secure"), e.name("versioned")
	e.putParam(region, plain, "hello", ssmtypes.ParameterTypeString)
	e.putParam(region, secure, "encrypted-value", ssmtypes.ParameterTypeSecureString)
	e.putParam(region, versioned, "one", ssmtypes.ParameterTypeString)
	e.putParam(region, versioned, "two", ssmtypes.ParameterTypeString)
	if _, err := e.ssm(region).LabelParameterVersion(t.Context(), &ssm.LabelParameterVersionInput{Name: sdkaws.String(versioned), ParameterVersion: sdkaws.Int64(1), Labels: []string{"stable"}}); err != nil {
		t.Fatal(err)
	}
	got := e.mustMount("p1", "app", objects(
		fmt.Sprintf("- {objectName: %s, objectType: ssmparameter}", plain),
		fmt.Sprintf("- {objectName: %s, objectType: ssmparameter}", secure),
		fmt.Sprintf("- {objectName: %s, objectType: ssmparameter, objectAlias: latest}", versioned),
		fmt.Sprintf("- {objectName: %s, objectType: ssmparameter, objectAlias: v1, objectVersion: \"1\"}", versioned),
		fmt.Sprintf("- {objectName: %s, objectType: ssmparameter, objectAlias: stable, objectVersionLabel: stable}", versioned),
	))
	want := map[string]mounted{
		plain:                                {"hello", 0o644, "1"},
		strings.ReplaceAll(secure, "/", "_"): {"encrypted-value", 0o644, "1"},
		"latest":                             {"two", 0o644, "2"},
		"v1":                                 {"one", 0o644, "1"},
		"stable":                             {"one", 0o644, "1"},
	}
	for f, w := range want {
		if got[f] != w {
			t.Errorf("%s = %+v, want %+v", f, got[f], w)
		}
	}
	// Three selectors of one name cannot share a batch (responses are
	// matched by name), so: {plain, secure, latest}, {v1}, {stable}.
	if n := e.proxy.Counts()["ssm.GetParameters"]; n != 3 {
		t.Errorf("GetParameters calls = %d, want 3", n)
	}
}

func TestSSMMoreThanTenParameters(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	var lines []string
	for i := range 23 {
		n := e.name(fmt.Sprintf("p%02d", i))
		e.putParam(region, n, fmt.Sprintf("v%d", i), ssmtypes.ParameterTypeSecureString)
		lines = append(lines, fmt.Sprintf("- {objectName: %s, objectType: ssmparameter}", n))
	}
	got := e.mustMount("p1", "app", objects(lines...))
	if len(got) != 23 || got[e.name("p22")].contents != "v22" {
		t.Fatalf("got %d files: %+v", len(got), got)
	}
	if n := e.proxy.Counts()["ssm.GetParameters"]; n != 3 {
		t.Errorf("GetParameters calls = %d, want 3 (10 + 10 + 3)", n)
	}
}

func TestNotFound(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	exists := e.name("exists")
	e.putSecret(region, exists, sdkaws.String("v"), nil)
	for name, params := range map[string]map[string]string{
		"secret":          objects(fmt.Sprintf("- {objectName: %s, objectType: secretsmanager}\n- {objectName: %s, objectType: secretsmanager}", exists, e.name("missing"))),
		"pinned secret":   objects(fmt.Sprintf("- {objectName: %s, objectType: secretsmanager, objectVersion: 00000000-0000-0000-0000-000000000000}", exists)),
		"parameter":       objects(fmt.Sprintf("- {objectName: %s, objectType: ssmparameter}", e.name("missing-param"))),
		"parameter label": objects(fmt.Sprintf("- {objectName: %s, objectType: ssmparameter, objectVersionLabel: nope}", e.name("missing-param"))),
	} {
		t.Run(name, func(t *testing.T) {
			resp, err := e.mount("p-"+strings.ReplaceAll(name, " ", "-"), "app", params)
			t.Logf("error: %v", err)
			if resp != nil {
				t.Errorf("got a partial response with %d files", len(resp.Files))
			}
			if !errorsIsAny(err, plugin.ErrNotFound, plugin.ErrInvalidParameters) {
				t.Fatalf("error = %v, want not found", err)
			}
			if !strings.Contains(err.Error(), "missing") && !strings.Contains(err.Error(), exists) {
				t.Errorf("error does not name the object: %v", err)
			}
		})
	}
}

func errorsIsAny(err error, kinds ...error) bool {
	for _, k := range kinds {
		if err != nil && errors.Is(err, k) {
			return true
		}
	}
	return false
}

func TestAccessDenied(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	n := e.name("guarded")
	e.putSecret(region, n, sdkaws.String("v"), nil)
	e.proxy.Inject(faultproxy.Rule{API: "secretsmanager.BatchGetSecretValue", Status: 400, Code: "AccessDeniedException"})
	e.proxy.Inject(faultproxy.Rule{API: "secretsmanager.GetSecretValue", Status: 400, Code: "AccessDeniedException"})
	e.proxy.Inject(faultproxy.Rule{API: "ssm.GetParameters", Status: 400, Code: "AccessDeniedException"})
	for _, typ := range []string{"secretsmanager", "ssmparameter"} {
		_, err := e.mount("p1", "app", objects("- {objectName: "+n+", objectType: "+typ+"}"))
		wantKind(t, err, plugin.ErrPermissionDenied)
		if !strings.Contains(err.Error(), n) {
			t.Errorf("error does not name the object: %v", err)
		}
	}
}

// TestUpstreamPolicyWithoutBatchPermission: IAM policies written for the
// upstream provider allow GetSecretValue but not BatchGetSecretValue.
func TestUpstreamPolicyWithoutBatchPermission(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{cacheTTL: 30 * time.Second})
	a, b := e.name("a"), e.name("b")
	e.putSecret(region, a, sdkaws.String("va"), nil)
	e.putSecret(region, b, sdkaws.String("vb"), nil)
	e.proxy.Inject(faultproxy.Rule{API: "secretsmanager.BatchGetSecretValue", Status: 400, Code: "AccessDeniedException"})
	params := objects("- {objectName: "+a+", objectType: secretsmanager}", "- {objectName: "+b+", objectType: secretsmanager}")
	if got := e.mustMount("p1", "app", params); got[a].contents != "va" || got[b].contents != "vb" {
		t.Errorf("got %+v", got)
	}
	e.clock.Step(time.Minute)
	e.mustMount("p2", "app", params)
	c := e.proxy.Counts()
	if c["secretsmanager.BatchGetSecretValue"] != 1 || c["secretsmanager.GetSecretValue"] != 4 {
		t.Errorf("calls = %v; want one refused batch, then GetSecretValue per secret", c)
	}
}

func TestThrottling(t *testing.T) {
	t.Parallel()
	t.Run("exhausted", func(t *testing.T) {
		e := newEnv(t, envOptions{maxAttempts: 3})
		n := e.name("busy")
		e.putSecret(region, n, sdkaws.String("v"), nil)
		e.putParam(region, n, "p", ssmtypes.ParameterTypeString)
		e.proxy.Inject(faultproxy.Rule{API: "ssm.GetParameters", Status: 400, Code: "ThrottlingException"})
		resp, err := e.mount("p1", "app", objects("- {objectName: "+n+", objectType: secretsmanager}", "- {objectName: "+n+", objectType: ssmparameter, objectAlias: param}"))
		wantKind(t, err, plugin.ErrThrottled)
		if resp != nil {
			t.Errorf("throttled mount returned %d files; want none (never a partial set)", len(resp.Files))
		}
		if n := e.proxy.Counts()["ssm.GetParameters"]; n != 3 {
			t.Errorf("GetParameters attempts = %d, want 3 (SDK retries with backoff)", n)
		}
		if got := e.metrics.APICalls("GetParameters", "ThrottlingException"); got != 1 {
			t.Errorf("provider_aws_api_calls_total{api=GetParameters,code=ThrottlingException} = %v, want 1", got)
		}
	})
	t.Run("recovers", func(t *testing.T) {
		e := newEnv(t, envOptions{maxAttempts: 3})
		n := e.name("busy")
		e.putSecret(region, n, sdkaws.String("v"), nil)
		e.proxy.Inject(faultproxy.Rule{API: "secretsmanager.BatchGetSecretValue", Status: 400, Code: "ThrottlingException", Times: 2})
		got := e.mustMount("p1", "app", objects("- {objectName: "+n+", objectType: secretsmanager}"))
		if got[n].contents != "v" {
			t.Errorf("got %+v", got)
		}
	})
}

func TestFailover(t *testing.T) {
	t.Parallel()
	setup := func(t *testing.T) (*env, map[string]string) {
		e := newEnv(t, envOptions{})
		n := e.name("replicated")
		e.putSecret(region, n, sdkaws.String("primary"), nil)
		e.putSecret(failoverRegion, n, sdkaws.String("secondary"), nil)
		e.putParam(region, n, "p-primary", ssmtypes.ParameterTypeString)
		e.putParam(failoverRegion, e.name("other-name"), "p-secondary", ssmtypes.ParameterTypeString)
		params := objects(
			"- {objectName: "+n+", objectType: secretsmanager, objectAlias: secret}",
			"- {objectName: "+n+", objectType: ssmparameter, objectAlias: param, failoverObject: {objectName: "+e.name("other-name")+"}}",
		)
		params["failoverRegion"] = failoverRegion
		return e, params
	}
	t.Run("healthy primary is the only region called", func(t *testing.T) {
		e, params := setup(t)
		got := e.mustMount("p1", "app", params)
		if got["secret"].contents != "primary" || got["param"].contents != "p-primary" {
			t.Errorf("got %+v", got)
		}
		for k := range e.proxy.CountsByRegion() {
			if strings.HasSuffix(k, "@"+failoverRegion) {
				t.Errorf("failover region called while the primary is healthy: %v", e.proxy.CountsByRegion())
			}
		}
	})
	t.Run("5xx fails over", func(t *testing.T) {
		e, params := setup(t)
		e.proxy.Inject(faultproxy.Rule{Region: region, API: "secretsmanager.BatchGetSecretValue", Status: 503, Code: "ServiceUnavailable"})
		e.proxy.Inject(faultproxy.Rule{Region: region, API: "ssm.GetParameters", Status: 500, Code: "InternalServerError"})
		got := e.mustMount("p1", "app", params)
		if got["secret"].contents != "secondary" || got["param"].contents != "p-secondary" {
			t.Errorf("got %+v, want the failover region's values", got)
		}
	})
	t.Run("4xx does not fail over", func(t *testing.T) {
		e, params := setup(t)
		e.proxy.Inject(faultproxy.Rule{Region: region, API: "secretsmanager.BatchGetSecretValue", Status: 400, Code: "AccessDeniedException"})
		e.proxy.Inject(faultproxy.Rule{Region: region, API: "secretsmanager.GetSecretValue", Status: 400, Code: "AccessDeniedException"})
		_, err := e.mount("p1", "app", params)
		wantKind(t, err, plugin.ErrPermissionDenied)
		for k := range e.proxy.CountsByRegion() {
			if strings.HasSuffix(k, "@"+failoverRegion) {
				t.Errorf("failover region called after a 4xx: %v", e.proxy.CountsByRegion())
			}
		}
	})
	t.Run("both regions down", func(t *testing.T) {
		e, params := setup(t)
		e.proxy.Inject(faultproxy.Rule{API: "secretsmanager.BatchGetSecretValue", Status: 503, Code: "ServiceUnavailable"})
		_, err := e.mount("p1", "app", params)
		wantKind(t, err, plugin.ErrUnavailable)
	})
}

func TestValueCacheSharesReadsPerIdentity(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{cacheTTL: 30 * time.Second})
	n, p := e.name("shared"), e.name("shared-param")
	e.putSecret(region, n, sdkaws.String("v1"), nil)
	e.putParam(region, p, "p1", ssmtypes.ParameterTypeString)
	params := objects("- {objectName: "+n+", objectType: secretsmanager}", "- {objectName: "+p+", objectType: ssmparameter}")

	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.mustMount(fmt.Sprintf("pod-%d", i), "app", params)
		}()
	}
	wg.Wait()
	c := e.proxy.Counts()
	if c["secretsmanager.BatchGetSecretValue"] != 1 || c["ssm.GetParameters"] != 1 || c["sts.AssumeRoleWithWebIdentity"] != 1 {
		t.Errorf("10 concurrent pods of one service account made %v; want one call of each", c)
	}
	// Another service account (another role) never sees the first one's reads.
	e.mustMount("pod-other", "other", params)
	c = e.proxy.Counts()
	if c["secretsmanager.BatchGetSecretValue"] != 2 || c["sts.AssumeRoleWithWebIdentity"] != 2 {
		t.Errorf("a second identity made %v; want its own STS and batch calls", c)
	}
	// Changes are seen once the entry expires.
	e.putSecret(region, n, sdkaws.String("v2"), nil)
	e.clock.Step(31 * time.Second)
	if got := e.mustMount("pod-0", "app", params); got[n].contents != "v2" {
		t.Errorf("after the cache TTL got %q, want v2", got[n].contents)
	}
	if n := e.proxy.Counts()["sts.AssumeRoleWithWebIdentity"]; n != 2 {
		t.Errorf("STS calls = %d; credentials should still be cached", n)
	}
}

func TestIRSA(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	n := e.name("irsa")
	e.putSecret(region, n, sdkaws.String("v"), nil)
	params := objects("- {objectName: " + n + ", objectType: secretsmanager}")
	t.Run("credentials cached per role and subject", func(t *testing.T) {
		e.mustMount("a1", "app", params)
		e.mustMount("a2", "app", params)
		if n := e.proxy.Counts()["sts.AssumeRoleWithWebIdentity"]; n != 1 {
			t.Errorf("STS calls = %d, want 1 for two pods of one service account", n)
		}
		e.clock.Step(56 * time.Minute) // moto's credentials last an hour; renewed 5 minutes early
		e.mustMount("a3", "app", params)
		if n := e.proxy.Counts()["sts.AssumeRoleWithWebIdentity"]; n != 2 {
			t.Errorf("STS calls = %d, want a renewal near expiry", n)
		}
	})
	t.Run("no role annotation", func(t *testing.T) {
		_, err := e.mount("b", "plain", params)
		wantKind(t, err, plugin.ErrUnauthenticated)
		if !strings.Contains(err.Error(), auth.RoleAnnotation) {
			t.Errorf("error does not say how to fix it: %v", err)
		}
	})
	t.Run("token of another service account", func(t *testing.T) {
		req := request("c", "app", params)
		req.Tokens[auth.AudienceIRSA] = plugin.Token{Token: jwt("default", "other", "c")}
		_, err := e.backend.Mount(t.Context(), req)
		wantKind(t, err, plugin.ErrUnauthenticated)
	})
	t.Run("no token", func(t *testing.T) {
		req := request("d", "app", params)
		delete(req.Tokens, auth.AudienceIRSA)
		_, err := e.backend.Mount(t.Context(), req)
		wantKind(t, err, plugin.ErrUnauthenticated)
		if !strings.Contains(err.Error(), auth.AudienceIRSA) {
			t.Errorf("error does not name the audience: %v", err)
		}
	})
	t.Run("token rejected by STS", func(t *testing.T) {
		e2 := newEnv(t, envOptions{})
		e2.proxy.Inject(faultproxy.Rule{API: "sts.AssumeRoleWithWebIdentity", Status: 400, Code: "InvalidIdentityToken"})
		req := request("e", "app", params)
		_, err := e2.backend.Mount(t.Context(), req)
		wantKind(t, err, plugin.ErrUnauthenticated)
		if strings.Contains(err.Error(), req.Tokens[auth.AudienceIRSA].Token) {
			t.Errorf("error carries the token: %v", err)
		}
	})
}

func TestRotationSkipsUnchangedPinnedObjects(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{cacheTTL: 30 * time.Second})
	n := e.name("pinned")
	v1 := e.putSecret(region, n, sdkaws.String("v"), nil)
	params := objects(fmt.Sprintf("- {objectName: %s, objectType: secretsmanager, objectVersion: %s}", n, v1))
	e.mustMount("p1", "app", params)
	for range 5 {
		e.clock.Step(2 * time.Minute) // rotation poll interval
		e.mustMount("p1", "app", params)
	}
	if c := e.proxy.Counts()["secretsmanager.GetSecretValue"]; c != 1 {
		t.Errorf("GetSecretValue calls = %d over 6 mounts of a pinned version, want 1", c)
	}
}

func TestSeedClientsWork(t *testing.T) {
	// Guards the harness: moto answers through the proxy too.
	e := newEnv(t, envOptions{})
	c := secretsmanager.NewFromConfig(seedConfig(region), func(o *secretsmanager.Options) { o.BaseEndpoint = sdkaws.String(e.proxy.URL) })
	if _, err := c.ListSecrets(t.Context(), &secretsmanager.ListSecretsInput{}); err != nil {
		t.Fatal(err)
	}
	if e.proxy.Counts()["secretsmanager.ListSecrets"] != 1 {
		t.Errorf("proxy counts = %v", e.proxy.Counts())
	}
}
