package aws

import (
	"errors"
	"strings"
	"testing"

	"github.com/sscsi/secrets-store/internal/atomicfs"
	"github.com/sscsi/secrets-store/providers/plugin"
)

// FuzzParseObjects: any objects/pathTranslation input either fails with
// ErrInvalidParameters or yields objects whose file names are safe and
// distinct.
func FuzzParseObjects(f *testing.F) {
	for _, s := range []string{
		"- objectName: a\n  objectType: secretsmanager",
		"- {objectName: /app/x, objectType: ssmparameter, objectVersion: 2, filePermission: '0600'}",
		"- objectName: arn:aws:secretsmanager:us-east-1:1:secret:x-AbCdEf\n  jmesPath:\n  - {path: a.b, objectAlias: ab}",
		"- {objectName: a, objectType: secretsmanager, objectAlias: a, failoverObject: {objectName: b}}",
		"- {objectName: a, objectType: secretsmanager, objectTemplate: '{{ .x }}'}",
		"- &a {objectName: x}\n- *a",
		"[{objectName: '..', objectType: ssmparameter}]",
	} {
		f.Add(s, "")
		f.Add(s, "False")
	}
	f.Fuzz(func(t *testing.T, objects, pathTranslation string) {
		objs, err := ParseObjects(objects, pathTranslation)
		if err != nil {
			if !errors.Is(err, plugin.ErrInvalidParameters) {
				t.Fatalf("error does not wrap ErrInvalidParameters: %v", err)
			}
			return
		}
		seen := map[string]bool{}
		check := func(name string) {
			if err := atomicfs.ValidatePath(name); err != nil {
				t.Fatalf("accepted unsafe file name %q: %v", name, err)
			}
			if seen[name] {
				t.Fatalf("accepted duplicate file name %q", name)
			}
			seen[name] = true
		}
		for _, o := range objs {
			if o.Type != TypeSecretsManager && o.Type != TypeSSMParameter {
				t.Fatalf("accepted type %q", o.Type)
			}
			check(o.FileName)
			for _, j := range o.JMESPaths {
				check(j.FileName)
			}
			if o.Mode > 0o777 {
				t.Fatalf("accepted mode %o", o.Mode)
			}
		}
	})
}

// FuzzJMESPath: compiling and evaluating any expression on any document
// never panics, and results are strings or a typed error.
func FuzzJMESPath(f *testing.F) {
	f.Add("a.b", `{"a":{"b":"x"}}`)
	f.Add("l[?@ > `1`] | [0]", `{"l":[1,2,3]}`)
	f.Add("join(',', keys(@))", `{"a":1,"b":2}`)
	f.Add("a[", `{}`)
	f.Add("to_string(n)", `{"n": 1e400}`)
	f.Add("*.*.*", `[[[[[]]]]]`)
	f.Fuzz(func(t *testing.T, expr, doc string) {
		c, err := compileJMESPath(expr)
		if err != nil {
			if strings.Contains(err.Error(), "panic") {
				t.Fatalf("unexpected error text: %v", err)
			}
			return
		}
		d, err := decodeJSON([]byte(doc))
		if err != nil {
			return
		}
		_, err = extractJMESPath(c, d)
		if err != nil && !errors.Is(err, errNotString) && !errors.Is(err, errSearchFailed) {
			t.Fatalf("untyped error: %v", err)
		}
	})
}
