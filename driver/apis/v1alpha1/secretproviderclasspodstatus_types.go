package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SecretProviderClassObject is one object fetched by the provider and the
// version it reported.
type SecretProviderClassObject struct {
	// ID identifies the object, as the provider named it.
	ID string `json:"id,omitempty"`
	// Version is the provider's version of the object's content.
	Version string `json:"version,omitempty"`
}

// SecretProviderClassPodStatusStatus records one pod's mount of one
// SecretProviderClass.
type SecretProviderClassPodStatusStatus struct {
	// PodName is the name of the pod that mounts the volume.
	PodName string `json:"podName,omitempty"`
	// SecretProviderClassName is the SecretProviderClass the volume uses.
	SecretProviderClassName string `json:"secretProviderClassName,omitempty"`
	// Mounted is true once the volume's contents have been written.
	Mounted bool `json:"mounted,omitempty"`
	// TargetPath is the kubelet target path of the volume on the node.
	TargetPath string `json:"targetPath,omitempty"`
	// Objects are the objects last written and their versions.
	Objects []SecretProviderClassObject `json:"objects,omitempty"`
}

// SecretProviderClassPodStatus is the driver's record of a mounted volume. It
// is named <pod>-<namespace>-<secretProviderClass>, labelled with
// internal.secrets-store.csi.k8s.io/node-name and owned by the pod. It has no spec.
//
// +kubebuilder:object:root=true
// +kubebuilder:deprecatedversion
// +kubebuilder:resource:scope=Namespaced
type SecretProviderClassPodStatus struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Status is the state of the mount.
	Status SecretProviderClassPodStatusStatus `json:"status,omitempty"`
}

// SecretProviderClassPodStatusList is a list of SecretProviderClassPodStatus
// objects.
//
// +kubebuilder:object:root=true
type SecretProviderClassPodStatusList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	// Items are the SecretProviderClassPodStatuses.
	Items []SecretProviderClassPodStatus `json:"items"`
}
