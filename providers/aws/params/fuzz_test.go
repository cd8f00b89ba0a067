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

// FuzzParseParams: the whole parameter set of a SecretProviderClass.
// Any input either fails with a *params.Error naming a parameter or
// yields valid regions, a known address type and objects whose regions
// are consistent.
func FuzzParseParams(f *testing.F) {
	f.Add("- {objectName: a, objectType: secretsmanager}", "us-east-1", "", "", "", "", "")
	f.Add("- {objectName: 'arn:aws:secretsmanager:eu-west-1:1:secret:x-AbCdEf'}", "eu-west-1", "eu-central-1", "False", "true", "ipv6", "")
	f.Add("- {objectName: /p, objectType: ssmparameter, failoverObject: {objectName: /q}}", "", "us-west-2", "_", "1", "IPv4", "us-east-1")
	f.Add("", "us east 1", "us-east-1", "bad", "maybe", "ipv5", "")
	f.Fuzz(func(t *testing.T, objects, region, failover, pathTranslation, podIdentity, addressType, defaultRegion string) {
		p, err := ParseParams(map[string]string{
			ParamObjects: objects, ParamRegion: region, ParamFailoverRegion: failover, ParamPathTranslation: pathTranslation,
			ParamUsePodIdentity: podIdentity, ParamPreferredAddressType: addressType,
		}, defaultRegion)
		if err != nil {
			if !isParamError(err) {
				t.Fatalf("error is not a *params.Error naming a parameter: %v", err)
			}
			return
		}
		if !ValidRegion(p.Region) || (p.FailoverRegion != "" && (!ValidRegion(p.FailoverRegion) || p.FailoverRegion == p.Region)) {
			t.Fatalf("accepted regions %q / %q", p.Region, p.FailoverRegion)
		}
		switch p.PreferredAddressType {
		case AddressAuto, AddressIPv4, AddressIPv6:
		default:
			t.Fatalf("accepted address type %q", p.PreferredAddressType)
		}
		if len(p.Objects) == 0 {
			t.Fatal("accepted no objects")
		}
	})
}
