package aws_test

import (
	"testing"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/sscsi/secrets-store/providers/plugin"
	"github.com/sscsi/secrets-store/test/faultproxy"
)

// serviceAccountReads counts the reads of service account sa.
func (e *env) serviceAccountReads(sa string) int {
	n := 0
	for _, a := range e.kube.Actions() {
		if a.GetVerb() == "get" && a.GetResource().Resource == "serviceaccounts" {
			if g, ok := a.(interface{ GetName() string }); ok && g.GetName() == sa {
				n++
			}
		}
	}
	return n
}

// TestEachCacheTurnsOff: every cache of the provider has a switch, and the
// switch really sends each mount to the source (service account, STS, AWS).
func TestEachCacheTurnsOff(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name                       string
		o                          envOptions
		saReads, stsCalls, smCalls int
	}{
		{"all on", envOptions{cacheTTL: 30 * time.Second}, 1, 1, 1},
		{"role cache off", envOptions{cacheTTL: 30 * time.Second, noRoleCache: true}, 3, 1, 1},
		{"credentials cache off", envOptions{cacheTTL: 30 * time.Second, noCredentialsCache: true}, 1, 3, 1},
		{"value cache off", envOptions{cacheTTL: 0}, 1, 1, 3},
		{"all off", envOptions{noRoleCache: true, noCredentialsCache: true}, 3, 3, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, tc.o)
			n := e.name("s")
			e.putSecret(region, n, sdkaws.String("v"), nil)
			params := objects("- {objectName: " + n + ", objectType: secretsmanager}")
			for _, pod := range []string{"p1", "p2", "p3"} {
				e.mustMount(pod, "app", params)
				e.clock.Step(time.Second)
			}
			c := e.proxy.Counts()
			if got := e.serviceAccountReads("app"); got != tc.saReads {
				t.Errorf("service account reads = %d, want %d", got, tc.saReads)
			}
			if got := c["sts.AssumeRoleWithWebIdentity"]; got != tc.stsCalls {
				t.Errorf("STS calls = %d, want %d", got, tc.stsCalls)
			}
			if got := c["secretsmanager.BatchGetSecretValue"]; got != tc.smCalls {
				t.Errorf("BatchGetSecretValue calls = %d, want %d", got, tc.smCalls)
			}
		})
	}
}

// TestAccessDeniedRenewsCredentials: IAM's "revoke active sessions" denies
// credentials issued before a time. A denied read must not keep the
// identity on its cached credentials until they expire (up to 55 minutes
// of failed mounts): the next mount assumes the role again.
func TestAccessDeniedRenewsCredentials(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{cacheTTL: 30 * time.Second})
	n := e.name("/p")
	e.putParam(region, n, "v", ssmtypes.ParameterTypeSecureString)
	params := objects("- {objectName: " + n + ", objectType: ssmparameter}")
	e.mustMount("p1", "app", params)
	e.clock.Step(time.Minute) // past the value cache
	e.proxy.Inject(faultproxy.Rule{API: "ssm.GetParameters", Status: 400, Code: "AccessDeniedException", Times: 1})
	_, err := e.mount("p2", "app", params)
	wantKind(t, err, plugin.ErrPermissionDenied)
	if got := e.proxy.Counts()["sts.AssumeRoleWithWebIdentity"]; got != 1 {
		t.Fatalf("STS calls before the retry = %d, want 1", got)
	}
	e.mustMount("p2", "app", params)
	if got := e.proxy.Counts()["sts.AssumeRoleWithWebIdentity"]; got != 2 {
		t.Errorf("STS calls = %d, want 2: the mount after a denial must not reuse the denied credentials", got)
	}
}
