// Package secretsync mirrors a SecretProviderClass's secretObjects into
// Kubernetes Secrets in the pod's namespace.
//
// Sync runs on the publish path: it reads the mounted files, builds the
// desired Secrets (splitting TLS bundles, validating types) and queues them;
// entries that cannot be built are reported at once as FailedToCreateSecret
// events on the pod. A worker then resolves the owners (the pod's own
// owners, else its SecretProviderClassPodStatus) and creates or updates each
// Secret with optimistic concurrency, adding to what is there (labels,
// annotations, owners written by others stay) and writing nothing when
// nothing differs. It never takes over a Secret it did not create: an
// existing Secret without the driver's marks for this SecretProviderClass
// is left untouched and reported (event SecretNotOwned, metric
// sync_k8s_secret_not_owned_total) unless its owner opts in to adoption. Whether the driver may write Secrets is checked with a
// SelfSubjectAccessReview at start and after any Forbidden; without that
// permission sync is disabled with one clear log line and an event per pod.
package secretsync

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"

	ssv1 "github.com/sscsi/secrets-store/driver/apis/v1"
	"github.com/sscsi/secrets-store/driver/internal/kubeclient"
	"github.com/sscsi/secrets-store/driver/internal/metrics"
	"github.com/sscsi/secrets-store/driver/internal/podstatus"
	"github.com/sscsi/secrets-store/driver/internal/publish"
	"github.com/sscsi/secrets-store/internal/secretdata"
)

// Errors of the package; decide with errors.Is.
var (
	// ErrInvalidSecretObject: a secretObjects entry cannot become a Secret
	// (bad name, type, key, TLS bundle or JSON); not retried.
	ErrInvalidSecretObject = errors.New("invalid secretObjects entry")
	// ErrObjectNotFound: an entry names a file the volume does not have;
	// not retried.
	ErrObjectNotFound = errors.New("objectName not found in the mounted volume")
	// ErrSyncDisabled: the driver may not write Secrets (RBAC).
	ErrSyncDisabled = errors.New("secret sync is disabled: the driver is not allowed to get, create and update Secrets")
	// ErrNotOwned: a Secret of the entry's name exists and the driver did
	// not create it for this SecretProviderClass (secretdata.MayWrite); it
	// is left untouched.
	ErrNotOwned = errors.New("a Secret of that name exists and is not managed by this SecretProviderClass")
	// errOwnerNotReady: the bare pod's SecretProviderClassPodStatus is not
	// written yet; retried quietly.
	errOwnerNotReady = errors.New("owner not created yet")
	// errPermanent marks API failures that a retry cannot fix.
	errPermanent = errors.New("not retried")
)

// EventReason is the reason of the Warning event for a failed entry.
const EventReason = "FailedToCreateSecret"

// NotOwnedReason is the reason of the Warning event for an entry whose
// Secret exists and belongs to someone else.
const NotOwnedReason = "SecretNotOwned"

// SecretSyncRole names the ClusterRole that grants Secret access, for messages.
const SecretSyncRole = "secretprovidersyncing-role"

// Config configures a Syncer.
type Config struct {
	// Core is a core/v1 REST client (kubeclient.Clients.CoreREST): it reads
	// pods, writes Secrets and asks access reviews. The driver does not link
	// the full clientset.
	Core rest.Interface
	// CRD is a REST client for secrets-store.csi.x-k8s.io/v1 (pod statuses).
	CRD rest.Interface
	// Events reports failures on the pod. Required.
	Events publish.Events
	// Metrics records sync_k8s_secret_*. Required.
	Metrics *metrics.Recorder
	// MaxBackoff caps the retry delay of a failing volume (default 30s).
	MaxBackoff time.Duration
	// GiveUpAfter drops a volume whose sync keeps failing (default 10m);
	// the next mount or rotation queues it again.
	GiveUpAfter time.Duration
	// RecheckAccess is how often a disabled sync asks again whether it may
	// write Secrets (default 1m).
	RecheckAccess time.Duration
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Syncer implements publish.SecretSyncer.
type Syncer struct {
	cfg  Config
	wake chan struct{}

	mu    sync.Mutex       // guards queue
	queue map[string]*item // by target path; the latest outcome wins

	accessMu     sync.Mutex // guards allowed, checked, accessReason
	allowed      *bool      // nil until known
	checked      time.Time
	accessReason string
}

var _ publish.SecretSyncer = (*Syncer)(nil)

// item is the pending sync of one volume.
type item struct {
	pod      publish.Pod
	spcNS    string
	spcName  string
	provider string
	secrets  []pendingSecret
	attempts int
	first    time.Time // first attempt of this outcome
	due      time.Time // not before
	warned   bool      // a failure event was emitted for this outcome
}

type pendingSecret struct {
	ref    entryRef
	secret *kubeclient.Secret // desired, without owners
}

// New validates cfg.
func New(cfg Config) (*Syncer, error) {
	if cfg.Core == nil || cfg.CRD == nil || cfg.Events == nil || cfg.Metrics == nil {
		return nil, errors.New("secretsync: Core, CRD, Events and Metrics are required")
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.GiveUpAfter <= 0 {
		cfg.GiveUpAfter = 10 * time.Minute
	}
	if cfg.RecheckAccess <= 0 {
		cfg.RecheckAccess = time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Syncer{cfg: cfg, wake: make(chan struct{}, 1), queue: map[string]*item{}}, nil
}

// Sync implements publish.SecretSyncer. It reads the mounted files and
// queues the Secrets; it does not call the API.
func (s *Syncer) Sync(_ context.Context, o publish.Outcome) {
	if len(o.SecretObjects) == 0 || o.SPC == nil {
		return
	}
	it := &item{pod: o.Pod, spcNS: o.SPC.Namespace, spcName: o.SPC.Name, provider: o.SPC.Provider, first: s.cfg.Now()}
	files, err := openVolume(o.TargetPath)
	if err != nil {
		s.fail(it, fmt.Errorf("SecretProviderClass %s/%s: secretObjects not synced: %w", it.spcNS, it.spcName, err))
		return
	}
	defer files.Close()
	for i, so := range o.SecretObjects {
		ref := entryRef{spcNamespace: o.SPC.Namespace, spcName: o.SPC.Name, index: i, secretName: so.SecretName}
		sec, err := desiredSecret(ref, o.Pod.Namespace, so, files)
		if err != nil {
			s.fail(it, err)
			continue
		}
		it.secrets = append(it.secrets, pendingSecret{ref: ref, secret: sec})
	}
	if len(it.secrets) == 0 {
		return
	}
	s.mu.Lock()
	s.queue[o.TargetPath] = it
	s.mu.Unlock()
	s.poke()
}

func (s *Syncer) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// fail logs err and reports it on the pod.
func (s *Syncer) fail(it *item, err error) {
	klog.ErrorS(err, "Secret sync failed", "pod", klog.KRef(it.pod.Namespace, it.pod.Name))
	s.cfg.Events.Event(it.pod, true, EventReason, err.Error())
}

// Pending returns how many volumes wait to be synced (tests).
func (s *Syncer) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue)
}

// Run checks access and then syncs queued volumes until ctx is done.
func (s *Syncer) Run(ctx context.Context) {
	s.checkAccess(ctx)
	for {
		next := s.process(ctx)
		var timer *time.Timer
		var fire <-chan time.Time
		if next > 0 {
			timer = time.NewTimer(next)
			fire = timer.C
		}
		select {
		case <-ctx.Done():
		case <-s.wake:
		case <-fire:
		}
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// process syncs every due volume once and returns how long until the next
// one is due (0: nothing queued).
func (s *Syncer) process(ctx context.Context) time.Duration {
	for {
		if ctx.Err() != nil {
			return 0
		}
		key, it, next := s.takeDue()
		if it == nil {
			return next
		}
		s.syncVolume(ctx, key, it)
	}
}

// takeDue removes and returns a due item, or the time until the earliest
// one is due.
func (s *Syncer) takeDue() (string, *item, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	var next time.Duration
	for k, it := range s.queue {
		if !it.due.After(now) {
			delete(s.queue, k)
			return k, it, 0
		}
		if d := it.due.Sub(now); next == 0 || d < next {
			next = d
		}
	}
	return "", nil, next
}

// requeue puts it back with backoff unless a newer outcome replaced it.
func (s *Syncer) requeue(key string, it *item) {
	it.attempts++
	d := min(200*time.Millisecond<<min(it.attempts-1, 16), s.cfg.MaxBackoff)
	it.due = s.cfg.Now().Add(d)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, newer := s.queue[key]; !newer {
		s.queue[key] = it
	}
}

func (s *Syncer) syncVolume(ctx context.Context, key string, it *item) {
	start := s.cfg.Now()
	podRef := klog.KRef(it.pod.Namespace, it.pod.Name)
	if ok, reason := s.mayWrite(ctx); !ok {
		names := make([]string, len(it.secrets))
		for i, p := range it.secrets {
			names[i] = p.secret.Name
		}
		s.cfg.Events.Event(it.pod, true, EventReason, fmt.Sprintf("%v (%s): Secrets %s of SecretProviderClass %s/%s not synced; bind ClusterRole %s to the driver's service account",
			ErrSyncDisabled, reason, strings.Join(names, ", "), it.spcNS, it.spcName, SecretSyncRole))
		return
	}
	owners, err := s.owners(ctx, it)
	if err != nil {
		s.retryOrDrop(key, it, err)
		return
	}
	if owners == nil {
		klog.V(2).InfoS("pod gone; Secret sync dropped", "pod", podRef)
		return
	}
	var failed []pendingSecret
	var lastErr error
	written := 0
	for _, p := range it.secrets {
		changed, err := s.upsert(ctx, it.spcName, p.secret, owners)
		switch {
		case err == nil:
			if changed {
				written++
				klog.V(2).InfoS("Secret synced", "secret", klog.KObj(p.secret), "pod", podRef, "spc", klog.KRef(it.spcNS, it.spcName))
			}
		case apierrors.IsForbidden(err):
			s.forbidden(err)
			s.cfg.Events.Event(it.pod, true, EventReason, fmt.Sprintf("%s: %v: bind ClusterRole %s to the driver's service account", p.ref, ErrSyncDisabled, SecretSyncRole))
		case errors.Is(err, ErrNotOwned):
			s.cfg.Metrics.SyncNotOwned(it.provider)
			klog.InfoS("Secret not synced: it exists and is not managed by this SecretProviderClass", "secret", klog.KObj(p.secret), "pod", podRef, "spc", klog.KRef(it.spcNS, it.spcName))
			s.cfg.Events.Event(it.pod, true, NotOwnedReason, fmt.Sprintf("%s: %v", p.ref, err))
		case errors.Is(err, errPermanent):
			s.fail(it, fmt.Errorf("%s: %w", p.ref, err))
		default:
			failed = append(failed, p)
			lastErr = fmt.Errorf("%s: %w", p.ref, err)
		}
	}
	s.cfg.Metrics.Sync(it.provider, written, s.cfg.Now().Sub(start))
	if len(failed) > 0 {
		it.secrets = failed
		s.retryOrDrop(key, it, lastErr)
	}
}

// retryOrDrop requeues a volume after a transient failure, reporting the
// first failure of an outcome and the final one.
func (s *Syncer) retryOrDrop(key string, it *item, err error) {
	podRef := klog.KRef(it.pod.Namespace, it.pod.Name)
	if s.cfg.Now().Sub(it.first) >= s.cfg.GiveUpAfter {
		s.fail(it, fmt.Errorf("gave up syncing Secrets of SecretProviderClass %s/%s after %s: %w", it.spcNS, it.spcName, s.cfg.GiveUpAfter, err))
		return
	}
	if !errors.Is(err, errOwnerNotReady) && !it.warned {
		it.warned = true
		s.fail(it, fmt.Errorf("%w (will retry)", err))
	} else {
		klog.V(3).InfoS("Secret sync will retry", "pod", podRef, "err", err.Error())
	}
	s.requeue(key, it)
}

// owners returns the owner references every synced Secret of the pod
// carries: the pod's own owners, else its SecretProviderClassPodStatus. It
// returns nil, nil when the pod no longer exists.
func (s *Syncer) owners(ctx context.Context, it *item) ([]metav1.OwnerReference, error) {
	pod := &metav1.PartialObjectMetadata{}
	err := kubeclient.Do(ctx, s.cfg.Core.Get().Namespace(it.pod.Namespace).Resource("pods").Name(it.pod.Name), nil, pod)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get pod %s/%s for the Secret owners: %w", it.pod.Namespace, it.pod.Name, err)
	}
	if it.pod.UID != "" && string(pod.UID) != it.pod.UID {
		return nil, nil // replaced by a pod of the same name
	}
	if len(pod.OwnerReferences) > 0 {
		out := make([]metav1.OwnerReference, 0, len(pod.OwnerReferences))
		for _, r := range pod.OwnerReferences {
			out = append(out, ownerRef(r.APIVersion, r.Kind, r.Name, r.UID))
		}
		return out, nil
	}
	name := podstatus.Name(it.pod.Name, it.pod.Namespace, it.spcName)
	st := &ssv1.SecretProviderClassPodStatus{}
	err = s.cfg.CRD.Get().Namespace(it.pod.Namespace).Resource("secretproviderclasspodstatuses").Name(name).Do(ctx).Into(st)
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("%w: SecretProviderClassPodStatus %s/%s", errOwnerNotReady, it.pod.Namespace, name)
	}
	if err != nil {
		return nil, fmt.Errorf("get SecretProviderClassPodStatus %s/%s for the Secret owner: %w", it.pod.Namespace, name, err)
	}
	return []metav1.OwnerReference{ownerRef(ssv1.SchemeGroupVersion.String(), "SecretProviderClassPodStatus", st.Name, st.UID)}, nil
}

// ownerRef is a plain owner: no controller flag (a Secret shared by two
// ReplicaSets has two owners, and only one may be the controller) and no
// blockOwnerDeletion (it would need finalizer rights on the owner).
func ownerRef(apiVersion, kind, name string, uid types.UID) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: apiVersion, Kind: kind, Name: name, UID: uid}
}

// upsert creates want or brings the existing Secret to it, adding owners
// and leaving other writers' labels, annotations and owners in place. It
// reports whether it wrote. An existing Secret the driver did not create
// for spcName (secretdata.MayWrite) is not written: ErrNotOwned.
func (s *Syncer) upsert(ctx context.Context, spcName string, want *kubeclient.Secret, owners []metav1.OwnerReference) (bool, error) {
	secrets := secretClient{c: s.cfg.Core, ns: want.Namespace}
	wrote := false
	retriable := func(err error) bool {
		if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
			klog.V(4).InfoS("Secret changed under the driver; retrying", "secret", klog.KObj(want))
			return true
		}
		return false
	}
	err := retry.OnError(wait.Backoff{Steps: 6, Duration: 50 * time.Millisecond, Factor: 2, Jitter: 0.2}, retriable, func() error {
		cur, err := secrets.get(ctx, want.Name)
		if apierrors.IsNotFound(err) {
			obj := want.DeepCopy()
			obj.OwnerReferences = owners
			if err := secrets.create(ctx, obj); err != nil {
				return classify(fmt.Errorf("create Secret %s/%s: %w", want.Namespace, want.Name, err))
			}
			wrote = true
			return nil
		}
		if err != nil {
			return fmt.Errorf("get Secret %s/%s: %w", want.Namespace, want.Name, err)
		}
		if ok, why := secretdata.MayWrite(cur, creator(spcName)); !ok {
			return fmt.Errorf("%w: Secret %s/%s exists and %s; the driver leaves it untouched. Rename secretName, or, if the Secret's owner wants the driver to manage it, set annotation %s: \"true\" on it",
				ErrNotOwned, want.Namespace, want.Name, why, secretdata.AllowAdoptionAnnotation)
		}
		if cur.Type != want.Type {
			return fmt.Errorf("%w: Secret %s/%s exists with type %q, want %q; a Secret's type cannot change: delete the Secret or fix the entry's type",
				errPermanent, want.Namespace, want.Name, cur.Type, want.Type)
		}
		upd := merged(cur, want, owners)
		if equality.Semantic.DeepEqual(cur, upd) {
			return nil
		}
		if cur.Immutable != nil && *cur.Immutable {
			return fmt.Errorf("%w: Secret %s/%s is immutable: delete it so the driver can recreate it", errPermanent, want.Namespace, want.Name)
		}
		if err := secrets.update(ctx, upd); err != nil {
			return classify(fmt.Errorf("update Secret %s/%s: %w", want.Namespace, want.Name, err))
		}
		wrote = true
		return nil
	})
	return wrote, err
}

// classify marks API errors a retry cannot fix.
func classify(err error) error {
	if apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) || apierrors.IsRequestEntityTooLargeError(err) {
		return fmt.Errorf("%w: %w", errPermanent, err)
	}
	return err
}

// merged returns cur with want's type, data, labels and annotations and
// every owner in owners; nothing else of cur changes, except that an
// adoption opt-in is consumed: once adopted, the Secret is this class's and
// no other class may take it over.
func merged(cur, want *kubeclient.Secret, owners []metav1.OwnerReference) *kubeclient.Secret {
	out := cur.DeepCopy()
	out.Data = want.Data
	out.StringData = nil
	out.Labels = addAll(out.Labels, want.Labels)
	out.Annotations = addAll(out.Annotations, want.Annotations)
	delete(out.Annotations, secretdata.AllowAdoptionAnnotation)
	for _, o := range owners {
		if !slices.ContainsFunc(out.OwnerReferences, func(r metav1.OwnerReference) bool { return r.UID == o.UID }) {
			out.OwnerReferences = append(out.OwnerReferences, o)
		}
	}
	return out
}

func addAll(dst, src map[string]string) map[string]string {
	if len(src) == 0 {
		return dst
	}
	if dst == nil {
		dst = make(map[string]string, len(src))
	}
	for k, v := range src {
		dst[k] = v
	}
	return dst
}

// checkAccess asks the API server whether the driver may get, create and
// update Secrets in every namespace, and logs a clear line when that
// changes.
func (s *Syncer) checkAccess(ctx context.Context) {
	var denied []string
	var reviewErr error
	for _, verb := range []string{"get", "create", "update"} { // what upsert uses
		r, err := s.review(ctx, kubeclient.ResourceAttributes{Verb: verb, Resource: "secrets"})
		if err != nil {
			reviewErr = err
			break
		}
		if !r.Status.Allowed {
			denied = append(denied, verb)
		}
	}
	s.accessMu.Lock()
	defer s.accessMu.Unlock()
	s.checked = s.cfg.Now()
	if reviewErr != nil {
		// Unknown: try the writes; a Forbidden will disable sync.
		klog.ErrorS(reviewErr, "could not check whether the driver may write Secrets; Secret sync will be attempted")
		return
	}
	ok := len(denied) == 0
	was := s.allowed
	s.allowed = &ok
	sort.Strings(denied)
	s.accessReason = "missing verbs " + strings.Join(denied, ", ") + " on secrets"
	switch {
	case !ok && (was == nil || *was):
		klog.InfoS("Secret sync is DISABLED: the driver's service account may not "+strings.Join(denied, ", ")+" Secrets; secretObjects will not be mirrored into Kubernetes Secrets. Bind ClusterRole "+SecretSyncRole+" (Helm: syncSecret.enabled=true) to enable it",
			"missingVerbs", denied)
	case ok && was != nil && !*was:
		klog.InfoS("Secret sync is enabled again: the driver may now write Secrets")
	case ok:
		klog.V(2).InfoS("Secret sync enabled: the driver may write Secrets")
	}
}

// mayWrite reports whether Secrets may be written, re-checking a denial
// at most every RecheckAccess.
func (s *Syncer) mayWrite(ctx context.Context) (bool, string) {
	s.accessMu.Lock()
	recheck := s.allowed != nil && !*s.allowed && s.cfg.Now().Sub(s.checked) >= s.cfg.RecheckAccess
	s.accessMu.Unlock()
	if recheck {
		s.checkAccess(ctx)
	}
	s.accessMu.Lock()
	defer s.accessMu.Unlock()
	if s.allowed != nil && !*s.allowed {
		return false, s.accessReason
	}
	return true, ""
}

// forbidden records a Forbidden answer: sync is off until a re-check says
// otherwise.
func (s *Syncer) forbidden(err error) {
	s.accessMu.Lock()
	defer s.accessMu.Unlock()
	was := s.allowed
	f := false
	s.allowed = &f
	s.checked = s.cfg.Now()
	s.accessReason = "the API server answered Forbidden"
	if was == nil || *was {
		klog.ErrorS(err, "Secret sync is DISABLED: writing a Secret was forbidden; secretObjects will not be mirrored into Kubernetes Secrets. Bind ClusterRole "+SecretSyncRole+" (Helm: syncSecret.enabled=true) to enable it")
	}
}

// review asks the API server whether the driver may do attrs.
func (s *Syncer) review(ctx context.Context, attrs kubeclient.ResourceAttributes) (*kubeclient.SelfSubjectAccessReview, error) {
	in := &kubeclient.SelfSubjectAccessReview{TypeMeta: metav1.TypeMeta{APIVersion: "authorization.k8s.io/v1", Kind: "SelfSubjectAccessReview"}}
	in.Spec.ResourceAttributes = &attrs
	out := &kubeclient.SelfSubjectAccessReview{}
	if err := kubeclient.Do(ctx, s.cfg.Core.Post().AbsPath("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"), in, out); err != nil {
		return nil, fmt.Errorf("SelfSubjectAccessReview: %w", err)
	}
	return out, nil
}

// secretClient is the Secret half of a core/v1 REST client in one namespace.
type secretClient struct {
	c  rest.Interface
	ns string
}

func (sc secretClient) get(ctx context.Context, name string) (*kubeclient.Secret, error) {
	out := &kubeclient.Secret{}
	if err := kubeclient.Do(ctx, sc.c.Get().Namespace(sc.ns).Resource("secrets").Name(name), nil, out); err != nil {
		return nil, err
	}
	return out, nil
}

func (sc secretClient) create(ctx context.Context, s *kubeclient.Secret) error {
	s.APIVersion, s.Kind = "v1", "Secret"
	return kubeclient.Do(ctx, sc.c.Post().Namespace(sc.ns).Resource("secrets"), s, nil)
}

func (sc secretClient) update(ctx context.Context, s *kubeclient.Secret) error {
	s.APIVersion, s.Kind = "v1", "Secret"
	return kubeclient.Do(ctx, sc.c.Put().Namespace(sc.ns).Resource("secrets").Name(s.Name), s, nil)
}
