package aws

import (
	"errors"
	"strings"
	"testing"

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
		_, err = extractJMESPath(c, d)
		if err != nil && !errors.Is(err, errNotString) && !errors.Is(err, errSearchFailed) {
			t.Fatalf("untyped error: %v", err)
		}
	})
}
