package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Provider is the name of a provider plugin. The driver dials the unix
// socket <providers-dir>/<Provider>.sock, so the driver (not the CRD schema,
// which upstream leaves open) requires it to match ^[a-zA-Z0-9_-]{0,30}$.
type Provider string

// SecretObjectData maps one mounted file to one key of a synced Secret.
type SecretObjectData struct {
	// ObjectName is the path of the mounted file, relative to the volume root.
	ObjectName string `json:"objectName,omitempty"`
	// Key is the key in the Secret's data that receives the file's contents.
	Key string `json:"key,omitempty"`
}

// SecretObject describes a Kubernetes Secret that the driver keeps in sync
// with files of the mounted volume, in the pod's namespace.
type SecretObject struct {
	// SecretName is the name of the Secret to create or update.
	SecretName string `json:"secretName,omitempty"`
	// Type is the Secret type, e.g. Opaque or kubernetes.io/tls.
	Type string `json:"type,omitempty"`
	// Labels are added to the Secret's labels.
	Labels map[string]string `json:"labels,omitempty"`
	// Annotations are added to the Secret's annotations.
	Annotations map[string]string `json:"annotations,omitempty"`
	// Data lists the mounted files that become keys of the Secret.
	Data []SecretObjectData `json:"data,omitempty"`
}

// SecretProviderClassSpec is what a SecretProviderClass asks of the driver.
type SecretProviderClassSpec struct {
	// Provider names the provider plugin that fetches the objects.
	Provider Provider `json:"provider,omitempty"`
	// Parameters are passed to the provider as they are; the driver does not
	// interpret them. Volume attributes of the same name override them.
	Parameters map[string]string `json:"parameters,omitempty"`
	// SecretObjects lists Kubernetes Secrets to mirror from mounted files.
	SecretObjects []SecretObject `json:"secretObjects,omitempty"`
}

// ByPodStatus names a pod that uses the SecretProviderClass. The driver no
// longer writes it; the field is kept so that old objects still decode.
type ByPodStatus struct {
	// ID is the pod's UID.
	ID string `json:"id,omitempty"`
	// Namespace is the pod's namespace.
	Namespace string `json:"namespace,omitempty"`
}

// SecretProviderClassStatus is the observed state of a SecretProviderClass.
type SecretProviderClassStatus struct {
	// ByPod lists pods that use the SecretProviderClass.
	ByPod []ByPodStatus `json:"byPod,omitempty"`
}

// SecretProviderClass tells the driver which provider serves a volume and
// with which parameters. Pods name it in the volume attribute
// secretProviderClass; it must live in the pod's namespace.
//
// +kubebuilder:object:root=true
// +kubebuilder:deprecatedversion:warning="secrets-store.csi.x-k8s.io/v1alpha1 SecretProviderClass is deprecated; use secrets-store.csi.x-k8s.io/v1"
// +kubebuilder:resource:scope=Namespaced
type SecretProviderClass struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the provider and its parameters.
	Spec SecretProviderClassSpec `json:"spec,omitempty"`
	// Status is the observed state; see ByPodStatus.
	Status SecretProviderClassStatus `json:"status,omitempty"`
}

// SecretProviderClassList is a list of SecretProviderClass objects.
//
// +kubebuilder:object:root=true
type SecretProviderClassList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	// Items are the SecretProviderClasses.
	Items []SecretProviderClass `json:"items"`
}
