package manifests_test

import (
	"io/fs"
	"testing"

	storagev1 "k8s.io/api/storage/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"

	"github.com/sscsi/secrets-store/manifests"
)

func TestCRDs(t *testing.T) {
	files, err := fs.Glob(manifests.CRDs, "crds/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, name := range files {
		t.Run(name, func(t *testing.T) {
			b, err := manifests.CRDs.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			var crd apiextensionsv1.CustomResourceDefinition
			if err := yaml.UnmarshalStrict(b, &crd); err != nil {
				t.Fatalf("parse: %v", err)
			}
			seen[crd.Spec.Names.Kind] = true
			if crd.Spec.Group == "secret-sync.x-k8s.io" {
				checkSecretSyncCRD(t, &crd)
				return
			}
			if crd.Spec.Group != "secrets-store.csi.x-k8s.io" {
				t.Errorf("group = %q", crd.Spec.Group)
			}
			if crd.Spec.Scope != apiextensionsv1.NamespaceScoped {
				t.Errorf("scope = %q", crd.Spec.Scope)
			}
			versions := map[string]apiextensionsv1.CustomResourceDefinitionVersion{}
			for _, v := range crd.Spec.Versions {
				versions[v.Name] = v
				if !v.Served {
					t.Errorf("%s not served", v.Name)
				}
				// Writers set status on create and update; a status
				// subresource would drop it, and upstream has none.
				if v.Subresources != nil && v.Subresources.Status != nil {
					t.Errorf("%s has a status subresource", v.Name)
				}
			}
			if len(versions) != 2 {
				t.Fatalf("versions = %v, want v1 and v1alpha1", crd.Spec.Versions)
			}
			if v := versions["v1"]; !v.Storage || v.Deprecated {
				t.Errorf("v1: storage=%v deprecated=%v, want storage and not deprecated", v.Storage, v.Deprecated)
			}
			if v := versions["v1alpha1"]; v.Storage || !v.Deprecated {
				t.Errorf("v1alpha1: storage=%v deprecated=%v, want deprecated and not storage", v.Storage, v.Deprecated)
			}
		})
	}
	for _, kind := range []string{"SecretProviderClass", "SecretProviderClassPodStatus"} {
		if !seen[kind] {
			t.Errorf("no CRD for %s in %v", kind, files)
		}
	}
}

func TestCSIDriver(t *testing.T) {
	var d storagev1.CSIDriver
	if err := yaml.UnmarshalStrict(manifests.CSIDriver, &d); err != nil {
		t.Fatalf("parse: %v", err)
	}
	s := d.Spec
	switch {
	case d.Name != "secrets-store.csi.k8s.io":
		t.Errorf("name = %q", d.Name)
	case s.AttachRequired == nil || *s.AttachRequired:
		t.Error("attachRequired must be false")
	case s.PodInfoOnMount == nil || !*s.PodInfoOnMount:
		t.Error("podInfoOnMount must be true")
	case len(s.VolumeLifecycleModes) != 1 || s.VolumeLifecycleModes[0] != storagev1.VolumeLifecycleEphemeral:
		t.Errorf("volumeLifecycleModes = %v", s.VolumeLifecycleModes)
	case s.RequiresRepublish == nil || !*s.RequiresRepublish:
		t.Error("requiresRepublish must be true")
	case s.FSGroupPolicy == nil || *s.FSGroupPolicy != storagev1.FileFSGroupPolicy:
		t.Errorf("fsGroupPolicy = %v, want File (the driver applies the pod's fsGroup)", s.FSGroupPolicy)
	case len(s.TokenRequests) == 0:
		t.Error("no tokenRequests")
	case s.ServiceAccountTokenInSecrets == nil || !*s.ServiceAccountTokenInSecrets:
		t.Error("serviceAccountTokenInSecrets must be true")
	}
}

// checkSecretSyncCRD: upstream's SecretSync API (one served storage version,
// v1alpha1, with a status subresource: the controller writes status only).
func checkSecretSyncCRD(t *testing.T, crd *apiextensionsv1.CustomResourceDefinition) {
	t.Helper()
	if crd.Spec.Names.Kind != "SecretSync" || crd.Spec.Scope != apiextensionsv1.NamespaceScoped || len(crd.Spec.Versions) != 1 {
		t.Fatalf("SecretSync CRD: kind %s scope %s versions %d", crd.Spec.Names.Kind, crd.Spec.Scope, len(crd.Spec.Versions))
	}
	v := crd.Spec.Versions[0]
	if v.Name != "v1alpha1" || !v.Served || !v.Storage || v.Subresources == nil || v.Subresources.Status == nil {
		t.Errorf("SecretSync v1alpha1: %+v", v)
	}
}
