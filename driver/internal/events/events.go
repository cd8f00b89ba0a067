// Package events emits Kubernetes events on pods for what happens to their
// secret volumes. Messages never carry secret values.
package events

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/sscsi/secrets-store/driver/internal/publish"
)

// Recorder implements publish.Events with a client-go event broadcaster.
type Recorder struct {
	rec record.EventRecorder
}

var _ publish.Events = (*Recorder)(nil)

// New starts a broadcaster that writes events through client until ctx is
// done.
func New(ctx context.Context, client kubernetes.Interface, component, node string) *Recorder {
	b := record.NewBroadcaster(record.WithContext(ctx))
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	go func() { <-ctx.Done(); b.Shutdown() }()
	return &Recorder{rec: b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: component, Host: node})}
}

// Event implements publish.Events.
func (r *Recorder) Event(pod publish.Pod, warning bool, reason, message string) {
	t := corev1.EventTypeNormal
	if warning {
		t = corev1.EventTypeWarning
	}
	ref := &corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: pod.Namespace, Name: pod.Name, UID: types.UID(pod.UID)}
	r.rec.Event(ref, t, reason, message)
}
