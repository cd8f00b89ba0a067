package secretsync

import (
	"errors"
	"os"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	ssv1 "github.com/sscsi/secrets-store/driver/apis/v1"
	"github.com/sscsi/secrets-store/driver/internal/kubeclient"
	"github.com/sscsi/secrets-store/internal/atomicfs"
	"github.com/sscsi/secrets-store/internal/secretdata"
	"github.com/sscsi/secrets-store/test/tlschain"
)

// mountFiles writes files in the kubelet ..data layout, as the driver does,
// and returns the volume directory.
func mountFiles(t testing.TB, kv map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	var files []atomicfs.File
	for k, v := range kv {
		files = append(files, atomicfs.File{Path: k, Mode: 0o644, Contents: v})
	}
	if _, err := atomicfs.Write(dir, files, atomicfs.Limits{}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func open(t *testing.T, dir string) *volumeFiles {
	t.Helper()
	v, err := openVolume(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

func TestDesiredSecret(t *testing.T) {
	c := tlschain.New(t, true)
	bundle := append(tlschain.CertPEM(c.Leaf, c.Inter), tlschain.KeyPEM(t, c.LeafKey, "pkcs1")...)
	dir := mountFiles(t, map[string][]byte{
		"db/password": []byte("hunter2"),
		"user":        []byte("admin"),
		"cert.pem":    bundle,
		"cert.pfx":    c.PFXBase64(t),
		"docker.json": []byte(`{"auths":{"r.example":{"auth":"eDp5"}}}`),
		"broken.json": []byte(`{"auths":`),
	})
	files := open(t, dir)
	ref := entryRef{spcNamespace: "ns", spcName: "spc", index: 0, secretName: "s"}

	t.Run("opaque with nested path, labels and annotations", func(t *testing.T) {
		so := ssv1.SecretObject{SecretName: "s", Type: "Opaque", Labels: map[string]string{"app": "x"}, Annotations: map[string]string{"a": "b"},
			Data: []ssv1.SecretObjectData{{ObjectName: "db/password", Key: "password"}, {ObjectName: "user", Key: "username"}}}
		got, err := desiredSecret(ref, "ns", so, files)
		if err != nil {
			t.Fatal(err)
		}
		want := &kubeclient.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "ns", Labels: map[string]string{"app": "x", secretdata.ManagedLabel: "true"}, Annotations: map[string]string{"a": "b", secretdata.CreatedByAnnotation: "SecretProviderClass/spc"}},
			Type:       string(secretdata.TypeOpaque),
			Data:       map[string][]byte{"password": []byte("hunter2"), "username": []byte("admin")},
		}
		if !equality.Semantic.DeepEqual(got, want) {
			t.Errorf("got %+v\nwant %+v", got, want)
		}
	})
	for _, obj := range []string{"cert.pem", "cert.pfx"} {
		t.Run("tls from "+obj, func(t *testing.T) {
			so := ssv1.SecretObject{SecretName: "s", Type: "kubernetes.io/tls",
				Data: []ssv1.SecretObjectData{{ObjectName: obj, Key: "tls.key"}, {ObjectName: obj, Key: "tls.crt"}, {ObjectName: "user", Key: "extra"}}}
			got, err := desiredSecret(ref, "ns", so, files)
			if err != nil {
				t.Fatal(err)
			}
			if string(got.Data["tls.crt"]) != string(tlschain.CertPEM(c.Leaf, c.Inter)) {
				t.Errorf("tls.crt is not the chain in order")
			}
			if err := secretdata.CheckKeyPair(got.Data["tls.crt"], got.Data["tls.key"]); err != nil {
				t.Error(err)
			}
			if string(got.Data["extra"]) != "admin" {
				t.Errorf("extra key not copied as is")
			}
		})
	}
	t.Run("dockerconfigjson", func(t *testing.T) {
		so := ssv1.SecretObject{SecretName: "s", Type: "kubernetes.io/dockerconfigjson", Data: []ssv1.SecretObjectData{{ObjectName: "docker.json", Key: ".dockerconfigjson"}}}
		if _, err := desiredSecret(ref, "ns", so, files); err != nil {
			t.Fatal(err)
		}
	})

	for _, tc := range []struct {
		name    string
		so      ssv1.SecretObject
		want    error
		mention string
	}{
		{"missing object", ssv1.SecretObject{SecretName: "s", Data: []ssv1.SecretObjectData{{ObjectName: "nope", Key: "k"}}}, ErrObjectNotFound, `data[0].objectName "nope"`},
		{"escaping path", ssv1.SecretObject{SecretName: "s", Data: []ssv1.SecretObjectData{{ObjectName: "../etc/passwd", Key: "k"}}}, ErrInvalidSecretObject, "data[0].objectName"},
		{"empty data", ssv1.SecretObject{SecretName: "s", Type: "Opaque"}, ErrInvalidSecretObject, "data: is empty"},
		{"invalid type", ssv1.SecretObject{SecretName: "s", Type: "not a type", Data: []ssv1.SecretObjectData{{ObjectName: "user", Key: "k"}}}, ErrInvalidSecretObject, "type"},
		{"bad secret name", ssv1.SecretObject{SecretName: "Bad_Name", Data: []ssv1.SecretObjectData{{ObjectName: "user", Key: "k"}}}, ErrInvalidSecretObject, "secretName"},
		{"duplicate key", ssv1.SecretObject{SecretName: "s", Data: []ssv1.SecretObjectData{{ObjectName: "user", Key: "k"}, {ObjectName: "user", Key: "k"}}}, ErrInvalidSecretObject, "data[1].key"},
		{"invalid json", ssv1.SecretObject{SecretName: "s", Type: "kubernetes.io/dockerconfigjson", Data: []ssv1.SecretObjectData{{ObjectName: "broken.json", Key: ".dockerconfigjson"}}}, ErrInvalidSecretObject, "not valid JSON"},
		{"tls without key", ssv1.SecretObject{SecretName: "s", Type: "kubernetes.io/tls", Data: []ssv1.SecretObjectData{{ObjectName: "cert.pem", Key: "tls.crt"}}}, ErrInvalidSecretObject, "tls.key"},
		{"tls from plain text", ssv1.SecretObject{SecretName: "s", Type: "kubernetes.io/tls", Data: []ssv1.SecretObjectData{{ObjectName: "db/password", Key: "tls.crt"}, {ObjectName: "cert.pem", Key: "tls.key"}}}, ErrInvalidSecretObject, `data[0]: objectName "db/password"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := desiredSecret(ref, "ns", tc.so, files)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			msg := err.Error()
			for _, s := range []string{"ns/spc", "secretObjects[0]", tc.mention} {
				if !strings.Contains(msg, s) {
					t.Errorf("error %q does not mention %q", msg, s)
				}
			}
			for _, v := range []string{"hunter2", "admin", "eDp5"} {
				if strings.Contains(msg, v) {
					t.Errorf("error %q carries a secret value", msg)
				}
			}
		})
	}
}

func TestMergedKeepsForeignMetadata(t *testing.T) {
	cur := &kubeclient.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "ns",
			Labels:          map[string]string{"team": "a", secretdata.ManagedLabel: "true"},
			Annotations:     map[string]string{"note": "keep"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "one", UID: "u1"}}},
		Type: string(secretdata.TypeOpaque),
		Data: map[string][]byte{"k": []byte("old")},
	}
	want := &kubeclient.Secret{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{secretdata.ManagedLabel: "true", "app": "x"}}, Type: string(secretdata.TypeOpaque), Data: map[string][]byte{"k": []byte("new")}}
	owners := []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "one", UID: "u1"}, {APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "two", UID: "u2"}}
	got := merged(cur, want, owners)
	if got.Labels["team"] != "a" || got.Labels["app"] != "x" || got.Annotations["note"] != "keep" {
		t.Errorf("metadata not merged: %v %v", got.Labels, got.Annotations)
	}
	if len(got.OwnerReferences) != 2 {
		t.Errorf("owners = %v, want u1 and u2 once each", got.OwnerReferences)
	}
	if string(got.Data["k"]) != "new" {
		t.Errorf("data not replaced")
	}
	if string(cur.Data["k"]) != "old" || len(cur.OwnerReferences) != 1 {
		t.Errorf("merged modified its input")
	}
	if !equality.Semantic.DeepEqual(merged(got, want, owners), got) {
		t.Errorf("merging twice changes the object: a republish would write")
	}
}

// TestHostileDataLinkReachesNoSecret: a legacy provider writes into the
// volume and points ..data at a host directory or out of the volume;
// nothing it points at may be read into a Secret.
func TestHostileDataLinkReachesNoSecret(t *testing.T) {
	for _, target := range []string{"/etc", "..", "../..", "..2024_01_01_00_00_00.1"} {
		t.Run(target, func(t *testing.T) {
			dir := t.TempDir()
			if target == "..2024_01_01_00_00_00.1" {
				// A payload-like name that is itself a link to the host.
				if err := os.Symlink("/etc", dir+"/"+target); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Symlink(target, dir+"/..data"); err != nil {
				t.Fatal(err)
			}
			v, err := openVolume(dir)
			if err == nil {
				defer v.Close()
				if b, rerr := v.read("hostname"); rerr == nil {
					t.Fatalf("read the host's /etc/hostname (%d bytes) through ..data -> %s", len(b), target)
				}
				t.Fatalf("openVolume accepted ..data -> %s", target)
			}
			if !errors.Is(err, atomicfs.ErrForeignLayout) {
				t.Fatalf("err = %v, want ErrForeignLayout", err)
			}
		})
	}
}
