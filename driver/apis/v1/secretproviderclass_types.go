package v1

import (
	"errors"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Provider is the name of a provider plugin. The driver dials the unix
// socket <providers-dir>/<Provider>.sock, so the driver (not the CRD schema,
// which upstream leaves open) requires it to match ^[a-zA-Z0-9_-]{0,30}$.
type Provider string

// maxProviderName is the longest provider name (the socket's basename).
const maxProviderName = 30

// Validate checks the provider name the way the driver does before it
// dials <providers-dir>/<name>.sock: 1 to 30 of [a-zA-Z0-9_-].
func (p Provider) Validate() error {
	if p == "" {
		return errors.New("is empty; name the provider plugin (aws, vault, fake, ...)")
	}
	ok := len(p) <= maxProviderName
	for _, c := range p {
		ok = ok && (c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-')
	}
	if !ok {
		return fmt.Errorf("%q must match ^[a-zA-Z0-9_-]{1,30}$ (it names the provider's socket)", string(p))
	}
	return nil
}

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

// SecretProviderClassStatus is empty in v1; it exists so the schema keeps a
// status field, as the upstream CRD does.
type SecretProviderClassStatus struct{}

// SecretProviderClass tells the driver which provider serves a volume and
// with which parameters. Pods name it in the volume attribute
// secretProviderClass; it must live in the pod's namespace.
//
// +kubebuilder:object:root=true
// +kubebuilder:storageversion
// +kubebuilder:resource:scope=Namespaced
type SecretProviderClass struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the provider and its parameters.
	Spec SecretProviderClassSpec `json:"spec,omitempty"`
	// Status is unused in v1.
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
