package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	var out, errb bytes.Buffer
	good := "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata: {name: a, namespace: team}\nspec: {provider: fake, parameters: {objects: '- {objectName: u, value: v}'}}\n"
	if rc := run([]string{"lint", "-"}, strings.NewReader(good), &out, &errb); rc != 0 {
		t.Fatalf("rc = %d, out %s %s", rc, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "team/a mounts: [u]") {
		t.Errorf("out = %s", out.String())
	}
	out.Reset()
	bad := strings.Replace(good, "provider: fake", "provider: ''", 1)
	if rc := run([]string{"lint", "-"}, strings.NewReader(bad), &out, &errb); rc != 1 || !strings.Contains(out.String(), "spec.provider") {
		t.Fatalf("rc = %d, out %s", rc, out.String())
	}
	if rc := run(nil, nil, &out, &errb); rc != 2 {
		t.Fatalf("usage rc = %d", rc)
	}
}
