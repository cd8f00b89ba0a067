package objtemplate

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

func doc(t testing.TB, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestOrdinaryTemplates(t *testing.T) {
	d := doc(t, `{"username":"admin","password":"hunter2","hosts":["a","b","c"],"port":5432}`)
	for src, want := range map[string]string{
		`{{ .username }}:{{ .password }}`:                                    "admin:hunter2",
		`{{ range $i, $h := .hosts }}{{ if $i }},{{ end }}{{ $h }}{{ end }}`: "a,b,c",
		`{{ printf "%s@%v" .username .port }}`:                               "admin@5432",
		`{{ with .username }}{{ . | printf "%q" }}{{ end }}`:                 `"admin"`,
		`{{ len .hosts }} {{ index .hosts 1 }} {{ urlquery "a b" }}`:         "3 b a+b",
		`{{ range 3 }}x{{ end }}`:                                            "xxx",
	} {
		tm, err := Parse("t", src)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		got, err := tm.Execute(d)
		if err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", src, got, err, want)
		}
	}
}

func TestRefusedAtParse(t *testing.T) {
	for name, src := range map[string]string{
		"define":   `{{define "x"}}{{template "x" .}}{{end}}{{template "x" .}}`,
		"template": `{{template "y" .}}`,
		"block":    `{{block "b" .}}x{{end}}`,
		"too long": strings.Repeat("x", MaxSource+1),
		"syntax":   `{{ .a `,
	} {
		if _, err := Parse("t", src); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
}

// TestHostileTemplatesStop: each would run for hours or take gigabytes
// unbounded; each stops with ErrTooCostly (or ErrInvalid) quickly.
func TestHostileTemplatesStop(t *testing.T) {
	d := doc(t, `{"a":[`+strings.Repeat(`1,`, 9999)+`1],"s":"`+strings.Repeat("x", 1000)+`"}`)
	for name, src := range map[string]string{
		"range over a huge int":    `{{range 1000000000000}}{{end}}`,
		"nested ranges, no output": `{{range .a}}{{range $.a}}{{range $.a}}{{end}}{{end}}{{end}}`,
		"output bomb":              `{{range .a}}{{range $.a}}{{$.s}}{{end}}{{end}}`,
		"string doubling":          `{{$x := .s}}{{range .a}}{{$x = printf "%s%s" $x $x}}{{end}}`,
		"huge printf width":        `{{printf "%999999999d" 1}}`,
		"star width":               `{{printf "%*d" 999999999 1}}`,
		"print doubling":           `{{$x := .s}}{{range .a}}{{$x = print $x $x}}{{end}}`,
		"html growth":              `{{$x := .s}}{{range .a}}{{$x = html $x $x}}{{end}}`,
	} {
		t.Run(name, func(t *testing.T) {
			tm, err := Parse("t", src)
			if err != nil {
				if errors.Is(err, ErrInvalid) {
					return
				}
				t.Fatal(err)
			}
			start := time.Now()
			out, err := tm.Execute(d)
			took := time.Since(start)
			if !errors.Is(err, ErrTooCostly) && !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v (output %d bytes), want ErrTooCostly", err, len(out))
			}
			if strings.Contains(err.Error(), "xxxxxxxx") {
				t.Fatalf("error quotes the data: %.200s", err)
			}
			t.Logf("stopped after %s: %v", took, err)
		})
	}
}

func TestConcurrentExecutionsHaveTheirOwnBudget(t *testing.T) {
	tm, err := Parse("t", `{{range .}}{{.}}{{end}}`)
	if err != nil {
		t.Fatal(err)
	}
	items := make([]any, MaxSteps/4)
	for i := range items {
		items[i] = "x"
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := tm.Execute(items); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
}

func TestMissingKeyDoesNotQuoteData(t *testing.T) {
	tm, err := Parse("t", `{{ .nope }}`)
	if err != nil {
		t.Fatal(err)
	}
	_, err = tm.Execute(doc(t, `{"password":"hunter2"}`))
	if !errors.Is(err, ErrFailed) || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("err = %v", err)
	}
}

// BenchmarkWorstAccepted is the most expensive execution the bounds allow
// for a simple step: MaxSteps steps over a large value.
func BenchmarkWorstAccepted(b *testing.B) {
	d := doc(b, `{"a":[`+strings.Repeat(`1,`, 99999)+`1]}`)
	tm, err := Parse("t", `{{range .a}}{{range $.a}}{{end}}{{end}}`)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := tm.Execute(d); !errors.Is(err, ErrTooCostly) {
			b.Fatal(err)
		}
	}
}

func FuzzTemplate(f *testing.F) {
	for _, s := range []string{`{{.a}}`, `{{range .b}}{{.}}{{end}}`, `{{printf "%5.2f" .c}}`, `{{range 10}}{{end}}`, `{{define "x"}}{{end}}`, `{{if .a}}{{else}}{{end}}`} {
		f.Add(s)
	}
	d := doc(f, `{"a":"x","b":[1,2,3],"c":1.5,"d":{"e":[{"f":"g"}]}}`)
	f.Fuzz(func(t *testing.T, src string) {
		tm, err := Parse("t", src)
		if err != nil {
			return
		}
		start := time.Now()
		out, _ := tm.Execute(d)
		if len(out) > MaxOutput {
			t.Fatalf("output %d bytes", len(out))
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("execution took %s", d)
		}
	})
}
