// Package events emits Kubernetes events on pods for what happens to their
// secret volumes. Messages never carry secret values. Events are posted by
// one background worker through a plain core/v1 REST client, so emitting
// never blocks a mount and the driver does not link the full clientset.
package events

import (
	"context"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/sscsi/secrets-store/driver/internal/kubeclient"
	"github.com/sscsi/secrets-store/driver/internal/publish"
)

const (
	queueSize = 256
	// dedupeWindow: the same event for the same pod is posted at most
	// once per window (a failing rotation would otherwise post one per
	// kubelet republish).
	dedupeWindow = 5 * time.Minute
	maxMessage   = 1024
)

// Recorder implements publish.Events.
type Recorder struct {
	client    rest.Interface
	component string
	node      string
	queue     chan *kubeclient.Event

	mu     sync.Mutex           // guards recent
	recent map[string]time.Time // dedupe key -> last posted
}

var _ publish.Events = (*Recorder)(nil)

// New returns a recorder that posts through client (a core/v1 REST
// client) once Run runs; until then events queue (and past the queue's
// size are dropped).
func New(client rest.Interface, component, node string) *Recorder {
	return &Recorder{client: client, component: component, node: node, queue: make(chan *kubeclient.Event, queueSize), recent: map[string]time.Time{}}
}

// Event implements publish.Events.
func (r *Recorder) Event(pod publish.Pod, warning bool, reason, message string) {
	t := kubeclient.EventTypeNormal
	if warning {
		t = kubeclient.EventTypeWarning
	}
	if len(message) > maxMessage {
		message = message[:maxMessage] + "..."
	}
	key := pod.Namespace + "/" + pod.Name + "/" + pod.UID + "/" + reason + "/" + message
	now := time.Now()
	r.mu.Lock()
	if last, ok := r.recent[key]; ok && now.Sub(last) < dedupeWindow {
		r.mu.Unlock()
		return
	}
	r.recent[key] = now
	if len(r.recent) > 4*queueSize {
		for k, ts := range r.recent {
			if now.Sub(ts) >= dedupeWindow {
				delete(r.recent, k)
			}
		}
	}
	r.mu.Unlock()
	ev := &kubeclient.Event{
		TypeMeta:            metav1.TypeMeta{APIVersion: "v1", Kind: "Event"},
		ObjectMeta:          metav1.ObjectMeta{GenerateName: pod.Name + ".", Namespace: pod.Namespace},
		InvolvedObject:      kubeclient.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: pod.Namespace, Name: pod.Name, UID: types.UID(pod.UID)},
		Reason:              reason,
		Message:             message,
		Type:                t,
		Source:              kubeclient.EventSource{Component: r.component, Host: r.node},
		FirstTimestamp:      metav1.NewTime(now),
		LastTimestamp:       metav1.NewTime(now),
		Count:               1,
		ReportingController: r.component,
		ReportingInstance:   r.component + "-" + r.node,
	}
	select {
	case r.queue <- ev:
	default:
		klog.V(2).InfoS("event queue full; dropping event", "pod", klog.KRef(pod.Namespace, pod.Name), "reason", reason)
	}
}

// Run posts queued events until ctx is done.
func (r *Recorder) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-r.queue:
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := kubeclient.Do(pctx, r.client.Post().Namespace(ev.Namespace).Resource("events"), ev, nil)
			cancel()
			if err != nil {
				klog.ErrorS(err, "post event", "pod", klog.KRef(ev.Namespace, ev.InvolvedObject.Name), "reason", ev.Reason)
			}
		}
	}
}
