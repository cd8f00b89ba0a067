package chart_test

import (
	"slices"
	"strings"
	"testing"
)

const syncName = driverDS + "-sync-controller"

// TestSyncController renders syncController.enabled with both providers as
// sidecars and checks least privilege and the controller's configuration.
func TestSyncController(t *testing.T) {
	r, err := render(t, set("syncController.enabled", true, "syncController.providers.fake.enabled", true,
		"syncController.providers.aws.enabled", true, "providers.aws.region", "eu-west-1",
		"syncController.rotationPollInterval", "1m", "syncController.tokenRequestAudiences", []any{"vault"}), kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	d := r.deployments[syncName]
	if d == nil {
		t.Fatalf("no Deployment %s", syncName)
	}
	spec := d.Spec.Template.Spec
	if spec.ServiceAccountName != syncName || len(spec.Containers) != 3 {
		t.Fatalf("service account %q, %d containers", spec.ServiceAccountName, len(spec.Containers))
	}
	args := spec.Containers[0].Args
	for _, want := range []string{"--rotation-poll-interval=1m", "--token-request-audience=vault", "--token-request-audience=sts.amazonaws.com", "--provider-volume=/provider", "--leader-election-namespace=" + namespace} {
		if !slices.Contains(args, want) {
			t.Errorf("controller args %v lack %s", args, want)
		}
	}
	if spec.Containers[0].Resources.Limits.Memory().String() != "128Mi" {
		t.Errorf("memory limit %v", spec.Containers[0].Resources.Limits.Memory())
	}
	if spec.Volumes[0].EmptyDir == nil || spec.Volumes[0].EmptyDir.Medium != "Memory" {
		t.Errorf("provider socket volume %+v", spec.Volumes[0])
	}
	if !slices.Contains(spec.Containers[1].Args, "--endpoint=/provider/fake.sock") || !slices.Contains(spec.Containers[2].Args, "--endpoint=/provider/aws.sock") {
		t.Errorf("sidecars %v / %v", spec.Containers[1].Args, spec.Containers[2].Args)
	}

	role := r.clusterRoles[syncName]
	if role == nil {
		t.Fatal("no ClusterRole")
	}
	for _, rule := range role.Rules {
		if slices.Contains(rule.Resources, "secrets") {
			if !slices.Equal(rule.Verbs, []string{"create", "patch"}) {
				t.Errorf("Secret verbs %v: the controller must not read, list, watch or delete Secrets", rule.Verbs)
			}
		}
		if slices.Contains(rule.Verbs, "*") || slices.Contains(rule.Resources, "*") {
			t.Errorf("wildcard rule %+v", rule)
		}
	}
	if r.roles[syncName+"-leader-election"] == nil || r.roleBindings[syncName+"-leader-election"] == nil {
		t.Error("no leader election Role and binding")
	}
	for _, p := range []string{"-secrets", "-no-delete", "-tokens"} {
		pol := r.policies[syncName+p]
		if pol == nil || r.policyBinds[syncName+p] == nil {
			t.Errorf("policy %s or its binding missing", syncName+p)
			continue
		}
		if len(pol.Spec.MatchConditions) != 1 || !strings.Contains(pol.Spec.MatchConditions[0].Expression, "system:serviceaccount:"+namespace+":"+syncName) {
			t.Errorf("policy %s does not match the controller only: %+v", pol.Name, pol.Spec.MatchConditions)
		}
	}
	tok := r.policies[syncName+"-tokens"]
	if tok != nil && !strings.Contains(tok.Spec.Validations[0].Expression, `["vault","sts.amazonaws.com"]`) {
		t.Errorf("token policy audiences: %s", tok.Spec.Validations[0].Expression)
	}

	// hostNetwork (the local test node): probes call the serving address's
	// host, the controller gets its environment.
	hn, err := render(t, set("syncController.enabled", true, "syncController.hostNetwork", true,
		"syncController.serverAddress", "127.0.0.1:8097",
		"syncController.env", []any{map[string]any{"name": "KUBERNETES_SERVICE_HOST", "value": "127.0.0.1"}}), kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	hspec := hn.deployments[syncName].Spec.Template.Spec
	mgr := hspec.Containers[0]
	if !hspec.HostNetwork || mgr.ReadinessProbe == nil || mgr.ReadinessProbe.HTTPGet.Host != "127.0.0.1" ||
		mgr.LivenessProbe.HTTPGet.Host != "127.0.0.1" || len(mgr.Env) != 1 || mgr.Env[0].Value != "127.0.0.1" {
		t.Errorf("hostNetwork %v, probes %+v / %+v, env %+v", hspec.HostNetwork, mgr.ReadinessProbe, mgr.LivenessProbe, mgr.Env)
	}
	if spec.HostNetwork || spec.Containers[0].ReadinessProbe.HTTPGet.Host != "" {
		t.Error("hostNetwork or a probe host set by default")
	}
	// The new pod needs the old one's host port: the old one goes first, so
	// an upgrade on a one-node cluster does not wait forever for a pod that
	// cannot be scheduled (helm upgrade --wait: context deadline exceeded).
	if ru := hn.deployments[syncName].Spec.Strategy.RollingUpdate; ru == nil || ru.MaxSurge == nil || ru.MaxSurge.IntValue() != 0 ||
		ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 1 {
		t.Errorf("hostNetwork: rolling update %+v, want maxSurge 0, maxUnavailable 1", ru)
	}
	if d.Spec.Strategy.RollingUpdate != nil {
		t.Errorf("default (pod network): rolling update %+v, want Kubernetes' default", d.Spec.Strategy.RollingUpdate)
	}

	off, err := render(t, set(), kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	if len(off.deployments) != 0 || len(off.policies) != 0 || off.clusterRoles[syncName] != nil {
		t.Error("syncController objects rendered with syncController.enabled=false")
	}
}

// TestSyncControllerVault renders provider-vault as a sidecar of the SecretSync
// controller: providers.vault's settings, its socket in the shared in-memory
// directory, no health server of its own, its CA and version key mounted, and
// the controller asking for tokens of Vault's audience (allowed by the token
// policy).
func TestSyncControllerVault(t *testing.T) {
	r, err := render(t, set("syncController.enabled", true, "syncController.providers.vault.enabled", true,
		"providers.vault.address", "https://vault.example:8200", "providers.vault.authMount", "k8s-prod",
		"providers.vault.audience", "vault-prod",
		"providers.vault.caCert", map[string]any{"secretName": "vault-ca", "key": "ca.crt"},
		"providers.vault.versionKey", map[string]any{"secretName": "vkey", "key": "key"}), kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	d := r.deployments[syncName]
	if d == nil {
		t.Fatalf("no Deployment %s", syncName)
	}
	spec := d.Spec.Template.Spec
	if len(spec.Containers) != 2 || spec.Containers[1].Name != "provider-vault" {
		t.Fatalf("containers %d, want manager + provider-vault", len(spec.Containers))
	}
	c := spec.Containers[1]
	wantFlag(t, c.Args, "--endpoint", "/provider/vault.sock")
	wantFlag(t, c.Args, "--health-addr", "")
	wantFlag(t, c.Args, "--vault-addr", "https://vault.example:8200")
	wantFlag(t, c.Args, "--vault-mount", "k8s-prod")
	wantFlag(t, c.Args, "--audience", "vault-prod")
	wantFlag(t, c.Args, "--vault-tls-ca-cert", "/etc/provider-vault/ca/ca.crt")
	wantFlag(t, c.Args, "--version-key-file", "/etc/provider-vault/version-key/key")
	wantFlag(t, c.Args, "--allowed-vault-addrs", "")
	if c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem {
		t.Error("provider-vault sidecar without a read-only root filesystem")
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	if mounts["providers"] != "/provider" || mounts["vault-ca"] != "/etc/provider-vault/ca" || mounts["vault-version-key"] != "/etc/provider-vault/version-key" {
		t.Errorf("provider-vault mounts %v", mounts)
	}
	vols := map[string]bool{}
	for _, v := range spec.Volumes {
		switch {
		case v.Name == "vault-ca" && v.Secret != nil && v.Secret.SecretName == "vault-ca",
			v.Name == "vault-version-key" && v.Secret != nil && v.Secret.SecretName == "vkey",
			v.Name == "providers" && v.EmptyDir != nil:
			vols[v.Name] = true
		}
	}
	if len(vols) != 3 {
		t.Errorf("pod volumes %+v: want providers (emptyDir), vault-ca and vault-version-key Secrets", spec.Volumes)
	}
	if !slices.Contains(spec.Containers[0].Args, "--token-request-audience=vault-prod") {
		t.Errorf("controller args %v: no token for Vault's audience", spec.Containers[0].Args)
	}
	tok := r.policies[syncName+"-tokens"]
	if tok == nil || !strings.Contains(tok.Spec.Validations[0].Expression, `["vault-prod"]`) {
		t.Errorf("token policy does not allow exactly Vault's audience: %+v", tok)
	}
	if _, ok := r.daemonSets[driverDS+"-provider-vault"]; ok {
		t.Error("syncController.providers.vault rendered the node DaemonSet too (providers.vault.enabled is off)")
	}

	// Off by default: no sidecar.
	off, err := render(t, set("syncController.enabled", true), kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range off.deployments[syncName].Spec.Template.Spec.Containers {
		if c.Name == "provider-vault" {
			t.Error("provider-vault sidecar rendered with syncController.providers.vault.enabled=false")
		}
	}
}
