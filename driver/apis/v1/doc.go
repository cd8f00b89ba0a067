// Package v1 holds the storage version of the secrets-store.csi.x-k8s.io API:
// SecretProviderClass, which tells the driver which provider to call and with
// which parameters, and SecretProviderClassPodStatus, the driver's record of
// one pod's mount of one SecretProviderClass.
//
// The JSON shape matches the upstream Secrets Store CSI driver exactly, so
// existing manifests and upstream providers keep working. DeepCopy methods and
// the CRD YAML under manifests/crds are generated: run hack/generate.sh after
// editing the types.
//
// Neither kind has a status subresource, as upstream: the driver sets status
// on create and update, which a status subresource would silently drop.
// The +kubebuilder:storageversion (v1) and +kubebuilder:deprecatedversion
// (v1alpha1) markers sit on the root types, where controller-gen reads them.
//
// +kubebuilder:object:generate=true
// +groupName=secrets-store.csi.x-k8s.io
package v1
