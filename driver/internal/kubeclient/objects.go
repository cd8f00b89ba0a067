package kubeclient

import (
	"context"
	"encoding/json"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
)

// The core/v1 and authorization/v1 objects the driver reads and writes, as plain JSON structs
// with the API's field names. k8s.io/api/core/v1 is not linked: its generated code is about 2 MB
// of every node's driver binary (resident as file-backed pages), for three kinds. Each struct has
// every field of its kind that the driver may write back, so an update never drops a field.

// Secret is a core/v1 Secret (all of its fields).
type Secret struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Immutable         *bool             `json:"immutable,omitempty"`
	Data              map[string][]byte `json:"data,omitempty"`
	StringData        map[string]string `json:"stringData,omitempty"`
	Type              string            `json:"type,omitempty"`
}

// Event is a core/v1 Event as the driver posts it.
type Event struct {
	metav1.TypeMeta     `json:",inline"`
	metav1.ObjectMeta   `json:"metadata,omitempty"`
	InvolvedObject      ObjectReference `json:"involvedObject"`
	Reason              string          `json:"reason,omitempty"`
	Message             string          `json:"message,omitempty"`
	Source              EventSource     `json:"source,omitempty"`
	FirstTimestamp      metav1.Time     `json:"firstTimestamp,omitempty"`
	LastTimestamp       metav1.Time     `json:"lastTimestamp,omitempty"`
	Count               int32           `json:"count,omitempty"`
	Type                string          `json:"type,omitempty"`
	ReportingController string          `json:"reportingComponent,omitempty"`
	ReportingInstance   string          `json:"reportingInstance,omitempty"`
}

// Event types.
const (
	EventTypeNormal  = "Normal"
	EventTypeWarning = "Warning"
)

// ObjectReference is a core/v1 ObjectReference.
type ObjectReference struct {
	Kind       string    `json:"kind,omitempty"`
	Namespace  string    `json:"namespace,omitempty"`
	Name       string    `json:"name,omitempty"`
	UID        types.UID `json:"uid,omitempty"`
	APIVersion string    `json:"apiVersion,omitempty"`
}

// EventSource is a core/v1 EventSource.
type EventSource struct {
	Component string `json:"component,omitempty"`
	Host      string `json:"host,omitempty"`
}

// ResourceAttributes is authorization/v1 ResourceAttributes.
type ResourceAttributes struct {
	Namespace   string `json:"namespace,omitempty"`
	Verb        string `json:"verb,omitempty"`
	Group       string `json:"group,omitempty"`
	Version     string `json:"version,omitempty"`
	Resource    string `json:"resource,omitempty"`
	Subresource string `json:"subresource,omitempty"`
	Name        string `json:"name,omitempty"`
}

// SelfSubjectAccessReview is an authorization/v1 SelfSubjectAccessReview.
type SelfSubjectAccessReview struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              struct {
		ResourceAttributes *ResourceAttributes `json:"resourceAttributes,omitempty"`
	} `json:"spec"`
	Status struct {
		Allowed         bool   `json:"allowed"`
		Denied          bool   `json:"denied,omitempty"`
		Reason          string `json:"reason,omitempty"`
		EvaluationError string `json:"evaluationError,omitempty"`
	} `json:"status,omitempty"`
}

// Do sends req with in (nil: no body) as JSON and decodes the answer into out (nil: discarded).
// API errors come back as client-go's StatusError (apierrors.IsNotFound and the rest work).
func Do(ctx context.Context, req *rest.Request, in, out any) error {
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode %T: %w", in, err)
		}
		req = req.SetHeader("Content-Type", "application/json").Body(b)
	}
	raw, err := req.DoRaw(ctx)
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("decode %T: %w", out, err)
	}
	return nil
}

// DeepCopy returns a copy of s that shares nothing with it.
func (s *Secret) DeepCopy() *Secret {
	out := *s
	s.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	if s.Immutable != nil {
		v := *s.Immutable
		out.Immutable = &v
	}
	if s.Data != nil {
		out.Data = make(map[string][]byte, len(s.Data))
		for k, v := range s.Data {
			out.Data[k] = append([]byte(nil), v...)
		}
	}
	if s.StringData != nil {
		out.StringData = make(map[string]string, len(s.StringData))
		for k, v := range s.StringData {
			out.StringData[k] = v
		}
	}
	return &out
}
