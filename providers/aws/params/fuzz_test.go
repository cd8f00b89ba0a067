package params

import (
	"errors"
	"testing"

	"github.com/sscsi/secrets-store/internal/atomicfs"
)

func isParamError(err error) bool {
	var pe *Error
	return errors.As(err, &pe) && pe.Param != ""
}

// FuzzParseObjects: any objects/pathTranslation input either fails with
// a *params.Error or yields objects whose file names are safe and
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
			if !isParamError(err) {
				t.Fatalf("error is not a *params.Error: %v", err)
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
