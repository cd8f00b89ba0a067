// Package spc looks up SecretProviderClasses and turns one into the typed
// spec a mount needs. Nothing past this package handles SPC JSON.
package spc

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"

	ssv1 "github.com/sscsi/secrets-store/driver/apis/v1"
	"github.com/sscsi/secrets-store/internal/pluginclient"
)

// Errors returned by Resolve.
var (
	// ErrNotFound: no SecretProviderClass of that name in the pod's namespace.
	ErrNotFound = errors.New("SecretProviderClass not found")
	// ErrInvalid: the SecretProviderClass exists but cannot be used.
	ErrInvalid = errors.New("SecretProviderClass invalid")
	// ErrAPI: the Kubernetes API could not answer.
	ErrAPI = errors.New("the Kubernetes API is unavailable")
	// ErrUnreachable: the Kubernetes API did not answer at all (down,
	// timed out, throttled), as opposed to refusing the read. It is an
	// ErrAPI.
	ErrUnreachable = fmt.Errorf("%w", ErrAPI)
)

// Getter fetches a SecretProviderClass.
type Getter interface {
	Get(ctx context.Context, namespace, name string) (*ssv1.SecretProviderClass, error)
}

// Spec is what a mount needs from a SecretProviderClass.
type Spec struct {
	Namespace     string
	Name          string
	UID           string
	Provider      string
	Parameters    map[string]string
	SecretObjects []ssv1.SecretObject
}

// Resolve fetches namespace/name and validates it.
func Resolve(ctx context.Context, g Getter, namespace, name string) (*Spec, error) {
	obj, err := g.Get(ctx, namespace, name)
	switch {
	case apierrors.IsNotFound(err):
		return nil, fmt.Errorf("%w: %s/%s: create it in the pod's namespace %q (SecretProviderClasses are namespaced)", ErrNotFound, namespace, name, namespace)
	case apierrors.IsForbidden(err):
		return nil, fmt.Errorf("%w: reading SecretProviderClass %s/%s is forbidden: check the driver's RBAC: %v", ErrAPI, namespace, name, err)
	case err != nil:
		return nil, fmt.Errorf("%w: get SecretProviderClass %s/%s: %v", ErrUnreachable, namespace, name, err)
	}
	p := string(obj.Spec.Provider)
	if p == "" {
		return nil, fmt.Errorf("%w: %s/%s: spec.provider is empty (provider not set in %s/%s); set it to the provider's name (e.g. aws, vault)", ErrInvalid, namespace, name, namespace, name)
	}
	if err := pluginclient.ValidateName(p); err != nil {
		return nil, fmt.Errorf("%w: %s/%s: spec.provider: %v", ErrInvalid, namespace, name, err)
	}
	return &Spec{
		Namespace:     namespace,
		Name:          name,
		UID:           string(obj.UID),
		Provider:      p,
		Parameters:    obj.Spec.Parameters,
		SecretObjects: obj.Spec.SecretObjects,
	}, nil
}

// RESTGetter reads SecretProviderClasses on demand (no cluster-wide cache)
// through a REST client for secrets-store.csi.x-k8s.io/v1. Reads ask for
// resourceVersion "0": the API server answers from its watch cache instead
// of reading etcd, which is what keeps a rotation's read of the class cheap
// on a large cluster. A class the watch cache does not know yet (created a
// moment ago) is read again from etcd before the mount is refused.
type RESTGetter struct {
	Client rest.Interface
}

// Get implements Getter.
func (r RESTGetter) Get(ctx context.Context, namespace, name string) (*ssv1.SecretProviderClass, error) {
	out := &ssv1.SecretProviderClass{}
	req := r.Client.Get().Namespace(namespace).Resource("secretproviderclasses").Name(name)
	err := req.Param("resourceVersion", "0").Do(ctx).Into(out)
	if apierrors.IsNotFound(err) {
		out = &ssv1.SecretProviderClass{}
		err = r.Client.Get().Namespace(namespace).Resource("secretproviderclasses").Name(name).Do(ctx).Into(out)
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}
