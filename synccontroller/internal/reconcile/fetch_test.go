package reconcile

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	ssv1 "github.com/sscsi/secrets-store/driver/apis/v1"
	"github.com/sscsi/secrets-store/providers/plugin"
	syncv1 "github.com/sscsi/secrets-store/synccontroller/apis/v1alpha1"
)

// recordingProvider answers every mount with one file and keeps the
// requests it saw.
type recordingProvider struct{ reqs []*v1alpha1.MountRequest }

func (p *recordingProvider) Mount(_ context.Context, _ string, req *v1alpha1.MountRequest) (*v1alpha1.MountResponse, error) {
	p.reqs = append(p.reqs, req)
	return &v1alpha1.MountResponse{Files: []*v1alpha1.File{{Path: "password", Contents: []byte("x")}}}, nil
}

func testSPC(params map[string]string) *ssv1.SecretProviderClass {
	return &ssv1.SecretProviderClass{
		ObjectMeta: metav1.ObjectMeta{Name: "spc", Namespace: "ns"},
		Spec:       ssv1.SecretProviderClassSpec{Provider: "vault", Parameters: params},
	}
}

// TestFetchSendsTheSecretSyncKey: the mount a provider gets carries the
// SecretSync's namespace, name and UID (what provider-vault keeps leased
// values under), decoded by the providers' own request decoder; a
// re-created SecretSync (new UID) sends another key.
func TestFetchSendsTheSecretSyncKey(t *testing.T) {
	p := &recordingProvider{}
	r := &Reconciler{cfg: Config{Provider: p}}
	ss := secretSync("Opaque")
	if _, err := r.fetch(t.Context(), ss, testSPC(map[string]string{"roleName": "db"}), `{"vault":{"token":"t"}}`); err != nil {
		t.Fatal(err)
	}
	again := ss.DeepCopy()
	again.UID = "uid-2"
	if _, err := r.fetch(t.Context(), again, testSPC(map[string]string{"roleName": "db"}), `{"vault":{"token":"t"}}`); err != nil {
		t.Fatal(err)
	}
	var got []plugin.Request
	for _, req := range p.reqs {
		d, err := plugin.DecodeRequest(req)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, *d)
	}
	d := got[0]
	if d.Pod.Namespace != "ns" || d.Pod.ServiceAccount != "sa" || d.Pod.UID != "" || d.Pod.Name != "" {
		t.Errorf("pod attributes %+v, want namespace ns, service account sa, no pod name or UID", d.Pod)
	}
	if d.SecretSync != (plugin.SecretSync{Name: "app", UID: "uid-1"}) {
		t.Errorf("SecretSync key %+v, want app/uid-1", d.SecretSync)
	}
	if d.Attributes["roleName"] != "db" || d.Attributes[plugin.AttrSPCName] != "spc" || d.Tokens["vault"].Token != "t" {
		t.Errorf("attributes %v tokens %v", d.Attributes, d.Tokens)
	}
	if got[1].SecretSync.UID != "uid-2" {
		t.Errorf("re-created SecretSync sent UID %q, want uid-2", got[1].SecretSync.UID)
	}
}

// TestFetchRefusesReservedParameters: a class whose parameters pose as
// the mount's identity (a pod UID would make provider-vault keep the
// SecretSync's credential under that pod's key) fails before any
// provider call, naming the key.
func TestFetchRefusesReservedParameters(t *testing.T) {
	for _, k := range []string{plugin.AttrPodUID, plugin.AttrPodName, plugin.AttrSecretSyncUID, plugin.AttrSecretSyncName, "csi.storage.k8s.io/anything"} {
		p := &recordingProvider{}
		r := &Reconciler{cfg: Config{Provider: p}}
		_, err := r.fetch(t.Context(), secretSync("Opaque"), testSPC(map[string]string{"roleName": "db", k: "victim"}), "{}")
		if Reason(err) != syncv1.ReasonControllerSPCError || !strings.Contains(err.Error(), k) || strings.Contains(err.Error(), "victim") {
			t.Errorf("parameter %s: err %v (reason %s), want %s naming the key and not its value", k, err, Reason(err), syncv1.ReasonControllerSPCError)
		}
		if len(p.reqs) != 0 {
			t.Errorf("parameter %s: the provider was called", k)
		}
	}
}
