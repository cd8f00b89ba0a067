package params

import (
	"errors"
	"path"
	"strings"
	"testing"

	"github.com/sscsi/secrets-store/internal/atomicfs"
)

func TestParseObjects(t *testing.T) {
	objs, err := ParseObjects("- {objectName: a, value: v, filePermission: '0640'}\n- {objectName: b, path: d/b, source: podInfo}")
	if err != nil {
		t.Fatal(err)
	}
	if objs[0].File() != "a" || objs[0].Mode != 0o640 || objs[1].File() != "d/b" {
		t.Fatalf("objects = %+v", objs)
	}
	for _, bad := range []string{
		"",
		"not: a list",
		"- {value: v}",
		"- {objectName: a}\n- {objectName: a}",
		"- {objectName: a, source: nodePublishSecret}",
		"- {objectName: a, source: other}",
		"- {objectName: a, filePermission: '999'}",
		"- {objectName: a, path: ../x}",
		"- {objectName: /abs}",
	} {
		_, err := ParseObjects(bad)
		var pe *Error
		if !errors.As(err, &pe) || pe.Param != ParamObjects {
			t.Errorf("ParseObjects(%q) = %v, want a *params.Error for objects", bad, err)
		}
	}
}

func TestParseObjectsRefusesCollidingFiles(t *testing.T) {
	for _, bad := range []string{
		"- {objectName: a, path: b}\n- {objectName: b}",
		"- {objectName: a}\n- {objectName: b, path: a/c}",
		"- {objectName: x, path: d/e}\n- {objectName: d}",
	} {
		_, err := ParseObjects(bad)
		var pe *Error
		if !errors.As(err, &pe) || pe.Param != ParamObjects || !strings.Contains(err.Error(), "objects[1]") {
			t.Errorf("ParseObjects(%q) = %v, want a *params.Error naming objects[1]", bad, err)
		}
	}
}

// FuzzParseObjects: any input either fails with a *params.Error or yields
// objects with distinct names and distinct, safe files none of which is
// another's directory (the driver refuses such a payload, as the
// provider's fault).
func FuzzParseObjects(f *testing.F) {
	for _, s := range []string{
		"- {objectName: a, value: v, filePermission: '0640'}\n- {objectName: b, path: d/b, source: podInfo}",
		"- {objectName: a, path: b}\n- {objectName: b}",
		"- {objectName: a, source: nodePublishSecret, key: k, delay: 1s}",
		"- &a {objectName: x}\n- *a",
		"[{objectName: '..'}]",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		objs, err := ParseObjects(s)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) || pe.Param == "" {
				t.Fatalf("error is not a *params.Error naming a parameter: %v", err)
			}
			return
		}
		names, files := map[string]bool{}, map[string]bool{}
		for _, o := range objs {
			if names[o.ObjectName] {
				t.Fatalf("duplicate objectName %q accepted", o.ObjectName)
			}
			names[o.ObjectName] = true
			if err := atomicfs.ValidatePath(o.File()); err != nil {
				t.Fatalf("unsafe file %q accepted", o.File())
			}
			files[o.File()] = true
			if o.Mode&^0o777 != 0 || o.Wait < 0 || o.Wait > MaxDelay {
				t.Fatalf("mode %o / delay %s accepted", o.Mode, o.Wait)
			}
		}
		if len(files) != len(objs) {
			t.Fatalf("two objects write one file: %+v", objs)
		}
		for f := range files {
			for d := path.Dir(f); d != "."; d = path.Dir(d) {
				if files[d] {
					t.Fatalf("file %q is also the directory of %q", d, f)
				}
			}
		}
	})
}
