// Package reconcile brings one SecretSync's Secret in line with its
// provider: it resolves the SecretProviderClass, mints a short-lived token
// for spec.serviceAccountName, calls the provider's Mount, builds the
// Secret in memory (the files never touch a disk) and writes it only if
// it is the SecretSync's own Secret and its content changed. The outcome
// becomes the SecretSync's conditions and, on failure, a Warning event
// naming what to fix.
//
// The controller has no read access to Secrets. Ownership is checked by
// the API server itself: updates are JSON patches whose first operations
// test the Secret's created-by mark and owner UID, so a Secret the
// controller did not create is never changed (unless its owner opted in to
// adoption), and an unchanged Secret is not written (the API server skips
// a patch that changes nothing).
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	ssv1 "github.com/sscsi/secrets-store/driver/apis/v1"
	syncv1 "github.com/sscsi/secrets-store/synccontroller/apis/v1alpha1"
)

// Provider calls a provider plugin's Mount (pluginclient.Client).
type Provider interface {
	Mount(ctx context.Context, provider string, req *v1alpha1.MountRequest) (*v1alpha1.MountResponse, error)
}

// SPCGetter reads SecretProviderClasses (an informer's lister).
type SPCGetter interface {
	Get(namespace, name string) (*ssv1.SecretProviderClass, error)
}

// Metrics records the outcome of each sync.
type Metrics interface {
	Sync(provider, outcome, reason string, d time.Duration)
}

// Config configures a Reconciler.
type Config struct {
	// Core writes Secrets, mints tokens.
	Core kubernetes.Interface
	// SecretSyncs is a REST client for secret-sync.x-k8s.io/v1alpha1
	// (status writes).
	SecretSyncs rest.Interface
	SPCs        SPCGetter
	Provider    Provider
	Events      record.EventRecorder
	Metrics     Metrics
	// Audiences of the tokens handed to the provider; empty means one
	// token for the API server's own audience.
	Audiences []string
	// TokenTTL is the lifetime asked for (the API server's minimum, 10
	// minutes, by default). Tokens are not bound to an object: TokenRequest
	// binds only to a Pod running as that service account in its namespace
	// (there is none), a Secret (the target may not exist yet) or a Node.
	TokenTTL time.Duration
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Reconciler syncs SecretSyncs. It is safe for concurrent use on
// different SecretSyncs.
type Reconciler struct {
	cfg Config
}

// New validates cfg.
func New(cfg Config) (*Reconciler, error) {
	if cfg.Core == nil || cfg.SecretSyncs == nil || cfg.SPCs == nil || cfg.Provider == nil || cfg.Events == nil || cfg.Metrics == nil {
		return nil, errors.New("reconcile: Core, SecretSyncs, SPCs, Provider, Events and Metrics are required")
	}
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = 10 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Reconciler{cfg: cfg}, nil
}

// failure is a sync error with the condition reason it becomes.
type failure struct {
	reason string
	err    error
}

func (f *failure) Error() string { return f.err.Error() }
func (f *failure) Unwrap() error { return f.err }

func fail(reason string, format string, args ...any) *failure {
	return &failure{reason: reason, err: fmt.Errorf(format, args...)}
}

// Reason returns the condition reason of a Sync error.
func Reason(err error) string {
	var f *failure
	if errors.As(err, &f) {
		return f.reason
	}
	return syncv1.ReasonUnknown
}

// Sync brings ss's Secret in line with its provider and records the
// outcome in ss's status. A returned error means: retry with backoff.
func (r *Reconciler) Sync(ctx context.Context, ss *syncv1.SecretSync) error {
	start := r.cfg.Now()
	provider := ""
	res, err := r.sync(ctx, ss, &provider)
	outcome := "unchanged"
	switch {
	case err != nil:
		outcome = "error"
	case res.changed:
		outcome = "written"
	}
	r.cfg.Metrics.Sync(provider, outcome, reasonOrEmpty(err), r.cfg.Now().Sub(start))
	if serr := r.record(ctx, ss, res, err); serr != nil {
		if err == nil {
			return serr
		}
		klog.ErrorS(serr, "SecretSync status not written", "secretSync", klog.KObj(ss))
	}
	return err
}

func reasonOrEmpty(err error) string {
	if err == nil {
		return ""
	}
	return Reason(err)
}

// result is what a successful sync did.
type result struct {
	hash    string
	created bool // the Secret was created by this sync
	changed bool // the Secret's content was written
}

func (r *Reconciler) sync(ctx context.Context, ss *syncv1.SecretSync, provider *string) (result, error) {
	spc, err := r.cfg.SPCs.Get(ss.Namespace, ss.Spec.SecretProviderClassName)
	if apierrors.IsNotFound(err) {
		return result{}, fail(syncv1.ReasonControllerSPCError, "SecretProviderClass %s/%s (spec.secretProviderClassName) not found", ss.Namespace, ss.Spec.SecretProviderClassName)
	}
	if err != nil {
		return result{}, fail(syncv1.ReasonControllerSPCError, "read SecretProviderClass %s/%s: %v", ss.Namespace, ss.Spec.SecretProviderClassName, err)
	}
	*provider = string(spc.Spec.Provider)
	tokens, err := r.tokens(ctx, ss)
	if err != nil {
		return result{}, err
	}
	files, err := r.fetch(ctx, ss, spc, tokens)
	if err != nil {
		return result{}, err
	}
	want, err := desired(ss, files)
	clear(files)
	if err != nil {
		return result{}, err
	}
	hash := syncHash(ss, spc, want)
	created, changed, err := r.write(ctx, ss, want)
	if err != nil {
		return result{}, err
	}
	if !created && ss.Status.SyncHash != hash {
		changed = true // the API server may have skipped an identical patch, but inputs changed
	}
	return result{hash: hash, created: created, changed: created || changed}, nil
}

// record writes the conditions, hash and time of a sync into ss's status
// when they differ from what is there, and emits an event on failure or
// change.
func (r *Reconciler) record(ctx context.Context, ss *syncv1.SecretSync, res result, syncErr error) error {
	now := metav1.NewTime(r.cfg.Now())
	st := ss.Status.DeepCopy()
	everCreated := meta.IsStatusConditionTrue(st.Conditions, syncv1.ConditionTypeCreate)
	switch {
	case syncErr != nil:
		typ := syncv1.ConditionTypeUpdate
		if !everCreated {
			typ = syncv1.ConditionTypeCreate
		}
		reason := Reason(syncErr)
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: typ, Status: metav1.ConditionFalse, Reason: reason,
			Message: truncate(syncErr.Error()), ObservedGeneration: ss.Generation})
		r.cfg.Events.Event(ss, corev1.EventTypeWarning, reason, truncate(syncErr.Error()))
		klog.InfoS("SecretSync failed", "secretSync", klog.KObj(ss), "reason", reason, "err", syncErr.Error())
	default:
		if res.created || !everCreated {
			meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: syncv1.ConditionTypeCreate, Status: metav1.ConditionTrue,
				Reason: syncv1.ReasonCreateSucceeded, Message: "The secret was created successfully.", ObservedGeneration: ss.Generation})
		}
		upd := metav1.Condition{Type: syncv1.ConditionTypeUpdate, Status: metav1.ConditionTrue, Reason: syncv1.ReasonNoValueChange,
			Message: "The secret is up to date: no value change was detected.", ObservedGeneration: ss.Generation}
		if res.changed {
			upd.Reason = syncv1.ReasonValueChangeOrForce
			upd.Message = "The secret was updated successfully: a value change or a force update was detected."
			st.LastSuccessfulSyncTime = &now
			r.cfg.Events.Event(ss, corev1.EventTypeNormal, "SecretSynced", "Secret "+ss.Name+" written")
			klog.V(2).InfoS("Secret written", "secretSync", klog.KObj(ss))
		}
		if st.LastSuccessfulSyncTime == nil {
			st.LastSuccessfulSyncTime = &now
		}
		meta.SetStatusCondition(&st.Conditions, upd)
		st.SyncHash = res.hash
	}
	if statusEqual(&ss.Status, st) {
		return nil
	}
	out := ss.DeepCopy()
	out.Status = *st
	return r.cfg.SecretSyncs.Put().Namespace(ss.Namespace).Resource("secretsyncs").Name(ss.Name).SubResource("status").
		Body(out).Do(ctx).Error()
}

// statusEqual compares statuses ignoring condition transition times
// (SetStatusCondition keeps them when nothing else changes).
func statusEqual(a, b *syncv1.SecretSyncStatus) bool {
	if a.SyncHash != b.SyncHash || len(a.Conditions) != len(b.Conditions) {
		return false
	}
	if (a.LastSuccessfulSyncTime == nil) != (b.LastSuccessfulSyncTime == nil) ||
		(a.LastSuccessfulSyncTime != nil && !a.LastSuccessfulSyncTime.Equal(b.LastSuccessfulSyncTime)) {
		return false
	}
	for _, c := range a.Conditions {
		d := meta.FindStatusCondition(b.Conditions, c.Type)
		if d == nil || d.Status != c.Status || d.Reason != c.Reason || d.Message != c.Message || d.ObservedGeneration != c.ObservedGeneration {
			return false
		}
	}
	return true
}

// truncate bounds a condition message (the CRD allows 32768 bytes).
func truncate(s string) string {
	const limit = 4096
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "..."
}
