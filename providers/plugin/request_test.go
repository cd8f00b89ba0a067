package plugin

import (
	"errors"
	"strings"
	"testing"

	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"
)

func TestDecodeRequest(t *testing.T) {
	in := &v1alpha1.MountRequest{
		Attributes: `{"objects":"x","csi.storage.k8s.io/pod.name":"p","csi.storage.k8s.io/pod.namespace":"ns",` +
			`"csi.storage.k8s.io/serviceAccount.name":"sa","csi.storage.k8s.io/serviceAccount.tokens":"{\"a\":{\"token\":\"attr-tok\"}}"}`,
		Secrets:              `{"k":"v","csi.storage.k8s.io/serviceAccount.tokens":"{\"a\":{\"token\":\"sec-tok\"}}"}`,
		TargetPath:           "/t",
		Permission:           "420",
		CurrentObjectVersion: []*v1alpha1.ObjectVersion{{Id: "o", Version: "3"}},
	}
	r, err := DecodeRequest(in)
	if err != nil {
		t.Fatal(err)
	}
	if r.Pod != (Pod{Name: "p", Namespace: "ns", ServiceAccount: "sa"}) || r.Permission != 0o644 || r.CurrentVersions["o"] != "3" {
		t.Errorf("decoded %+v", r)
	}
	if tok, err := r.Token("a"); err != nil || tok.Token != "sec-tok" {
		t.Errorf("token = %v, %v; the secrets map wins", tok, err)
	}
	if _, ok := r.Attributes[AttrTokens]; ok {
		t.Error("token left in attributes")
	}
	if _, ok := r.Secrets[AttrTokens]; ok {
		t.Error("token left in secrets")
	}
	if _, err := r.Token("other"); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("missing audience: %v", err)
	}
	for _, s := range []string{"null", "{}", ""} {
		if _, err := DecodeRequest(&v1alpha1.MountRequest{Attributes: "{}", Secrets: s}); err != nil {
			t.Errorf("secrets %q: %v", s, err)
		}
	}
}

func TestDecodeRequestErrorsNameTheFieldNotTheValue(t *testing.T) {
	cases := map[string]*v1alpha1.MountRequest{
		"attributes":            {Attributes: `{"a": "SECRETVALUE"`},
		"secrets":               {Attributes: "{}", Secrets: `["SECRETVALUE"]`},
		"permission":            {Attributes: "{}", Permission: "4095"},
		"serviceAccount.tokens": {Attributes: `{"csi.storage.k8s.io/serviceAccount.tokens":"SECRETVALUE"}`},
	}
	for field, in := range cases {
		_, err := DecodeRequest(in)
		if !errors.Is(err, ErrInvalidParameters) || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: err = %v", field, err)
		}
		if err != nil && strings.Contains(err.Error(), "SECRETVALUE") {
			t.Errorf("%s: error quotes the value: %v", field, err)
		}
	}
}

func FuzzDecodeRequest(f *testing.F) {
	f.Add(`{"a":"b"}`, `null`, "420")
	f.Add(`{"csi.storage.k8s.io/serviceAccount.tokens":"{\"x\":{\"token\":\"t\"}}"}`, `{}`, `"420"`)
	f.Add(`[]`, `{"a":1}`, "-1")
	f.Fuzz(func(t *testing.T, attrs, secrets, perm string) {
		r, err := DecodeRequest(&v1alpha1.MountRequest{Attributes: attrs, Secrets: secrets, Permission: perm})
		if err != nil {
			if !errors.Is(err, ErrInvalidParameters) {
				t.Fatalf("error not classified: %v", err)
			}
			return
		}
		if r.Permission&^0o777 != 0 {
			t.Fatalf("permission %o accepted", r.Permission)
		}
		if _, ok := r.Attributes[AttrTokens]; ok {
			t.Fatal("token key left in attributes")
		}
	})
}
