package fake

import (
	"strings"
	"testing"

	"github.com/sscsi/secrets-store/providers/plugin"
)

// TestParsedObjectsReused: a parameter string seen before is not parsed
// again, yet every mount answers as if it were: another string gets its
// own objects, run-time values and pod info still apply, an invalid string
// fails every time, and a string over the size bound is never kept.
func TestParsedObjectsReused(t *testing.T) {
	b := New()
	mount := func(objects string, pod string) *plugin.Response {
		t.Helper()
		resp, err := b.Mount(t.Context(), &plugin.Request{Attributes: map[string]string{"objects": objects}, Permission: 0o644, Pod: plugin.Pod{Name: pod}})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	one := "- objectName: a\n  value: x\n- objectName: who\n  source: podInfo\n"
	first := mount(one, "p1")
	if _, ok := b.parsed.Get(one); !ok {
		t.Fatal("parsed objects not kept")
	}
	b.Set("a", []byte("changed"))
	again := mount(one, "p2")
	if string(first.Files[0].Contents) != "x" || string(again.Files[0].Contents) != "changed" || again.Versions[0].Version != "1+1" {
		t.Fatalf("a: first %q, again %q (version %s); want x, then changed at 1+1", first.Files[0].Contents, again.Files[0].Contents, again.Versions[0].Version)
	}
	if !strings.Contains(string(again.Files[1].Contents), `"name":"p2"`) {
		t.Fatalf("pod info of the second mount: %s", again.Files[1].Contents)
	}
	other := mount("- objectName: b\n  value: z\n", "p3")
	if len(other.Files) != 1 || other.Files[0].Path != "b" || string(other.Files[0].Contents) != "z" {
		t.Fatalf("another parameter string: %+v", other.Files)
	}
	for range 2 {
		if _, err := b.Mount(t.Context(), &plugin.Request{Attributes: map[string]string{"objects": "- objectName: a\n  value: x\n- objectName: a\n"}}); err == nil {
			t.Fatal("an invalid parameter was accepted")
		}
	}
	big := "- objectName: big\n  value: " + strings.Repeat("v", parsedMaxBytes) + "\n"
	mount(big, "p4")
	if _, ok := b.parsed.Get(big); ok {
		t.Fatalf("a parameter of %d bytes was kept (bound %d)", len(big), parsedMaxBytes)
	}
}
