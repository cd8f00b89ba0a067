package spclint

import (
	"strings"
	"testing"
)

func lint(t *testing.T, y string) *Result {
	t.Helper()
	r, err := Lint(strings.NewReader(y))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestGoodClasses(t *testing.T) {
	r := lint(t, `
apiVersion: v1
kind: ConfigMap
metadata: {name: ignored}
---
apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata: {name: db, namespace: app}
spec:
  provider: aws
  parameters:
    region: eu-west-1
    objects: |
      - objectName: "prod/db"
        objectType: secretsmanager
        jmesPath:
          - path: username
            objectAlias: dbuser
      - objectName: "/app/flag"
        objectType: ssmparameter
  secretObjects:
  - secretName: db
    type: Opaque
    data:
    - {objectName: dbuser, key: username}
---
apiVersion: secrets-store.csi.x-k8s.io/v1alpha1
kind: SecretProviderClass
metadata: {name: demo, namespace: app}
spec:
  provider: fake
  parameters:
    objects: |
      - objectName: user
        value: alice
`)
	if r.Errors() {
		t.Fatalf("findings on valid classes: %v", r.Findings)
	}
	if len(r.Classes) != 2 {
		t.Fatalf("classes = %v", r.Classes)
	}
	files := strings.Join(r.Files["app/db"], ",")
	if !strings.Contains(files, "prod_db") || !strings.Contains(files, "dbuser") || !strings.Contains(files, "_app_flag") {
		t.Errorf("aws files = %s", files)
	}
	var deprecated bool
	for _, f := range r.Findings {
		deprecated = deprecated || (f.Warning && f.Field == "apiVersion")
	}
	if !deprecated {
		t.Error("no deprecation warning for v1alpha1")
	}
}

func TestBadClasses(t *testing.T) {
	cases := map[string]struct{ yaml, field string }{
		"no provider":   {`spec: {parameters: {objects: x}}`, "spec.provider"},
		"bad provider":  {`spec: {provider: "../x"}`, "spec.provider"},
		"unknown field": {`spec: {provider: fake, paramters: {}}`, "-"},
		"aws dup alias": {`spec:
  provider: aws
  parameters:
    region: us-east-1
    objects: |
      - {objectName: a, objectType: secretsmanager, objectAlias: x}
      - {objectName: b, objectType: secretsmanager, objectAlias: x}`, "spec.parameters.objects"},
		"fake dotdot": {`spec:
  provider: fake
  parameters:
    objects: |
      - {objectName: a, path: ../../etc/x}`, "spec.parameters.objects"},
		"sync unknown file": {`spec:
  provider: fake
  parameters:
    objects: |
      - {objectName: a, value: v}
  secretObjects:
  - {secretName: s, type: Opaque, data: [{objectName: b, key: k}]}`, "spec.secretObjects[0].data[0].objectName"},
		"sync no type": {`spec:
  provider: fake
  parameters: {objects: "- {objectName: a}"}
  secretObjects:
  - {secretName: s, data: [{objectName: a, key: k}]}`, "spec.secretObjects[0].type"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			r := lint(t, "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata: {name: c, namespace: n}\n"+c.yaml+"\n")
			var found bool
			for _, f := range r.Findings {
				if !f.Warning && f.Field == c.field {
					found = true
				}
			}
			if !found {
				t.Fatalf("no error on %s; findings: %v", c.field, r.Findings)
			}
		})
	}
}

func FuzzLint(f *testing.F) {
	f.Add("apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nspec: {provider: fake, parameters: {objects: '- {objectName: a}'}}\n")
	f.Add("---\n---\nkind: SecretProviderClass\napiVersion: secrets-store.csi.x-k8s.io/v1\nspec: {provider: aws, parameters: {objects: '[{objectName: arn:aws:secretsmanager:us-east-1:1:secret:x}]'}}")
	f.Fuzz(func(t *testing.T, y string) {
		if _, err := Lint(strings.NewReader(y)); err != nil {
			t.Fatal(err)
		}
	})
}

// TestFindingsNameTheParameter: a provider's parameter errors land on the
// parameter's own field, with the provider's message and no sentinel text.
func TestFindingsNameTheParameter(t *testing.T) {
	for field, spec := range map[string]string{
		"spec.parameters.region":                   "spec: {provider: aws, parameters: {region: 'us east', objects: '- {objectName: a, objectType: secretsmanager}'}}",
		"spec.parameters.usePodIdentity":           "spec: {provider: aws, parameters: {region: us-east-1, usePodIdentity: maybe, objects: '- {objectName: a, objectType: secretsmanager}'}}",
		"spec.parameters.objects":                  "spec: {provider: fake, parameters: {objects: '- {objectName: a, source: nope}'}}",
		"spec.provider":                            "spec: {provider: 'a.b', parameters: {}}",
		"spec.secretObjects[0].data[0].objectName": "spec: {provider: fake, parameters: {objects: '- {objectName: a}'}, secretObjects: [{secretName: s, type: Opaque, data: [{objectName: /abs, key: k}]}]}",
	} {
		r := lint(t, "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata: {name: c, namespace: n}\n"+spec+"\n")
		var found bool
		for _, f := range r.Findings {
			if strings.Contains(f.Message, "invalid parameters") {
				t.Errorf("%s: message carries a sentinel prefix: %s", field, f.Message)
			}
			found = found || (!f.Warning && f.Field == field)
		}
		if !found {
			t.Errorf("no error on %s; findings: %v", field, r.Findings)
		}
	}
}

func TestVaultClasses(t *testing.T) {
	r := lint(t, `apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata: {name: v, namespace: shop}
spec:
  provider: vault
  parameters:
    roleName: app
    vaultAddress: https://vault:8200
    objects: |
      - {objectName: pw, secretPath: secret/data/app, secretKey: password}
      - {objectName: cfg, secretPath: secret/data/cfg, allKeys: true}
`)
	if r.Errors() {
		t.Fatalf("findings on a valid class: %v", r.Findings)
	}
	if files := strings.Join(r.Files["shop/v"], ","); files != "pw,cfg/*" {
		t.Errorf("files = %s (%v, %v)", files, r.Files, r.Findings)
	}
	for field, params := range map[string]string{
		"spec.parameters.roleName":           "{objects: '- {objectName: a, secretPath: a}'}",
		"spec.parameters.vaultSkipTLSVerify": "{roleName: r, vaultSkipTLSVerify: maybe, objects: '- {objectName: a, secretPath: a}'}",
		"spec.parameters.objects":            "{roleName: r, objects: '- {objectName: a, secretPath: a, method: DELETE}'}",
	} {
		r := lint(t, "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata: {name: c, namespace: n}\nspec: {provider: vault, parameters: "+params+"}\n")
		var found bool
		for _, f := range r.Findings {
			found = found || (!f.Warning && f.Field == field)
		}
		if !found {
			t.Errorf("no error on %s; findings: %v", field, r.Findings)
		}
	}
	// A TLS file outside the default -spc-tls-dir is a warning (the
	// provider's directory is unknown offline); a relative one an error.
	for ca, warning := range map[string]bool{"/etc/ssl/vault-ca.crt": true, "vault-ca.crt": false} {
		r := lint(t, "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata: {name: c, namespace: n}\nspec: {provider: vault, parameters: {roleName: r, vaultCACertPath: "+ca+", objects: '- {objectName: a, secretPath: a}'}}\n")
		var found bool
		for _, f := range r.Findings {
			found = found || (f.Warning == warning && f.Field == "spec.parameters.vaultCACertPath")
		}
		if !found || r.Errors() == warning {
			t.Errorf("vaultCACertPath %s: want warning=%v; findings: %v", ca, warning, r.Findings)
		}
	}
}
