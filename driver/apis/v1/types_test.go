package v1_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"sigs.k8s.io/yaml"

	v1 "github.com/sscsi/secrets-store/driver/apis/v1"
)

// spcYAML is written the way users write manifests for the upstream driver;
// decoding it and encoding the result must give back every field, so a
// renamed or dropped json tag fails the test.
const spcYAML = `
apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata:
  name: app
  namespace: default
spec:
  provider: aws
  parameters:
    region: eu-west-1
    objects: |
      - objectName: db
  secretObjects:
  - secretName: db-creds
    type: kubernetes.io/tls
    labels:
      team: a
    annotations:
      note: b
    data:
    - objectName: db
      key: tls.crt
status: {}
`

const spcpsYAML = `
apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClassPodStatus
metadata:
  name: web-default-app
  namespace: default
  labels:
    internal.secrets-store.csi.k8s.io/node-name: node-1
status:
  podName: web
  secretProviderClassName: app
  mounted: true
  targetPath: /var/lib/kubelet/pods/uid/volumes/kubernetes.io~csi/secrets/mount
  objects:
  - id: db
    version: v7
`

func decode(t *testing.T, manifest string) runtime.Object {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := v1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	obj, gvk, err := serializer.NewCodecFactory(scheme, serializer.EnableStrict).
		UniversalDeserializer().Decode([]byte(manifest), nil, nil)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if gvk.GroupVersion() != v1.SchemeGroupVersion {
		t.Fatalf("decoded as %v, want %v", gvk, v1.SchemeGroupVersion)
	}
	return obj
}

// assertRoundTrip encodes obj to JSON and checks that the top-level fields
// named in keys come back exactly as the manifest had them.
func assertRoundTrip(t *testing.T, manifest string, obj runtime.Object, keys ...string) {
	t.Helper()
	var want map[string]any
	if err := yaml.Unmarshal([]byte(manifest), &want); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if !reflect.DeepEqual(got[k], want[k]) {
			t.Errorf("%s after round trip:\n got %v\nwant %v", k, got[k], want[k])
		}
	}
}

func TestSecretProviderClassRoundTrip(t *testing.T) {
	obj := decode(t, spcYAML)
	spc, ok := obj.(*v1.SecretProviderClass)
	if !ok {
		t.Fatalf("decoded %T", obj)
	}
	wantSpec := v1.SecretProviderClassSpec{
		Provider:   "aws",
		Parameters: map[string]string{"region": "eu-west-1", "objects": "- objectName: db\n"},
		SecretObjects: []v1.SecretObject{{
			SecretName:  "db-creds",
			Type:        "kubernetes.io/tls",
			Labels:      map[string]string{"team": "a"},
			Annotations: map[string]string{"note": "b"},
			Data:        []v1.SecretObjectData{{ObjectName: "db", Key: "tls.crt"}},
		}},
	}
	if !reflect.DeepEqual(spc.Spec, wantSpec) {
		t.Errorf("spec:\n got %+v\nwant %+v", spc.Spec, wantSpec)
	}
	assertRoundTrip(t, spcYAML, spc, "apiVersion", "kind", "spec", "status")
}

func TestSecretProviderClassPodStatusRoundTrip(t *testing.T) {
	obj := decode(t, spcpsYAML)
	ps, ok := obj.(*v1.SecretProviderClassPodStatus)
	if !ok {
		t.Fatalf("decoded %T", obj)
	}
	if got := ps.Labels[v1.NodeNameLabel]; got != "node-1" {
		t.Errorf("node label = %q", got)
	}
	wantStatus := v1.SecretProviderClassPodStatusStatus{
		PodName:                 "web",
		SecretProviderClassName: "app",
		Mounted:                 true,
		TargetPath:              "/var/lib/kubelet/pods/uid/volumes/kubernetes.io~csi/secrets/mount",
		Objects:                 []v1.SecretProviderClassObject{{ID: "db", Version: "v7"}},
	}
	if !reflect.DeepEqual(ps.Status, wantStatus) {
		t.Errorf("status:\n got %+v\nwant %+v", ps.Status, wantStatus)
	}
	assertRoundTrip(t, spcpsYAML, ps, "apiVersion", "kind", "status")
}

func TestDeepCopyIsIndependent(t *testing.T) {
	spc := decode(t, spcYAML).(*v1.SecretProviderClass)
	cp := spc.DeepCopyObject().(*v1.SecretProviderClass)
	if !reflect.DeepEqual(spc, cp) {
		t.Fatal("copy differs from original")
	}
	cp.Spec.Parameters["region"] = "changed"
	cp.Spec.SecretObjects[0].Labels["team"] = "changed"
	cp.Spec.SecretObjects[0].Data[0].Key = "changed"
	if spc.Spec.Parameters["region"] != "eu-west-1" ||
		spc.Spec.SecretObjects[0].Labels["team"] != "a" ||
		spc.Spec.SecretObjects[0].Data[0].Key != "tls.crt" {
		t.Errorf("mutating the copy changed the original: %+v", spc.Spec)
	}

	ps := decode(t, spcpsYAML).(*v1.SecretProviderClassPodStatus)
	pcp := ps.DeepCopy()
	pcp.Status.Objects[0].Version = "changed"
	pcp.Labels[v1.NodeNameLabel] = "changed"
	if ps.Status.Objects[0].Version != "v7" || ps.Labels[v1.NodeNameLabel] != "node-1" {
		t.Errorf("mutating the copy changed the original: %+v", ps)
	}

	list := &v1.SecretProviderClassList{Items: []v1.SecretProviderClass{*spc}}
	lcp := list.DeepCopyObject().(*v1.SecretProviderClassList)
	lcp.Items[0].Spec.Provider = "changed"
	if list.Items[0].Spec.Provider != "aws" {
		t.Error("mutating the list copy changed the original")
	}
}

func TestHelpers(t *testing.T) {
	if got := v1.Kind("SecretProviderClass").String(); got != "SecretProviderClass.secrets-store.csi.x-k8s.io" {
		t.Errorf("Kind = %s", got)
	}
	if got := v1.Resource("secretproviderclasspodstatuses").String(); got != "secretproviderclasspodstatuses.secrets-store.csi.x-k8s.io" {
		t.Errorf("Resource = %s", got)
	}
}

func TestProviderValidate(t *testing.T) {
	for _, ok := range []v1.Provider{"aws", "my_provider-2", v1.Provider(strings.Repeat("a", 30))} {
		if err := ok.Validate(); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []v1.Provider{"", "a.b", "../x", "a/b", v1.Provider(strings.Repeat("a", 31)), "é"} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
