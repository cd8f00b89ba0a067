package params

import (
	"errors"
	"path"
	"strings"
	"testing"

	"github.com/sscsi/secrets-store/internal/atomicfs"
)

func TestParsePrecedenceAndDefaults(t *testing.T) {
	def := Defaults{Connection: Connection{Address: "https://flag:8200", Namespace: "team"}, AuthMount: "k8s", Audience: "aud", AnyAddress: true}
	p, err := Parse(map[string]string{ParamRoleName: "r", ParamObjects: "- {objectName: a, secretPath: secret/data/a}"}, def)
	if err != nil {
		t.Fatal(err)
	}
	if p.Connection.Address != "https://flag:8200" || p.Connection.Namespace != "team" || p.AuthMount != "k8s" || p.Audience != "aud" {
		t.Errorf("defaults not applied: %+v", p)
	}
	p, err = Parse(map[string]string{
		ParamRoleName: "r", ParamVaultAddress: "http://spc:8200", ParamVaultNamespace: "/other/", ParamAuthMountPath: "auth/jwt/",
		ParamAudience: "spc-aud", ParamSkipTLSVerify: "true", ParamObjects: "- {objectName: a, secretPath: secret/data/a}",
	}, def)
	if err != nil {
		t.Fatal(err)
	}
	if p.Connection.Address != "http://spc:8200" || p.Connection.Namespace != "other" || p.AuthMount != "jwt" || p.Audience != "spc-aud" || !p.Connection.TLS.SkipVerify {
		t.Errorf("SecretProviderClass did not win: %+v", p)
	}
	p, err = Parse(map[string]string{ParamRoleName: "r", ParamKubernetesMountPath: "kube", ParamObjects: "- {objectName: a, secretPath: a}"}, Defaults{})
	if err != nil || p.AuthMount != "kube" || p.Connection.Address != DefaultAddress || p.Audience != DefaultAudience {
		t.Errorf("vaultKubernetesMountPath: %+v, %v", p, err)
	}
}

func TestParseObjects(t *testing.T) {
	objs, err := ParseObjects(`
- objectName: a
  secretPath: /v1/secret/data/a?version=3
  secretKey: k
  filePermission: 0600
  encoding: BASE64
- objectName: b
  secretPath: pki/issue/web
  method: put
  secretArgs:
    common_name: b.example
    ttl: 1h
- {objectName: c, secretPath: secret/data/c, allKeys: true, filePermission: "0440"}
`)
	if err != nil {
		t.Fatal(err)
	}
	a, b, c := objs[0], objs[1], objs[2]
	if a.Request.Path != "secret/data/a" || a.Request.Query != "version=3" || !a.Request.Pinned() || a.Mode != 0o600 || a.Encoding != EncodingBase64 {
		t.Errorf("a = %+v", a)
	}
	if b.Request.Method != "PUT" || !b.Request.Write() || b.Request.Body != `{"common_name":"b.example","ttl":"1h"}` {
		t.Errorf("b = %+v", b.Request)
	}
	if !c.AllKeys || c.Mode != 0o440 {
		t.Errorf("c = %+v", c)
	}
}

func TestParseErrorsNameFieldNeverValue(t *testing.T) {
	base := map[string]string{ParamRoleName: "r", ParamObjects: "- {objectName: a, secretPath: a}"}
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for a, b := range base {
			m[a] = b
		}
		m[k] = v
		return m
	}
	cases := map[string]map[string]string{
		ParamRoleName:            with(ParamRoleName, ""),
		ParamVaultAddress:        with(ParamVaultAddress, "ftp://SECRETVALUE"),
		ParamAuthMountPath:       with(ParamAuthMountPath, "../SECRETVALUE"),
		ParamKubernetesMountPath: with(ParamKubernetesMountPath, "x"),
		ParamSkipTLSVerify:       with(ParamSkipTLSVerify, "SECRETVALUE"),
		ParamTLSClientCertPath:   with(ParamTLSClientCertPath, "/x"),
		"objects":                with(ParamObjects, "{SECRETVALUE"),
		"secretPath":             with(ParamObjects, "- {objectName: a, secretPath: 'x/../SECRETVALUE'}"),
		"encoding":               with(ParamObjects, "- {objectName: a, secretPath: a, encoding: SECRETVALUE}"),
		"method":                 with(ParamObjects, "- {objectName: a, secretPath: a, method: SECRETVALUE}"),
		"filePermission":         with(ParamObjects, "- {objectName: a, secretPath: a, filePermission: 4095}"),
		"version":                with(ParamObjects, "- {objectName: a, secretPath: 'a?version=SECRETVALUE'}"),
		"allKeys":                with(ParamObjects, "- {objectName: a, secretPath: a, allKeys: true, secretKey: k}"),
		"objectName":             with(ParamObjects, "- {objectName: ../SECRETVALUE, secretPath: a}"),
	}
	cases[ParamKubernetesMountPath][ParamAuthMountPath] = "y"
	cases[ParamTLSClientCertPath][ParamTLSClientKeyPath] = ""
	for field, attrs := range cases {
		_, err := Parse(attrs, Defaults{})
		var pe *Error
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: err = %v", field, err)
		}
		if err != nil && strings.Contains(err.Error(), "SECRETVALUE") {
			t.Errorf("%s: error quotes the value: %v", field, err)
		}
	}
}

func TestParseBounds(t *testing.T) {
	big := strings.Repeat("- {objectName: a, secretPath: a}\n", MaxObjectsBytes/30)
	if _, err := ParseObjects(big); err == nil || !strings.Contains(err.Error(), "bytes") {
		t.Errorf("oversized objects: %v", err)
	}
	var b strings.Builder
	for i := range MaxObjects + 1 {
		b.WriteString("- {objectName: o" + strings.Repeat("x", i%3) + string(rune('a'+i%26)) + ", secretPath: a}\n")
	}
	if _, err := ParseObjects(b.String()); err == nil {
		t.Error("more than MaxObjects accepted")
	}
	// Alias expansion ("billion laughs") is refused by the decoder.
	bomb := "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: [*f,*f,*f,*f,*f,*f,*f,*f,*f]"
	if _, err := ParseObjects("- objectName: a\n  secretPath: a\n  secretArgs:\n    " + strings.ReplaceAll(bomb, "\n", "\n    ")); err == nil {
		t.Error("alias bomb accepted")
	}
}

// FuzzParseObjects: any input either fails with a *Error or
// yields unique, safe object names and sane requests.
func FuzzParseObjects(f *testing.F) {
	for _, s := range []string{
		"- {objectName: a, secretPath: secret/data/a, secretKey: k}",
		"- {objectName: a, secretPath: 'secret/data/a?version=2', encoding: hex, filePermission: 0600}",
		"- {objectName: a, secretPath: pki/issue/x, method: POST, secretArgs: {common_name: x, alt: [1, 2]}}",
		"- {objectName: d, secretPath: s, allKeys: true}\n- {objectName: d/x, secretPath: s}",
		"- &a {objectName: x, secretPath: y}\n- *a",
		"[{objectName: '..', secretPath: '/'}]",
		"- {objectName: a, secretPath: 'a?b=%zz'}",
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
		seen := map[string]bool{}
		for _, o := range objs {
			if err := atomicfs.ValidatePath(o.Name); err != nil {
				t.Fatalf("unsafe object name %q accepted", o.Name)
			}
			if seen[o.Name] {
				t.Fatalf("duplicate object name %q accepted", o.Name)
			}
			seen[o.Name] = true
			if o.Mode&^0o777 != 0 {
				t.Fatalf("mode %o accepted", o.Mode)
			}
			r := o.Request
			if r.Method != "GET" && r.Method != "PUT" && r.Method != "POST" {
				t.Fatalf("method %q accepted", r.Method)
			}
			for _, seg := range strings.Split(r.Path, "/") {
				if seg == ".." || seg == "." {
					t.Fatalf("path %q accepted", r.Path)
				}
			}
			if len(r.Body) > maxArgsBytes {
				t.Fatalf("body of %d bytes accepted", len(r.Body))
			}
		}
	})
}

// FuzzParse: the whole parameter set.
func FuzzParse(f *testing.F) {
	f.Add("r", "https://v:8200", "ns", "kubernetes", "", "vault", "false", "- {objectName: a, secretPath: a}")
	f.Add("r", "http://[::1]:1", "", "", "jwt", "", "1", "- {objectName: a, secretPath: a}")
	f.Fuzz(func(t *testing.T, role, addr, ns, kmount, amount, aud, skip, objects string) {
		p, err := Parse(map[string]string{
			ParamRoleName: role, ParamVaultAddress: addr, ParamVaultNamespace: ns, ParamKubernetesMountPath: kmount,
			ParamAuthMountPath: amount, ParamAudience: aud, ParamSkipTLSVerify: skip, ParamObjects: objects,
		}, Defaults{AnyAddress: true})
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) || pe.Param == "" {
				t.Fatalf("error is not a *params.Error naming a parameter: %v", err)
			}
			return
		}
		// Without AnyAddress, only the provider's address is accepted.
		if q, err := Parse(map[string]string{ParamRoleName: role, ParamVaultAddress: addr, ParamObjects: objects}, Defaults{}); err == nil &&
			canonicalAddress(q.Connection.Address) != canonicalAddress(DefaultAddress) {
			t.Fatalf("vaultAddress %q accepted though only %s is allowed", addr, DefaultAddress)
		}
		if p.Role == "" || p.AuthMount == "" || strings.Contains(p.AuthMount, "..") || strings.Contains(p.Connection.Namespace, "..") {
			t.Fatalf("accepted %+v", p)
		}
	})
}

func TestErrorParam(t *testing.T) {
	for attrs, want := range map[[2]string]string{
		{ParamRoleName, ""}:            ParamRoleName,
		{ParamVaultAddress, "ftp://x"}: ParamVaultAddress,
		{ParamSkipTLSVerify, "maybe"}:  ParamSkipTLSVerify,
		{ParamObjects, "- {x: 1}"}:     ParamObjects,
	} {
		a := map[string]string{ParamRoleName: "r", ParamObjects: "- {objectName: a, secretPath: a}"}
		a[attrs[0]] = attrs[1]
		_, err := Parse(a, Defaults{})
		var pe *Error
		if !errors.As(err, &pe) || pe.Param != want {
			t.Errorf("%v: %v (param %v), want param %s", attrs, err, pe, want)
		}
	}
}

func TestTLSPathsFromSPCConfinedToAllowedDirectory(t *testing.T) {
	def := Defaults{TLSFileDir: "/vault/tls", Connection: Connection{TLS: TLS{CACert: File{Name: "/etc/operator/ca.pem"}}}}
	base := func(kv ...string) map[string]string {
		a := map[string]string{ParamRoleName: "r", ParamObjects: "- {objectName: a, secretPath: a}"}
		for i := 0; i+1 < len(kv); i += 2 {
			a[kv[i]] = kv[i+1]
		}
		return a
	}
	// Operator flags are not restricted and stay when the SPC sets none.
	p, err := Parse(base(), def)
	if err != nil || p.Connection.TLS.CACert != (File{Name: "/etc/operator/ca.pem"}) || p.Connection.TLS.CACert.Confined() {
		t.Fatalf("operator CA: %+v, %v", p, err)
	}
	p, err = Parse(base(ParamCACertPath, "/vault/tls/ca.crt", ParamTLSClientCertPath, "/vault/tls/./c/../tls.crt", ParamTLSClientKeyPath, "/vault/tls/tls.key", ParamCADirectory, "/vault/tls/"), def)
	if err != nil {
		t.Fatal(err)
	}
	tl := p.Connection.TLS
	if tl.CACert != (File{Dir: "/vault/tls", Name: "ca.crt"}) || tl.ClientCert != (File{Dir: "/vault/tls", Name: "tls.crt"}) ||
		tl.ClientKey != (File{Dir: "/vault/tls", Name: "tls.key"}) || tl.CADirectory != (File{Dir: "/vault/tls", Name: "."}) {
		t.Errorf("confined files = %+v", tl)
	}
	for name, c := range map[string]struct {
		attrs map[string]string
		def   Defaults
		param string
	}{
		"outside":           {base(ParamCACertPath, "/etc/kubernetes/pki/SECRETPATH.key"), def, ParamCACertPath},
		"dotdot":            {base(ParamCADirectory, "/vault/tls/../../etc/SECRETPATH"), def, ParamCADirectory},
		"prefix not dir":    {base(ParamCACertPath, "/vault/tlsSECRETPATH/ca.crt"), def, ParamCACertPath},
		"relative":          {base(ParamCACertPath, "SECRETPATH/ca.crt"), def, ParamCACertPath},
		"client key":        {base(ParamTLSClientCertPath, "/vault/tls/c", ParamTLSClientKeyPath, "/var/lib/kubelet/pki/SECRETPATH.key"), def, ParamTLSClientKeyPath},
		"none allowed":      {base(ParamCACertPath, "/vault/tls/SECRETPATH"), Defaults{}, ParamCACertPath},
		"operator dir only": {base(ParamCADirectory, "/etc/operator/SECRETPATH"), def, ParamCADirectory},
	} {
		_, err := Parse(c.attrs, c.def)
		var pe *Error
		if !errors.As(err, &pe) || pe.Param != c.param {
			t.Errorf("%s: err = %v, want an *Error for %s", name, err, c.param)
			continue
		}
		if strings.Contains(err.Error(), "SECRETPATH") {
			t.Errorf("%s: error quotes the path: %v", name, err)
		}
	}
}

// FuzzTLSPathConfined: whatever path a SecretProviderClass gives, an
// accepted TLS file is a clean relative name inside the allowed directory.
func FuzzTLSPathConfined(f *testing.F) {
	for _, s := range []string{"/vault/tls/ca.crt", "/vault/tls/../x", "/vault/tls", "/vault/tlsx", "ca.crt", "/vault/tls//a/./b", "/vault/tls/..a"} {
		f.Add(s, "/vault/tls")
	}
	f.Add("/x", "/")
	f.Fuzz(func(t *testing.T, v, dir string) {
		if !path.IsAbs(dir) || strings.ContainsAny(dir, "\x00\n\r") {
			return // operator flag; validated by the operator
		}
		p, err := Parse(map[string]string{ParamRoleName: "r", ParamObjects: "- {objectName: a, secretPath: a}", ParamCACertPath: v}, Defaults{TLSFileDir: dir})
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) || pe.Param != ParamCACertPath {
				t.Fatalf("error does not name %s: %v", ParamCACertPath, err)
			}
			return
		}
		got := p.Connection.TLS.CACert
		if got.IsZero() {
			if strings.TrimSpace(v) != "" {
				t.Fatalf("path %q accepted but not kept", v)
			}
			return
		}
		if got.Dir != path.Clean(dir) || path.IsAbs(got.Name) || got.Name != path.Clean(got.Name) || got.Name == ".." || strings.HasPrefix(got.Name, "../") {
			t.Fatalf("path %q under %q accepted as %+v", v, dir, got)
		}
		if j := path.Join(got.Dir, got.Name); j != got.Dir && !strings.HasPrefix(j, strings.TrimSuffix(got.Dir, "/")+"/") {
			t.Fatalf("path %q resolves to %q, outside %q", v, j, got.Dir)
		}
	})
}

// TestAllowedAddresses: unless the operator allows any address, a
// SecretProviderClass's vaultAddress must be the provider's -vault-addr
// or one of -allowed-vault-addrs (the pod's token is sent there).
func TestAllowedAddresses(t *testing.T) {
	def := Defaults{Connection: Connection{Address: "https://vault.vault.svc:8200"}, AllowedAddresses: []string{"https://vault-dr.example", "http://[::1]:8200/"}}
	attrs := func(addr string) map[string]string {
		return map[string]string{ParamRoleName: "r", ParamVaultAddress: addr, ParamObjects: "- {objectName: a, secretPath: a}"}
	}
	for _, ok := range []string{
		"", "https://vault.vault.svc:8200", "HTTPS://Vault.Vault.SVC:8200/", "https://vault-dr.example:443", "https://VAULT-DR.example/", "http://[::1]:8200",
	} {
		if _, err := Parse(attrs(ok), def); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{
		"https://attacker.example:8200", "http://vault.vault.svc:8200", "https://vault.vault.svc:8201", "https://vault.vault.svc",
		"https://vault-dr.example:8200", "http://vault-dr.example", "https://vault.vault.svc.attacker.example:8200", "http://[::1]:8201",
	} {
		_, err := Parse(attrs(bad), def)
		var pe *Error
		if !errors.As(err, &pe) || pe.Param != ParamVaultAddress || !strings.Contains(err.Error(), AllowedAddressesFlag) {
			t.Errorf("%q: err = %v, want an error naming %s and %s", bad, err, ParamVaultAddress, AllowedAddressesFlag)
		}
		if err != nil && strings.Contains(err.Error(), strings.TrimPrefix(strings.TrimPrefix(bad, "https://"), "http://")) {
			t.Errorf("%q: error quotes the address: %v", bad, err)
		}
	}
	// The zero Defaults allow only DefaultAddress; AnyAddress allows all.
	if _, err := Parse(attrs("https://attacker.example"), Defaults{}); err == nil {
		t.Error("zero Defaults accepted another address")
	}
	if _, err := Parse(attrs(DefaultAddress), Defaults{}); err != nil {
		t.Errorf("zero Defaults refused DefaultAddress: %v", err)
	}
	if _, err := Parse(attrs("https://attacker.example"), Defaults{AnyAddress: true}); err != nil {
		t.Errorf("AnyAddress: %v", err)
	}
}

func TestParseAllowedAddresses(t *testing.T) {
	for v, want := range map[string]struct {
		any   bool
		addrs []string
	}{
		"*":                              {any: true},
		" * ":                            {any: true},
		"":                               {},
		"https://a:8200, http://b:8200,": {addrs: []string{"https://a:8200", "http://b:8200"}},
	} {
		anyAddr, addrs, err := ParseAllowedAddresses(v)
		if err != nil || anyAddr != want.any || strings.Join(addrs, " ") != strings.Join(want.addrs, " ") {
			t.Errorf("%q: %v %v %v", v, anyAddr, addrs, err)
		}
	}
	for _, bad := range []string{"*,https://a", "ftp://a", "https://a/path", "https://user:pw@a", "a:8200"} {
		if _, _, err := ParseAllowedAddresses(bad); err == nil || !strings.Contains(err.Error(), AllowedAddressesFlag) || strings.Contains(err.Error(), "pw") {
			t.Errorf("%q: err = %v", bad, err)
		}
	}
}
