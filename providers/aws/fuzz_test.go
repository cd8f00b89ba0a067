package aws

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sscsi/secrets-store/internal/objtemplate"
	"github.com/sscsi/secrets-store/providers/aws/params"
)

// FuzzJMESPath: compiling and evaluating any expression on any document
// never panics, and results are strings or a typed error.
func FuzzJMESPath(f *testing.F) {
	f.Add("a.b", `{"a":{"b":"x"}}`)
	f.Add("l[?@ > `1`] | [0]", `{"l":[1,2,3]}`)
	f.Add("join(',', keys(@))", `{"a":1,"b":2}`)
	f.Add("a[", `{}`)
	f.Add("to_string(n)", `{"n": 1e400}`)
	f.Add("*.*.*", `[[[[[]]]]]`)
	f.Add("[@,@,@,@][] | [@,@,@,@][]", `[1,2,3,4,5,6,7,8]`)
	f.Fuzz(func(t *testing.T, expr, doc string) {
		c, err := params.CompileJMESPath(expr)
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
		start := time.Now()
		_, err = extractJMESPath(c, d)
		if took := time.Since(start); took > 5*time.Second {
			t.Fatalf("%q took %s", expr, took)
		}
		if err != nil && !errors.Is(err, errNotString) && !errors.Is(err, errSearchFailed) {
			t.Fatalf("untyped error: %v", err)
		}
	})
}

// TestJMESPathFanOutIsBounded: a chain of multi-selects and flattens
// multiplies the value at each step (exponential); it is refused at
// compile time, while one fan-out node is accepted and its worst case over
// a large value is logged.
func TestJMESPathFanOutIsBounded(t *testing.T) {
	for _, expr := range []string{
		"[@,@,@,@,@,@,@,@][][@,@,@,@,@,@,@,@][][@,@,@,@,@,@,@,@][]",
		"a[*].b[*].c[*]",
		"sort_by(@, &a)[*].b[*]",
		strings.Repeat("a.", 200) + "a",
	} {
		if _, err := params.CompileJMESPath(expr); err == nil {
			t.Errorf("%.60s... accepted", expr)
		}
	}
	k := strings.TrimSuffix(strings.Repeat("@,", 100), ",")
	c, err := params.CompileJMESPath("[" + k + "] | to_string(@)")
	if err != nil {
		t.Fatal(err)
	}
	d, _ := decodeJSON([]byte("[" + strings.Repeat("1,", 9999) + "1]"))
	start := time.Now()
	if _, err := extractJMESPath(c, d); err != nil {
		t.Fatal(err)
	}
	t.Logf("worst accepted shape (100 copies of a 10000-element value, printed): %s", time.Since(start))
}

// FuzzObjectTemplate: an objectTemplate, as an SPC author writes it, over
// any JSON value: parsing and rendering stop within objtemplate's bounds,
// errors are typed, and no error quotes the value (only the template's
// own text may appear in an error).
func FuzzObjectTemplate(f *testing.F) {
	const marker = "s3cr3tMARK"
	for _, s := range []string{`{{.a}}`, `{{range .b}}{{.}}{{end}}`, `{{printf "%q" .a}}`, `{{index .b 7}}`, `{{.a.b}}`, `{{range 1000000000}}{{end}}`, `{{slice .a 1 99}}`, `{{len .a}}{{eq .a 1}}`, `{{template "x"}}`} {
		f.Add(s, `{"a":"`+marker+`","b":["`+marker+`",2,{"c":"`+marker+`"}]}`)
	}
	f.Fuzz(func(t *testing.T, tmpl, doc string) {
		objects := "- objectName: a\n  objectType: secretsmanager\n  objectTemplate: " + strconv.Quote(tmpl)
		objs, err := params.ParseObjects(objects, "")
		if err != nil || objs[0].Template == nil {
			return
		}
		d, err := decodeJSON([]byte(doc))
		if err != nil {
			return
		}
		start := time.Now()
		out, err := renderTemplate(objs[0].Template, d)
		if took := time.Since(start); took > 5*time.Second {
			t.Fatalf("%q took %s", tmpl, took)
		}
		if len(out) > objtemplate.MaxOutput {
			t.Fatalf("output of %d bytes", len(out))
		}
		if err != nil && strings.Contains(err.Error(), marker) && !strings.Contains(tmpl, marker) {
			t.Fatalf("error quotes the value: %v", err)
		}
	})
}
