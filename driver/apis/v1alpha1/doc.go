// Package v1alpha1 holds the deprecated v1alpha1 version of the
// secrets-store.csi.x-k8s.io API. It is still served, so manifests written
// for it keep applying, but objects are stored as v1 (package
// github.com/sscsi/secrets-store/driver/apis/v1), which new code should use.
// The schema equals v1's except that SecretProviderClass status may carry
// byPod entries.
//
// Neither kind has a status subresource, as upstream: the driver sets status
// on create and update, which a status subresource would silently drop.
// The +kubebuilder:storageversion (v1) and +kubebuilder:deprecatedversion
// (v1alpha1) markers sit on the root types, where controller-gen reads them.
//
// +kubebuilder:object:generate=true
// +groupName=secrets-store.csi.x-k8s.io
package v1alpha1
