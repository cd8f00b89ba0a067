package aws

import (
	"errors"
	"strings"
	"testing"

	"github.com/sscsi/secrets-store/internal/objtemplate"
	"github.com/sscsi/secrets-store/providers/aws/params"
)

func TestJMESPathExtract(t *testing.T) {
	doc, err := decodeJSON([]byte(`{"a":{"b":"x"},"n":1,"l":["p","q"]}`))
	if err != nil {
		t.Fatal(err)
	}
	for expr, want := range map[string]string{"a.b": "x", "l[1]": "q", "join(',', l)": "p,q"} {
		c, err := params.CompileJMESPath(expr)
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		got, err := extractJMESPath(c, doc)
		if err != nil || got != want {
			t.Errorf("%s = %q, %v; want %q", expr, got, err, want)
		}
	}
	for _, expr := range []string{"n", "a", "missing", "l"} {
		c, _ := params.CompileJMESPath(expr)
		if _, err := extractJMESPath(c, doc); !errors.Is(err, errNotString) {
			t.Errorf("%s: error = %v, want errNotString", expr, err)
		}
	}
}

func TestObjectTemplate(t *testing.T) {
	objs, err := params.ParseObjects("- objectName: a\n  objectType: secretsmanager\n  objectTemplate: |\n    {{ range $k, $v := . }}export {{ $k }}={{ $v }}\n    {{ end }}", "")
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := decodeJSON([]byte(`{"USER":"u","PASS":"p"}`))
	out, err := renderTemplate(objs[0].Template, doc)
	if err != nil || string(out) != "export PASS=p\nexport USER=u\n" {
		t.Errorf("render = %q, %v", out, err)
	}
	bomb, err := params.ParseObjects("- {objectName: a, objectType: secretsmanager, objectTemplate: '{{range $}}{{range $}}{{range $}}{{range $}}{{.}}{{end}}{{end}}{{end}}{{end}}'}", "")
	if err != nil {
		t.Fatal(err)
	}
	big, _ := decodeJSON([]byte(`[` + strings.Repeat(`"xxxxxxxxxxxxxxxxxxxx",`, 99) + `"x"]`))
	if _, err := renderTemplate(bomb[0].Template, big); !errors.Is(err, objtemplate.ErrTooCostly) {
		t.Errorf("template bomb error = %v, want ErrTooCostly", err)
	}
}
