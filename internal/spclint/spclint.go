// Package spclint checks SecretProviderClass manifests offline, the way the
// driver and our providers will judge them at mount time, so authors find
// mistakes before a pod fails to start.
package spclint

import (
	"bytes"
	"fmt"
	"io"
	"strings"

	"sigs.k8s.io/yaml"

	ssv1 "github.com/sscsi/secrets-store/driver/apis/v1"
	"github.com/sscsi/secrets-store/internal/atomicfs"
)

// Finding is one problem (or note) about one SecretProviderClass.
type Finding struct {
	// Class is namespace/name of the SecretProviderClass ("" if unknown).
	Class string
	// Field is the offending field, e.g. spec.provider.
	Field string
	// Message says what is wrong and how to fix it.
	Message string
	// Warning marks findings that do not fail a mount.
	Warning bool
}

func (f Finding) String() string {
	kind := "error"
	if f.Warning {
		kind = "warning"
	}
	return fmt.Sprintf("%s: %s: %s: %s", kind, f.Class, f.Field, f.Message)
}

// Result is what Lint found in one manifest stream.
type Result struct {
	// Classes lists the SecretProviderClasses seen, as namespace/name.
	Classes []string
	// Files maps each class to the file paths its mount will hold (for
	// providers whose parameters say so).
	Files    map[string][]string
	Findings []Finding
}

// Errors reports whether any finding is an error.
func (r *Result) Errors() bool {
	for _, f := range r.Findings {
		if !f.Warning {
			return true
		}
	}
	return false
}

type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

// Lint reads a multi-document YAML stream and checks every
// SecretProviderClass in it; other kinds are skipped.
func Lint(r io.Reader) (*Result, error) {
	raw, err := io.ReadAll(io.LimitReader(r, 16<<20))
	if err != nil {
		return nil, err
	}
	res := &Result{Files: map[string][]string{}}
	for i, doc := range splitDocs(raw) {
		var tm typeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			res.Findings = append(res.Findings, Finding{Class: fmt.Sprintf("document %d", i+1), Field: "-", Message: "not YAML: " + err.Error()})
			continue
		}
		if tm.Kind != "SecretProviderClass" {
			continue
		}
		switch tm.APIVersion {
		case "secrets-store.csi.x-k8s.io/v1":
		case "secrets-store.csi.x-k8s.io/v1alpha1":
			res.Findings = append(res.Findings, Finding{Class: fmt.Sprintf("document %d", i+1), Field: "apiVersion", Warning: true,
				Message: "v1alpha1 is deprecated; change apiVersion to secrets-store.csi.x-k8s.io/v1 (same schema)"})
		default:
			res.Findings = append(res.Findings, Finding{Class: fmt.Sprintf("document %d", i+1), Field: "apiVersion", Message: fmt.Sprintf("%q is not a SecretProviderClass version; use secrets-store.csi.x-k8s.io/v1", tm.APIVersion)})
			continue
		}
		var spc ssv1.SecretProviderClass
		if err := yaml.UnmarshalStrict(doc, &spc); err != nil {
			res.Findings = append(res.Findings, Finding{Class: fmt.Sprintf("document %d", i+1), Field: "-", Message: "unknown or mistyped field: " + err.Error()})
			continue
		}
		lintClass(res, &spc)
	}
	return res, nil
}

func splitDocs(b []byte) [][]byte {
	var out [][]byte
	for _, d := range bytes.Split(b, []byte("\n---")) {
		if len(bytes.TrimSpace(d)) > 0 {
			out = append(out, d)
		}
	}
	return out
}

func lintClass(res *Result, spc *ssv1.SecretProviderClass) {
	ns := spc.Namespace
	if ns == "" {
		ns = "<namespace of kubectl context>"
	}
	class := ns + "/" + spc.Name
	res.Classes = append(res.Classes, class)
	add := func(field, msg string, warn bool) {
		res.Findings = append(res.Findings, Finding{Class: class, Field: field, Message: msg, Warning: warn})
	}
	if spc.Name == "" {
		add("metadata.name", "is empty", false)
	}
	p := string(spc.Spec.Provider)
	if err := spc.Spec.Provider.Validate(); err != nil {
		add("spec.provider", err.Error(), false)
	}
	var files []string
	if check, ok := checkers[p]; ok {
		var problems []Problem
		files, problems = check(spc.Spec.Parameters)
		for _, pr := range problems {
			field := "spec.parameters"
			if pr.Param != "" {
				field += "." + pr.Param
			}
			add(field, pr.Message, pr.Warning)
		}
	} else if p != "" {
		add("spec.parameters", fmt.Sprintf("provider %q is not one this tool knows; parameters were not checked", p), true)
	}
	res.Files[class] = files
	known := map[string]bool{}
	for _, f := range files {
		known[f] = true
	}
	secretNames := map[string]bool{}
	for i, so := range spc.Spec.SecretObjects {
		field := fmt.Sprintf("spec.secretObjects[%d]", i)
		if so.SecretName == "" {
			add(field+".secretName", "is empty", false)
		} else if secretNames[so.SecretName] {
			add(field+".secretName", fmt.Sprintf("%q is used twice; each entry creates one Secret", so.SecretName), false)
		}
		secretNames[so.SecretName] = true
		if so.Type == "" {
			add(field+".type", "is empty; use Opaque, kubernetes.io/tls, kubernetes.io/dockerconfigjson, ...", false)
		}
		if len(so.Data) == 0 {
			add(field+".data", "is empty: the Secret would have no keys", false)
		}
		for j, d := range so.Data {
			df := fmt.Sprintf("%s.data[%d]", field, j)
			if d.Key == "" {
				add(df+".key", "is empty", false)
			}
			if err := atomicfs.ValidatePath(d.ObjectName); err != nil {
				add(df+".objectName", err.Error(), false)
			} else if len(files) > 0 && !known[d.ObjectName] {
				add(df+".objectName", fmt.Sprintf("%q is not a file this class mounts (files: %s)", d.ObjectName, strings.Join(files, ", ")), false)
			}
		}
	}
}
