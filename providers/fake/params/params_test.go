package params

import (
	"errors"
	"testing"
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
