// Package v1alpha1 is the secret-sync.x-k8s.io/v1alpha1 API: SecretSync, a
// request to keep one Kubernetes Secret in sync with objects of an external
// secret store, fetched through a SecretProviderClass's provider without any
// pod mounting a volume.
//
// The JSON shape and validation match kubernetes-sigs/secrets-store-sync-controller
// (v1alpha1), so its manifests apply unchanged. Where upstream versions of
// the CRD differ, the schema accepts what any of them accepted (type is
// optional and defaults to Opaque; label and annotation limits are the
// looser ones). DeepCopy methods and the CRD YAML under manifests/crds are
// generated: run hack/generate.sh after editing the types.
//
// +kubebuilder:object:generate=true
// +groupName=secret-sync.x-k8s.io
package v1alpha1
