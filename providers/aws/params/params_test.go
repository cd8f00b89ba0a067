package params

import (
	"errors"
	"strings"
	"testing"
)

func TestParseParams(t *testing.T) {
	ok := func(objects string, extra ...string) map[string]string {
		m := map[string]string{"objects": objects, "region": "us-east-1"}
		for i := 0; i+1 < len(extra); i += 2 {
			m[extra[i]] = extra[i+1]
		}
		return m
	}
	tests := []struct {
		name  string
		attrs map[string]string
		// wantErr lists substrings of the error; empty means success.
		wantErr []string
		check   func(t *testing.T, p *Params)
	}{
		{name: "minimal secret", attrs: ok("- objectName: app/db\n  objectType: secretsmanager"), check: func(t *testing.T, p *Params) {
			if o := p.Objects[0]; o.FileName != "app_db" || o.Type != TypeSecretsManager {
				t.Errorf("object = %+v", o)
			}
		}},
		{name: "path translation off", attrs: ok("- {objectName: app/db, objectType: ssmparameter}", "pathTranslation", "False"), check: func(t *testing.T, p *Params) {
			if p.Objects[0].FileName != "app/db" {
				t.Errorf("file = %q", p.Objects[0].FileName)
			}
		}},
		{name: "path translation char", attrs: ok("- {objectName: /app/db, objectType: ssmparameter}", "pathTranslation", "-"), check: func(t *testing.T, p *Params) {
			if p.Objects[0].FileName != "-app-db" {
				t.Errorf("file = %q", p.Objects[0].FileName)
			}
		}},
		{name: "ARN implies type", attrs: ok("- objectName: arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf\n  objectAlias: db\n- objectName: arn:aws:ssm:us-east-1:123456789012:parameter/app/x\n  objectAlias: x"), check: func(t *testing.T, p *Params) {
			if p.Objects[0].Type != TypeSecretsManager || p.Objects[1].Type != TypeSSMParameter {
				t.Errorf("types = %s %s", p.Objects[0].Type, p.Objects[1].Type)
			}
		}},
		{name: "numeric version", attrs: ok("- {objectName: p, objectType: ssmparameter, objectVersion: 3, filePermission: 0600}"), check: func(t *testing.T, p *Params) {
			if p.Objects[0].ObjectVersion != "3" || p.Objects[0].Mode != 0o600 {
				t.Errorf("object = %+v", p.Objects[0])
			}
		}},
		{name: "pod identity", attrs: ok("- {objectName: a, objectType: secretsmanager}", "usePodIdentity", "true", "preferredAddressType", "IPv6"), check: func(t *testing.T, p *Params) {
			if !p.UsePodIdentity || p.PreferredAddressType != AddressIPv6 {
				t.Errorf("params = %+v", p)
			}
		}},
		{name: "failover object", attrs: ok("- objectName: a\n  objectType: secretsmanager\n  objectAlias: a\n  failoverObject: {objectName: b}", "failoverRegion", "us-west-2"), check: func(t *testing.T, p *Params) {
			if r := p.Objects[0].FailoverRef(); r.Name != "b" {
				t.Errorf("failover ref = %+v", r)
			}
		}},
		{name: "empty objects", attrs: ok(""), wantErr: []string{"objects is empty"}},
		{name: "not a list", attrs: ok("objectName: a"), wantErr: []string{"not a YAML list"}},
		{name: "no region", attrs: map[string]string{"objects": "- {objectName: a, objectType: secretsmanager}"}, wantErr: []string{"region is empty"}},
		{name: "bad region", attrs: ok("- {objectName: a, objectType: secretsmanager}", "region", "evil.example.com/"), wantErr: []string{"region"}},
		{name: "same failover region", attrs: ok("- {objectName: a, objectType: secretsmanager}", "failoverRegion", "us-east-1"), wantErr: []string{"failoverRegion", "same"}},
		{name: "missing type", attrs: ok("- {objectName: a}"), wantErr: []string{"objects[0] (a)", "objectType"}},
		{name: "unknown type", attrs: ok("- {objectName: a, objectType: s3}"), wantErr: []string{"objects[0] (a)", "objectType"}},
		{name: "missing name", attrs: ok("- {objectType: ssmparameter}"), wantErr: []string{"objects[0]", "objectName"}},
		{name: "ARN type mismatch", attrs: ok("- {objectName: 'arn:aws:secretsmanager:us-east-1:1:secret:x', objectType: ssmparameter}"), wantErr: []string{"objectType", "ARN"}},
		{name: "ARN region mismatch", attrs: ok("- {objectName: 'arn:aws:secretsmanager:eu-west-1:1:secret:x'}"), wantErr: []string{"objects[0]", "eu-west-1", "region"}},
		{name: "ARN other service", attrs: ok("- {objectName: 'arn:aws:s3:::bucket'}"), wantErr: []string{"objectName", "s3"}},
		{name: "SSM version and label", attrs: ok("- {objectName: p, objectType: ssmparameter, objectVersion: '1', objectVersionLabel: l}"), wantErr: []string{"objects[0] (p)", "objectVersionLabel"}},
		{name: "SSM bad version", attrs: ok("- {objectName: p, objectType: ssmparameter, objectVersion: abc}"), wantErr: []string{"objectVersion"}},
		{name: "bad permission", attrs: ok("- {objectName: p, objectType: ssmparameter, filePermission: '0999'}"), wantErr: []string{"objects[0] (p)", "filePermission"}},
		{name: "dotdot alias", attrs: ok("- {objectName: p, objectType: ssmparameter, objectAlias: ../../etc/passwd}"), wantErr: []string{"objectAlias", ".."}},
		{name: "dotdot name untranslated", attrs: ok("- {objectName: ../x, objectType: ssmparameter}", "pathTranslation", "False"), wantErr: []string{"objectName", ".."}},
		{name: "absolute alias", attrs: ok("- {objectName: p, objectType: ssmparameter, objectAlias: /etc/x}"), wantErr: []string{"objectAlias", "absolute"}},
		{name: "duplicate file", attrs: ok("- {objectName: a, objectType: ssmparameter}\n- {objectName: a, objectType: secretsmanager}"), wantErr: []string{"objects[1] (a)", "already used by objects[0]"}},
		{name: "duplicate jmes alias", attrs: ok("- {objectName: a, objectType: secretsmanager, jmesPath: [{path: x, objectAlias: a}]}"), wantErr: []string{"jmesPath[0]", "already used"}},
		{name: "file is a directory", attrs: ok("- {objectName: a, objectType: secretsmanager}\n- {objectName: b, objectType: secretsmanager, objectAlias: a/b}"), wantErr: []string{"directory"}},
		{name: "jmes without alias", attrs: ok("- {objectName: a, objectType: secretsmanager, jmesPath: [{path: x}]}"), wantErr: []string{"jmesPath[0].objectAlias"}},
		{name: "jmes bad expression", attrs: ok("- {objectName: a, objectType: secretsmanager, jmesPath: [{path: 'a[', objectAlias: x}]}"), wantErr: []string{"jmesPath[0].path"}},
		{name: "failover without region", attrs: ok("- {objectName: a, objectType: secretsmanager, objectAlias: a, failoverObject: {objectName: b}}"), wantErr: []string{"failoverRegion is empty"}},
		{name: "failover without alias", attrs: ok("- {objectName: a, objectType: secretsmanager, failoverObject: {objectName: b}}", "failoverRegion", "us-west-2"), wantErr: []string{"objectAlias", "failoverObject"}},
		{name: "failover version mismatch", attrs: ok("- {objectName: a, objectType: secretsmanager, objectAlias: a, objectVersion: v1, failoverObject: {objectName: b, objectVersion: v2}}", "failoverRegion", "us-west-2"), wantErr: []string{"failoverObject.objectVersion"}},
		{name: "failover ARN region", attrs: ok("- {objectName: a, objectType: secretsmanager, objectAlias: a, failoverObject: {objectName: 'arn:aws:secretsmanager:eu-west-1:1:secret:b'}}", "failoverRegion", "us-west-2"), wantErr: []string{"failoverObject.objectName", "eu-west-1"}},
		{name: "bad pod identity flag", attrs: ok("- {objectName: a, objectType: secretsmanager}", "usePodIdentity", "yes please"), wantErr: []string{"usePodIdentity"}},
		{name: "bad address type", attrs: ok("- {objectName: a, objectType: secretsmanager}", "preferredAddressType", "ipx"), wantErr: []string{"preferredAddressType"}},
		{name: "bad path translation", attrs: ok("- {objectName: a, objectType: secretsmanager}", "pathTranslation", "ab"), wantErr: []string{"pathTranslation"}},
		{name: "bad template", attrs: ok("- {objectName: a, objectType: secretsmanager, objectTemplate: '{{ .x '}"), wantErr: []string{"objectTemplate"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParseParams(tc.attrs, "")
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if tc.check != nil {
					tc.check(t, p)
				}
				return
			}
			if !isParamError(err) {
				t.Fatalf("error = %v, want a *params.Error", err)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestYAMLErrorsDoNotQuoteInput(t *testing.T) {
	_, err := ParseObjects("- objectName: [hunter2-secret\n", "")
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error = %v; must not quote the input", err)
	}
}

func TestTooManyObjects(t *testing.T) {
	_, err := ParseObjects(strings.Repeat("- {objectName: a, objectType: secretsmanager}\n", MaxObjects+1), "")
	if !isParamError(err) || !strings.Contains(err.Error(), "at most") {
		t.Errorf("error = %v", err)
	}
}

// TestErrorNamesParam: every error says which spec.parameters key to fix.
func TestErrorNamesParam(t *testing.T) {
	objs := "- {objectName: a, objectType: secretsmanager}"
	for want, attrs := range map[string]map[string]string{
		ParamRegion:               {ParamObjects: objs, ParamRegion: "us east"},
		ParamFailoverRegion:       {ParamObjects: objs, ParamRegion: "us-east-1", ParamFailoverRegion: "us-east-1"},
		ParamUsePodIdentity:       {ParamObjects: objs, ParamRegion: "us-east-1", ParamUsePodIdentity: "maybe"},
		ParamPreferredAddressType: {ParamObjects: objs, ParamRegion: "us-east-1", ParamPreferredAddressType: "ipx"},
		ParamPathTranslation:      {ParamObjects: objs, ParamRegion: "us-east-1", ParamPathTranslation: "ab"},
		ParamObjects:              {ParamObjects: "- {objectName: a}", ParamRegion: "us-east-1"},
	} {
		_, err := ParseParams(attrs, "")
		var pe *Error
		if !errors.As(err, &pe) || pe.Param != want {
			t.Errorf("%s: error = %#v, want a *params.Error for %s", want, err, want)
		}
	}
}
