// Package synccontroller is the SecretSync controller's composition root:
// Config, Validate and Run. It keeps Kubernetes Secrets in sync with
// external secret stores for SecretSync objects (secret-sync.x-k8s.io),
// calling the same provider plugins as the CSI driver over their unix
// sockets, with no pod mounting anything.
//
// One replica leads (a Lease); it alone watches SecretSyncs and
// SecretProviderClasses and writes. Health and metrics are served by every
// replica.
package synccontroller

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	ssv1 "github.com/sscsi/secrets-store/driver/apis/v1"
	"github.com/sscsi/secrets-store/internal/kubeapi"
	"github.com/sscsi/secrets-store/internal/pluginclient"
	"github.com/sscsi/secrets-store/internal/serve"
	syncv1 "github.com/sscsi/secrets-store/synccontroller/apis/v1alpha1"
	"github.com/sscsi/secrets-store/synccontroller/internal/metrics"
	"github.com/sscsi/secrets-store/synccontroller/internal/reconcile"
)

// Config is every controller setting; cmd/secrets-store-sync-controller
// binds flags into it.
type Config struct {
	// Kubeconfig is a kubeconfig path; empty means in-cluster.
	Kubeconfig string
	// RESTConfig, when set, is used instead of Kubeconfig (tests).
	RESTConfig *rest.Config
	QPS        float32
	Burst      int

	// LeaderElect turns leader election on; LeaderElectionNamespace holds
	// the Lease LeaderElectionID.
	LeaderElect             bool
	LeaderElectionNamespace string
	LeaderElectionID        string

	// ServingAddress serves /healthz, /readyz and /metrics ("" = off).
	ServingAddress string

	// ProviderDirs are searched for <provider>.sock.
	ProviderDirs   []string
	MaxCallRecvMsg int

	// TokenRequestAudiences are the audiences of the tokens passed to
	// providers (e.g. sts.amazonaws.com for AWS IRSA).
	TokenRequestAudiences []string
	// RotationPollInterval is how often each SecretSync is re-fetched
	// (0 = never; only on change). Jittered by ±10%.
	RotationPollInterval time.Duration
	// ControllerName: SecretSyncs whose spec.secretSyncControllerName is
	// set and differs are left to another controller.
	ControllerName string
	// Workers is how many SecretSyncs sync at once.
	Workers int
}

// Validate fills defaults and checks cfg.
func (c *Config) Validate() error {
	if len(c.ProviderDirs) == 0 {
		return errors.New("--provider-volume: at least one provider directory is required")
	}
	if c.RotationPollInterval < 0 {
		return errors.New("--rotation-poll-interval must not be negative")
	}
	if c.LeaderElect && c.LeaderElectionNamespace == "" {
		return errors.New("--leader-election-namespace is required with leader election")
	}
	if c.LeaderElectionID == "" {
		c.LeaderElectionID = "secrets-store-sync-controller"
	}
	if c.Workers <= 0 {
		c.Workers = 4
	}
	if c.QPS <= 0 {
		c.QPS = 20
	}
	if c.Burst <= 0 {
		c.Burst = 40
	}
	if c.MaxCallRecvMsg <= 0 {
		c.MaxCallRecvMsg = 4 << 20
	}
	return nil
}

// Scheme knows the core types, SecretSync and SecretProviderClass.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	_ = syncv1.AddToScheme(s)
	_ = ssv1.AddToScheme(s)
	return s
}

func restFor(base *rest.Config, gv schema.GroupVersion, s *runtime.Scheme) (*rest.RESTClient, error) {
	rc := rest.CopyConfig(base)
	rc.GroupVersion = &gv
	rc.APIPath = "/apis"
	rc.NegotiatedSerializer = serializer.NewCodecFactory(s).WithoutConversion()
	rc.ContentType = runtime.ContentTypeJSON
	return rest.RESTClientFor(rc)
}

// clients are the API and provider clients of one controller.
type clients struct {
	core    kubernetes.Interface
	ssREST  rest.Interface
	spcREST rest.Interface
	plugins *pluginclient.Client
	scheme  *runtime.Scheme
}

// newClients connects to the API server (cfg.RESTConfig or the kubeconfig,
// through kubeapi.Load) and to the provider socket directories.
func newClients(cfg Config) (*clients, error) {
	rc := cfg.RESTConfig
	if rc == nil {
		var err error
		if rc, err = kubeapi.Load(cfg.Kubeconfig); err != nil {
			return nil, err
		}
	}
	rc = rest.CopyConfig(rc)
	rc.QPS, rc.Burst = cfg.QPS, cfg.Burst
	rc.UserAgent = "secrets-store-sync-controller"
	cl := &clients{scheme: Scheme()}
	var err error
	if cl.core, err = kubernetes.NewForConfig(rc); err != nil {
		return nil, err
	}
	if cl.ssREST, err = restFor(rc, syncv1.SchemeGroupVersion, cl.scheme); err != nil {
		return nil, err
	}
	if cl.spcREST, err = restFor(rc, ssv1.SchemeGroupVersion, cl.scheme); err != nil {
		return nil, err
	}
	if cl.plugins, err = pluginclient.New(pluginclient.Config{Dirs: cfg.ProviderDirs, MaxRecvMsgSize: cfg.MaxCallRecvMsg}); err != nil {
		return nil, err
	}
	return cl, nil
}

// Run runs the controller until ctx ends or leadership is lost.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	cl, err := newClients(cfg)
	if err != nil {
		return err
	}
	defer cl.plugins.Close()

	mx := metrics.New()
	c := &controller{cfg: cfg, ready: make(chan struct{})}
	electionHealth := leaderelection.NewLeaderHealthzAdaptor(20 * time.Second)

	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if cfg.ServingAddress != "" {
		handler := c.handler(mx, electionHealth)
		wg.Go(func() {
			if err := serve.HTTP(ctx, cfg.ServingAddress, handler); err != nil {
				klog.ErrorS(err, "health and metrics server stopped")
				cancel()
			}
		})
	}

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cl.core.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	recorder := broadcaster.NewRecorder(cl.scheme, corev1.EventSource{Component: "secrets-store-sync-controller"})

	lead := func(ctx context.Context) { c.run(ctx, cl, recorder, mx) }
	if !cfg.LeaderElect {
		lead(ctx)
		return nil
	}
	return runElected(ctx, cfg, cl.core, recorder, electionHealth, lead)
}

// handler serves /metrics, /healthz (the leader election watchdog) and
// /readyz.
func (c *controller) handler(mx *metrics.Recorder, electionHealth *leaderelection.HealthzAdaptor) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", mx.Handler())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := electionHealth.Check(r); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := c.readyErr(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	return mux
}

// runElected runs lead while this replica holds the Lease; it returns an
// error when leadership is lost before ctx ends.
func runElected(ctx context.Context, cfg Config, core kubernetes.Interface, recorder record.EventRecorder,
	electionHealth *leaderelection.HealthzAdaptor, lead func(context.Context)) error {
	id, _ := os.Hostname()
	id += "_" + string(uuid.NewUUID())
	lostLead := make(chan struct{})
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Namespace: cfg.LeaderElectionNamespace, Name: cfg.LeaderElectionID},
			Client:     core.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: id, EventRecorder: recorder},
		},
		LeaseDuration:   15 * time.Second,
		RenewDeadline:   10 * time.Second,
		RetryPeriod:     2 * time.Second,
		ReleaseOnCancel: true,
		WatchDog:        electionHealth,
		Name:            cfg.LeaderElectionID,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: lead,
			OnStoppedLeading: func() { close(lostLead) },
		},
	})
	if err != nil {
		return fmt.Errorf("leader election: %w", err)
	}
	klog.InfoS("waiting for leadership", "lease", klog.KRef(cfg.LeaderElectionNamespace, cfg.LeaderElectionID), "identity", id)
	le.Run(ctx)
	select {
	case <-lostLead:
		if ctx.Err() == nil {
			return errors.New("leadership lost")
		}
	default:
	}
	return nil
}

// controller is the leader's state.
type controller struct {
	cfg   Config
	ready chan struct{} // closed once caches are synced

	mu   sync.Mutex // guards next
	next map[string]time.Time
}

func (c *controller) readyErr() error {
	if !c.cfg.LeaderElect {
		select {
		case <-c.ready:
			return nil
		default:
			return errors.New("caches not synced")
		}
	}
	return nil // a standby is ready to take over; the leader's caches sync within seconds
}

const spcIndex = "spc"

// informers watches SecretSyncs (indexed by their SecretProviderClass) and
// SecretProviderClasses.
type informers struct {
	ss, spc cache.SharedIndexInformer
}

func newInformers(cl *clients) informers {
	return informers{
		ss: cache.NewSharedIndexInformer(cache.NewListWatchFromClient(cl.ssREST, "secretsyncs", metav1.NamespaceAll, fields.Everything()),
			&syncv1.SecretSync{}, 0, cache.Indexers{
				cache.NamespaceIndex: cache.MetaNamespaceIndexFunc,
				spcIndex: func(obj any) ([]string, error) {
					ss, ok := obj.(*syncv1.SecretSync)
					if !ok {
						return nil, nil
					}
					return []string{ss.Namespace + "/" + ss.Spec.SecretProviderClassName}, nil
				},
			}),
		spc: cache.NewSharedIndexInformer(cache.NewListWatchFromClient(cl.spcREST, "secretproviderclasses", metav1.NamespaceAll, fields.Everything()),
			&ssv1.SecretProviderClass{}, 0, cache.Indexers{}),
	}
}

// watch queues a SecretSync when it is created, when its spec changes
// (forceSynchronization included; not on our status writes) and when its
// SecretProviderClass's spec changes; a deleted SecretSync leaves the
// refresh schedule.
func (c *controller) watch(inf informers, queue workqueue.TypedRateLimitingInterface[string]) {
	enqueue := func(obj any) {
		if k, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			queue.Add(k)
		}
	}
	_, _ = inf.ss.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue,
		UpdateFunc: func(oldObj, newObj any) {
			o, n := oldObj.(*syncv1.SecretSync), newObj.(*syncv1.SecretSync)
			if o.Generation != n.Generation {
				k, _ := cache.MetaNamespaceKeyFunc(n)
				queue.Forget(k)
				queue.Add(k)
			}
		},
		DeleteFunc: func(obj any) {
			k, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
			if err == nil {
				queue.Forget(k)
				c.mu.Lock()
				delete(c.next, k)
				c.mu.Unlock()
			}
		},
	})
	spcChanged := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		spc, ok := obj.(*ssv1.SecretProviderClass)
		if !ok {
			return
		}
		objs, _ := inf.ss.GetIndexer().ByIndex(spcIndex, spc.Namespace+"/"+spc.Name)
		for _, o := range objs {
			enqueue(o)
		}
	}
	_, _ = inf.spc.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: spcChanged,
		UpdateFunc: func(oldObj, newObj any) {
			if oldObj.(*ssv1.SecretProviderClass).Generation != newObj.(*ssv1.SecretProviderClass).Generation {
				spcChanged(newObj)
			}
		},
		DeleteFunc: spcChanged,
	})
}

// run is the leader's loop: informers, workers and the refresh schedule,
// until ctx ends.
func (c *controller) run(ctx context.Context, cl *clients, recorder record.EventRecorder, mx *metrics.Recorder) {
	inf := newInformers(cl)
	queue := workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](time.Second, 5*time.Minute),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "secretsync"})
	defer queue.ShutDown()
	c.next = map[string]time.Time{}
	c.watch(inf, queue)

	rec, err := reconcile.New(reconcile.Config{
		Core: cl.core, SecretSyncs: cl.ssREST, SPCs: spcGetter{inf.spc.GetIndexer()}, Provider: cl.plugins,
		Events: recorder, Metrics: mx, Audiences: c.cfg.TokenRequestAudiences,
	})
	if err != nil {
		klog.ErrorS(err, "reconciler")
		return
	}

	go inf.ss.Run(ctx.Done())
	go inf.spc.Run(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.ss.HasSynced, inf.spc.HasSynced) {
		return
	}
	close(c.ready)
	klog.InfoS("SecretSync controller started", "workers", c.cfg.Workers, "rotationPollInterval", c.cfg.RotationPollInterval, "audiences", c.cfg.TokenRequestAudiences)

	var wg sync.WaitGroup
	for range c.cfg.Workers {
		wg.Go(func() {
			for c.work(ctx, queue, inf.ss.GetIndexer(), rec) {
			}
		})
	}
	if c.cfg.RotationPollInterval > 0 {
		wg.Go(func() { c.poll(ctx, queue) })
	}
	<-ctx.Done()
	queue.ShutDown()
	wg.Wait()
}

// poll enqueues every SecretSync whose refresh is due.
func (c *controller) poll(ctx context.Context, queue workqueue.TypedRateLimitingInterface[string]) {
	tick := min(max(c.cfg.RotationPollInterval/10, 500*time.Millisecond), 30*time.Second)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			c.mu.Lock()
			for k, due := range c.next {
				if !now.Before(due) {
					delete(c.next, k)
					queue.Add(k)
				}
			}
			c.mu.Unlock()
		}
	}
}

func (c *controller) work(ctx context.Context, queue workqueue.TypedRateLimitingInterface[string], idx cache.Indexer, rec *reconcile.Reconciler) bool {
	key, quit := queue.Get()
	if quit {
		return false
	}
	defer queue.Done(key)
	obj, exists, err := idx.GetByKey(key)
	if err != nil || !exists {
		queue.Forget(key)
		return true
	}
	ss := obj.(*syncv1.SecretSync)
	if n := ss.Spec.SecretSyncControllerName; n != "" && n != c.cfg.ControllerName {
		queue.Forget(key)
		return true
	}
	if err := rec.Sync(ctx, ss.DeepCopy()); err != nil {
		if !apierrors.IsConflict(err) {
			klog.V(2).InfoS("SecretSync sync failed; retrying with backoff", "secretSync", klog.KObj(ss), "reason", reconcile.Reason(err))
		}
		queue.AddRateLimited(key)
		return true
	}
	queue.Forget(key)
	if p := c.cfg.RotationPollInterval; p > 0 {
		j := time.Duration((rand.Float64()*0.2 - 0.1) * float64(p))
		c.mu.Lock()
		c.next[key] = time.Now().Add(p + j)
		c.mu.Unlock()
	}
	return true
}

// spcGetter reads SecretProviderClasses from the informer's cache.
type spcGetter struct{ idx cache.Indexer }

func (g spcGetter) Get(namespace, name string) (*ssv1.SecretProviderClass, error) {
	obj, ok, err := g.idx.GetByKey(namespace + "/" + name)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, apierrors.NewNotFound(ssv1.Resource("secretproviderclasses"), name)
	}
	return obj.(*ssv1.SecretProviderClass), nil
}
