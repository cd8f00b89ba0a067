// Package podstatus writes SecretProviderClassPodStatus objects off the
// publish's critical path: Record only remembers the latest state per
// object, and a worker writes it, skipping writes that change nothing and
// retrying failures with backoff. The worker gathers the records of a short
// window (BatchDelay) and writes them concurrently: the API server's answers
// then arrive together and are handled in one wake-up of the process instead
// of one each (the write, not the publish, is what a node's burst of mounts
// waits on).
package podstatus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	ssv1 "github.com/sscsi/secrets-store/driver/apis/v1"
	"github.com/sscsi/secrets-store/driver/internal/publish"
)

// Config configures a Writer.
type Config struct {
	// Client is a REST client for secrets-store.csi.x-k8s.io/v1.
	Client rest.Interface
	// NodeName labels every object with the node it was mounted on.
	NodeName string
	// MaxBackoff caps the retry delay (default 30s).
	MaxBackoff time.Duration
	// BatchDelay is how long the writer waits after a Record before it
	// writes, so that the records of the publishes in that window are
	// written together (default DefaultBatchDelay; negative: no wait).
	BatchDelay time.Duration
	// MaxInFlight bounds the writes in flight at once (default 16).
	MaxInFlight int
	// StopTimeout bounds the last write of what is pending when Run's
	// context ends (default 2s: a driver being replaced by a rolling
	// update).
	StopTimeout time.Duration
	// Written, when set, is told that the API server holds the status a
	// Record gave for target: after the write succeeded, or at once when
	// the writer already wrote that status. It is not called for a volume
	// forgotten meanwhile. It runs on the writer's goroutines and must not
	// block for long (publish.Publisher.StatusWritten).
	Written func(target string, objects []ssv1.SecretProviderClassObject)
}

// DefaultBatchDelay is Config.BatchDelay's default: short against the
// seconds a pod takes to start, long enough to gather the mounts of a burst.
const DefaultBatchDelay = 200 * time.Millisecond

// Writer implements publish.StatusRecorder.
type Writer struct {
	cfg  Config
	wake chan struct{}

	mu      sync.Mutex                                    // guards pending, written, stored, inflight, targets
	pending map[string]*ssv1.SecretProviderClassPodStatus // by namespace/name, latest wins
	written map[string]ssv1.SecretProviderClassPodStatusStatus
	// stored is each object as the API server returned it after this
	// writer's last write (with its resourceVersion), so that the next
	// change is one update instead of create, get and update.
	stored map[string]*ssv1.SecretProviderClassPodStatus
	// inflight holds the writes in flight right now, so that a Record of
	// the same state during the write is not queued again and Forget can
	// wait for them.
	inflight map[string]*flight
	targets  map[string]string // target path -> key
}

// flight is one write in flight.
type flight struct {
	status ssv1.SecretProviderClassPodStatusStatus
	cancel context.CancelFunc // Forget aborts the write
	done   chan struct{}      // closed when the write's outcome is recorded
}

var _ publish.StatusRecorder = (*Writer)(nil)

// New validates cfg.
func New(cfg Config) (*Writer, error) {
	if cfg.Client == nil || cfg.NodeName == "" {
		return nil, errors.New("podstatus: Client and NodeName are required")
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.BatchDelay == 0 {
		cfg.BatchDelay = DefaultBatchDelay
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 16
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 2 * time.Second
	}
	return &Writer{
		cfg:      cfg,
		wake:     make(chan struct{}, 1),
		pending:  map[string]*ssv1.SecretProviderClassPodStatus{},
		written:  map[string]ssv1.SecretProviderClassPodStatusStatus{},
		stored:   map[string]*ssv1.SecretProviderClassPodStatus{},
		inflight: map[string]*flight{},
		targets:  map[string]string{},
	}, nil
}

// Name is the object name upstream uses: <pod>-<namespace>-<spc>.
func Name(pod, namespace, spc string) string {
	return pod + "-" + namespace + "-" + spc
}

// Record implements publish.StatusRecorder; it never blocks on the API.
func (w *Writer) Record(o publish.Outcome) {
	obj := &ssv1.SecretProviderClassPodStatus{
		ObjectMeta: metav1.ObjectMeta{
			Name:      Name(o.Pod.Name, o.Pod.Namespace, o.SPC.Name),
			Namespace: o.Pod.Namespace,
			Labels:    map[string]string{ssv1.NodeNameLabel: w.cfg.NodeName},
		},
		Status: ssv1.SecretProviderClassPodStatusStatus{
			PodName:                 o.Pod.Name,
			SecretProviderClassName: o.SPC.Name,
			Mounted:                 true,
			TargetPath:              o.TargetPath,
			Objects:                 o.Versions,
		},
	}
	if o.Pod.UID != "" {
		obj.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: o.Pod.Name, UID: types.UID(o.Pod.UID)}}
	}
	key := obj.Namespace + "/" + obj.Name
	w.mu.Lock()
	w.targets[o.TargetPath] = key
	if written, ok := w.written[key]; ok && reflect.DeepEqual(written, obj.Status) {
		w.mu.Unlock()
		w.confirm(obj)
		return
	}
	if w.inflightEqualLocked(key, obj.Status) {
		// The write in flight confirms it.
		w.mu.Unlock()
		return
	}
	w.pending[key] = obj
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// inflightEqualLocked reports whether st is being written right now; the
// caller holds mu.
func (w *Writer) inflightEqualLocked(key string, st ssv1.SecretProviderClassPodStatusStatus) bool {
	f, ok := w.inflight[key]
	return ok && reflect.DeepEqual(f.status, st)
}

// confirm tells Config.Written that obj's status is held by the API server.
func (w *Writer) confirm(obj *ssv1.SecretProviderClassPodStatus) {
	if w.cfg.Written != nil {
		w.cfg.Written(obj.Status.TargetPath, obj.Status.Objects)
	}
}

// Forget implements publish.StatusRecorder: the volume is gone; drop what
// is remembered about it and what is pending for it (the object itself is
// garbage-collected with its pod). A write of it in flight is aborted and
// waited for (milliseconds, also with the API server hung), so that once
// Forget returns nothing creates or changes the volume's object any more;
// an abort the API server had already committed leaves an object that is
// garbage-collected with its pod.
func (w *Writer) Forget(target string) {
	w.mu.Lock()
	key, ok := w.targets[target]
	if !ok {
		w.mu.Unlock()
		return
	}
	delete(w.targets, target)
	if w.trackedLocked(key) {
		// Another volume of the pod with the same class shares the object.
		w.mu.Unlock()
		return
	}
	delete(w.pending, key)
	delete(w.written, key)
	delete(w.stored, key)
	f := w.inflight[key]
	w.mu.Unlock()
	if f != nil {
		f.cancel()
		<-f.done
	}
}

// Pending returns how many objects are not written yet: waiting, or being
// written right now (a retry in flight still counts) (tests, metrics).
func (w *Writer) Pending() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(w.pending)
	for key := range w.inflight {
		if _, waiting := w.pending[key]; !waiting {
			n++
		}
	}
	return n
}

// Run writes pending objects until ctx is done; what is pending then is
// written once more, for at most StopTimeout.
func (w *Writer) Run(ctx context.Context) {
	defer func() {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.cfg.StopTimeout)
		defer cancel()
		w.flush(fctx)
	}()
	backoff := time.Duration(0)
	for {
		if backoff > 0 {
			if !sleep(ctx, backoff) {
				return
			}
		} else {
			select {
			case <-ctx.Done():
				return
			case <-w.wake:
			}
			if w.cfg.BatchDelay > 0 && !sleep(ctx, w.cfg.BatchDelay) {
				return
			}
		}
		failed := w.flush(ctx)
		switch {
		case !failed:
			backoff = 0
		case backoff == 0:
			backoff = 200 * time.Millisecond
		default:
			backoff = min(2*backoff, w.cfg.MaxBackoff)
		}
	}
}

// sleep waits d; false when ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// flush writes every pending object once, up to MaxInFlight at a time; it
// reports whether any failed (those stay pending unless a newer state
// replaced them).
func (w *Writer) flush(ctx context.Context) (failed bool) {
	w.mu.Lock()
	batch := w.pending
	w.pending = map[string]*ssv1.SecretProviderClassPodStatus{}
	ctxs := make(map[string]context.Context, len(batch))
	for key, obj := range batch {
		fctx, cancel := context.WithCancel(ctx)
		ctxs[key] = fctx
		w.inflight[key] = &flight{status: obj.Status, cancel: cancel, done: make(chan struct{})}
	}
	w.mu.Unlock()
	if len(batch) == 1 {
		// The common case of a lone mount: no goroutine.
		for key, obj := range batch {
			return !w.writeOne(ctxs[key], key, obj)
		}
	}
	var (
		wg   sync.WaitGroup
		bad  atomic.Bool
		slot = make(chan struct{}, w.cfg.MaxInFlight)
	)
	for key, obj := range batch {
		slot <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-slot; wg.Done() }()
			if !w.writeOne(ctxs[key], key, obj) {
				bad.Store(true)
			}
		}()
	}
	wg.Wait()
	return bad.Load()
}

// writeOne writes obj (pending under key) and records the outcome; it
// reports false when the write failed and obj is pending again.
func (w *Writer) writeOne(ctx context.Context, key string, obj *ssv1.SecretProviderClassPodStatus) bool {
	w.mu.Lock()
	prev := w.stored[key]
	w.mu.Unlock()
	stored, err := w.write(ctx, prev, obj)
	ok, confirmed := true, false
	w.mu.Lock()
	f := w.inflight[key]
	delete(w.inflight, key)
	f.cancel()
	switch {
	case !w.trackedLocked(key):
		// Forgotten while the write was in flight: the volume is gone.
		err = nil
	case err != nil:
		ok = false
		delete(w.stored, key)
		if _, newer := w.pending[key]; !newer {
			w.pending[key] = obj
		}
	default:
		w.written[key] = obj.Status
		if stored != nil {
			w.stored[key] = stored
		} else {
			// Written, version unknown (send): the next change starts over.
			delete(w.stored, key)
		}
		confirmed = true
	}
	w.mu.Unlock()
	if confirmed {
		w.confirm(obj)
	}
	// Only now: Forget waits for this, so that a confirmation never
	// follows the end of a volume's Forget.
	close(f.done)
	if err != nil {
		klog.ErrorS(err, "write SecretProviderClassPodStatus; will retry", "object", klog.KObj(obj))
	}
	return ok
}

// trackedLocked reports whether a mounted volume still maps to key; w.mu
// must be held.
func (w *Writer) trackedLocked(key string) bool {
	for _, k := range w.targets {
		if k == key {
			return true
		}
	}
	return false
}

// write makes the API object carry obj's status, node label and owners.
// prev is the object after this writer's last write, if any: a change is
// then a single update with its resourceVersion, and only a conflict (or a
// vanished object) costs the create, get and update that a first write or a
// restarted driver needs. It returns the object as stored (nil when nothing
// had to be written): what was sent, with the resourceVersion the API
// server gave it (the answer is not decoded further: decoding the whole
// object, its managedFields among them, was most of a write's CPU).
func (w *Writer) write(ctx context.Context, prev, obj *ssv1.SecretProviderClassPodStatus) (*ssv1.SecretProviderClassPodStatus, error) {
	if prev != nil {
		cur := prev.DeepCopy()
		if !w.merge(cur, obj) {
			return prev, nil
		}
		out, err := w.send(ctx, w.cfg.Client.Put().Name(obj.Name), cur)
		if err == nil {
			return out, nil
		}
		if !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("update: %w", err)
		}
		// Changed by someone else, or deleted: start over.
	}
	out, err := w.send(ctx, w.cfg.Client.Post(), obj)
	if err == nil {
		return out, nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	cur := &ssv1.SecretProviderClassPodStatus{}
	if err := w.cfg.Client.Get().Namespace(obj.Namespace).Resource(resource).Name(obj.Name).Do(ctx).Into(cur); err != nil {
		return nil, fmt.Errorf("get: %w", err)
	}
	if !w.merge(cur, obj) {
		return cur, nil
	}
	out, err = w.send(ctx, w.cfg.Client.Put().Name(obj.Name), cur)
	if err != nil {
		return nil, fmt.Errorf("update: %w", err)
	}
	return out, nil
}

const resource = "secretproviderclasspodstatuses"

// send makes req (a create or an update) with body and returns body as
// stored: a copy carrying the resourceVersion of the API server's answer.
func (w *Writer) send(ctx context.Context, req *rest.Request, body *ssv1.SecretProviderClassPodStatus) (*ssv1.SecretProviderClassPodStatus, error) {
	raw, err := req.Namespace(body.Namespace).Resource(resource).Body(body).Do(ctx).Raw()
	if err != nil {
		return nil, err
	}
	var answer struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(raw, &answer); err != nil || answer.Metadata.ResourceVersion == "" {
		// Written, but its version is unknown: the writer forgets the
		// stored object, so the next change starts over with a create
		// (AlreadyExists), a read and an update.
		return nil, nil
	}
	out := *body
	out.ResourceVersion = answer.Metadata.ResourceVersion
	return &out, nil
}

// merge makes cur carry obj's status, this node's label and obj's owners
// (owners are only added, never replaced: references written by others
// stay). It reports whether cur changed.
func (w *Writer) merge(cur, obj *ssv1.SecretProviderClassPodStatus) bool {
	var missing []metav1.OwnerReference
	for _, o := range obj.OwnerReferences {
		found := false
		for _, c := range cur.OwnerReferences {
			found = found || c.UID == o.UID
		}
		if !found {
			missing = append(missing, o)
		}
	}
	if reflect.DeepEqual(cur.Status, obj.Status) && cur.Labels[ssv1.NodeNameLabel] == w.cfg.NodeName && len(missing) == 0 {
		return false
	}
	cur.Status = obj.Status
	if cur.Labels == nil {
		cur.Labels = map[string]string{}
	}
	cur.Labels[ssv1.NodeNameLabel] = w.cfg.NodeName
	cur.OwnerReferences = append(cur.OwnerReferences, missing...)
	return true
}
