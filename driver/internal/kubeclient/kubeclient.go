// Package kubeclient builds the Kubernetes API clients the driver uses:
// plain REST clients for core/v1 and for the secrets-store CRDs, with the
// client-side rate limits set from flags, and the few core/v1 objects the
// driver handles as JSON structs (objects.go). The configuration comes from
// internal/kubeapi, which keeps object bodies out of the logs. Neither the
// generated clientset (its scheme registers every API group: about 10 MiB
// of resident memory per node) nor k8s.io/api/core/v1 (about 2 MB of code)
// is linked.
package kubeclient

import (
	"errors"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"

	ssv1 "github.com/sscsi/secrets-store/driver/apis/v1"
	"github.com/sscsi/secrets-store/internal/kubeapi"
)

// Config selects the API server and the client-side rate limit.
type Config struct {
	// Kubeconfig is a kubeconfig path; empty means in-cluster.
	Kubeconfig string
	// QPS and Burst bound requests per second from this process.
	QPS   float32
	Burst int
	// UserAgent identifies the driver in API server logs.
	UserAgent string
	// Timeout bounds each request (default 10s).
	Timeout time.Duration
}

// Clients are the API clients of one process.
type Clients struct {
	Config *rest.Config
	// CoreREST is a REST client for the core/v1 group whose scheme knows
	// only the meta/v1 kinds (Status for errors): objects travel as JSON
	// through Do.
	CoreREST rest.Interface
	// CRD is a REST client for group secrets-store.csi.x-k8s.io/v1.
	CRD rest.Interface
}

// coreV1 is the core group's version v1.
var coreV1 = schema.GroupVersion{Version: "v1"}

// CoreScheme knows the meta/v1 kinds of the core/v1 group (Status, list
// options), not its objects.
func CoreScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	metav1.AddToGroupVersion(s, coreV1)
	return s
}

// Scheme knows the core types and the secrets-store v1 types.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	_ = ssv1.AddToScheme(s)
	return s
}

// New builds the clients.
func New(cfg Config) (*Clients, error) {
	if cfg.QPS <= 0 || cfg.Burst <= 0 {
		return nil, errors.New("kubeclient: QPS and Burst must be positive")
	}
	rc, err := kubeapi.Load(cfg.Kubeconfig)
	if err != nil {
		return nil, err
	}
	return NewForConfig(rc, cfg)
}

// NewForConfig builds the clients from an existing rest.Config (tests).
func NewForConfig(base *rest.Config, cfg Config) (*Clients, error) {
	rc := rest.CopyConfig(base)
	rc.QPS, rc.Burst = cfg.QPS, cfg.Burst
	if cfg.UserAgent != "" {
		rc.UserAgent = cfg.UserAgent
	}
	rc.Timeout = cfg.Timeout
	if rc.Timeout == 0 {
		rc.Timeout = 10 * time.Second
	}
	crdCfg := rest.CopyConfig(rc)
	crdCfg.GroupVersion = &ssv1.SchemeGroupVersion
	crdCfg.APIPath = "/apis"
	crdCfg.NegotiatedSerializer = serializer.NewCodecFactory(Scheme()).WithoutConversion()
	crd, err := rest.RESTClientFor(crdCfg)
	if err != nil {
		return nil, fmt.Errorf("secrets-store CRD client: %w", err)
	}
	coreCfg := rest.CopyConfig(rc)
	coreCfg.GroupVersion = &coreV1
	coreCfg.APIPath = "/api"
	coreCfg.NegotiatedSerializer = serializer.NewCodecFactory(CoreScheme()).WithoutConversion()
	coreREST, err := rest.RESTClientFor(coreCfg)
	if err != nil {
		return nil, fmt.Errorf("core REST client: %w", err)
	}
	return &Clients{Config: rc, CoreREST: coreREST, CRD: crd}, nil
}
