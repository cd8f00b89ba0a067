package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SecretObjectData maps one file of the provider's answer to one key of the
// Secret.
type SecretObjectData struct {
	// SourcePath is the path of a file in the provider's MountResponse (for
	// most providers, the object's name or alias).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9.]([-A-Za-z0-9]+([-._a-zA-Z0-9]?[A-Za-z0-9])*)?(\/([0-9]+))*$`
	// +required
	SourcePath string `json:"sourcePath"`

	// TargetKey is the key of the Secret's data that receives the file.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9.]([-A-Za-z0-9]+([-._a-zA-Z0-9]?[A-Za-z0-9])*)?(\/([0-9]+))*$`
	// +required
	TargetKey string `json:"targetKey"`
}

// SecretObject describes the Secret the controller keeps in sync. The
// Secret's name is the SecretSync's name.
type SecretObject struct {
	// Type is the Secret's type, e.g. Opaque, kubernetes.io/tls,
	// kubernetes.io/dockerconfigjson, kubernetes.io/basic-auth or
	// kubernetes.io/ssh-auth. Service account token Secrets are refused.
	// +kubebuilder:default:=Opaque
	// +kubebuilder:validation:Pattern=`^[^\s]+$`
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Type string `json:"type"`

	// Data lists the provider files that become keys of the Secret.
	// +kubebuilder:validation:MinItems=1
	// +listType=map
	// +listMapKey=targetKey
	// +required
	Data []SecretObjectData `json:"data"`

	// Labels are set on the Secret. Keys under secrets-store.sync.x-k8s.io
	// are reserved for the controller.
	// +kubebuilder:validation:XValidation:message="Label keys must not exceed 317 characters (254 for prefix+separator, 63 for name), label values must not exceed 63 characters.",rule="self.all(x, x.size() <= 317 && self[x].size() <= 63)"
	// +kubebuilder:validation:XValidation:message="Labels should not contain secrets-store.sync.x-k8s.io. This key is reserved for the controller.",rule="self.all(x, !x.startsWith('secrets-store.sync.x-k8s.io'))"
	// +optional
	Labels map[string]string `json:"labels,omitempty"`

	// Annotations are set on the Secret. Keys under
	// secrets-store.sync.x-k8s.io are reserved for the controller.
	// +kubebuilder:validation:XValidation:message="Annotations keys must not exceed 317 characters (254 for prefix+separator, 63 for name), annotation values must not exceed 256 kB.",rule="self.all(x, x.size() < 317 && self[x].size() <= 262144)"
	// +kubebuilder:validation:XValidation:message="Annotations should not contain secrets-store.sync.x-k8s.io. This key is reserved for the controller.",rule="self.all(x, !x.startsWith('secrets-store.sync.x-k8s.io'))"
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
}

// SecretSyncSpec is what a SecretSync asks of the controller.
type SecretSyncSpec struct {
	// SecretSyncControllerName names the controller that handles this
	// SecretSync; a controller started with --controller-name handles only
	// SecretSyncs naming it (empty matches a controller without a name).
	// +kubebuilder:default:=""
	// +optional
	SecretSyncControllerName string `json:"secretSyncControllerName"`

	// SecretProviderClassName names the SecretProviderClass, in the
	// SecretSync's namespace, whose provider and parameters fetch the data.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +required
	SecretProviderClassName string `json:"secretProviderClassName"`

	// ServiceAccountName names the service account, in the SecretSync's
	// namespace, whose identity the provider uses: the controller requests a
	// short-lived token for it with the audiences it is configured with.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +required
	ServiceAccountName string `json:"serviceAccountName"`

	// SecretObject describes the Secret to write.
	// +required
	SecretObject SecretObject `json:"secretObject"`

	// ForceSynchronization: changing its value makes the controller fetch
	// and write again at once.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9]([-A-Za-z0-9]+([-._a-zA-Z0-9]?[A-Za-z0-9])*)?$`
	// +optional
	ForceSynchronization string `json:"forceSynchronization,omitempty"`
}

// SecretSyncStatus is what the controller last observed and did.
type SecretSyncStatus struct {
	// SyncHash is an HMAC-SHA256, keyed by the SecretSync's UID, of what the
	// last successful sync wrote and of the inputs it was computed from; it
	// changes when the Secret's content or its sources change and reveals
	// nothing of the content.
	// +optional
	SyncHash string `json:"syncHash,omitempty"`

	// LastSuccessfulSyncTime is when the provider's answer was last written
	// to (or found already in) the Secret.
	// +optional
	LastSuccessfulSyncTime *metav1.Time `json:"lastSuccessfulSyncTime,omitempty"`

	// Conditions: Create (the Secret's creation) and Update (the latest
	// refresh), with upstream's reasons; the message says what to fix.
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	// +kubebuilder:validation:MaxItems=16
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`
}

// Condition types and reasons (upstream's names).
const (
	ConditionTypeCreate = "Create"
	ConditionTypeUpdate = "Update"

	ReasonCreateSucceeded       = "CreateSucceeded"
	ReasonNoValueChange         = "NoValueChange"
	ReasonValueChangeOrForce    = "ValueChangeOrForceUpdateDetected"
	ReasonProviderError         = "ProviderError"
	ReasonUserInputValidation   = "UserInputValidationFailed"
	ReasonControllerSPCError    = "ControllerSPCError"
	ReasonControllerInternal    = "ControllerInternalError"
	ReasonVAPCheckFailed        = "ValidatingAdmissionPolicyCheckFailed"
	ReasonUnknown               = "UnknownError"
	ReasonInvalidLabel          = "InvalidClusterSecretLabelError"
	ReasonInvalidAnnotation     = "InvalidClusterSecretAnnotationError"
	ReasonServiceAccountError   = "ServiceAccountTokenError"
	ReasonProviderNotAvailable  = "ProviderNotAvailable"
	ReasonSecretNotOwned        = "SecretNotOwned"
	ReasonSecretTypeNotAccepted = "SecretTypeNotAccepted"
)

// SecretSync keeps the Secret of the same name in its namespace in sync
// with objects of an external secret store.
// +kubebuilder:object:root=true
// +kubebuilder:storageversion
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="ProviderClass",type=string,JSONPath=`.spec.secretProviderClassName`
// +kubebuilder:printcolumn:name="ServiceAccount",type=string,JSONPath=`.spec.serviceAccountName`
// +kubebuilder:printcolumn:name="LastSync",type=date,JSONPath=`.status.lastSuccessfulSyncTime`
type SecretSync struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   SecretSyncSpec   `json:"spec,omitempty"`
	Status SecretSyncStatus `json:"status,omitempty"`
}

// SecretSyncList is a list of SecretSyncs.
// +kubebuilder:object:root=true
type SecretSyncList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []SecretSync `json:"items"`
}
