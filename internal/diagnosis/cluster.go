package diagnosis

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	ssv1 "github.com/sscsi/secrets-store/driver/apis/v1"
	"github.com/sscsi/secrets-store/internal/pluginclient"
)

var providerName = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,30}$`)

// class diagnoses SecretProviderClass namespace/name and returns its provider
// ("" when the class is missing or names no usable provider).
func (s Source) class(ctx context.Context, namespace, name string, r *Report) (string, error) {
	u, err := s.Dynamic.Resource(spcResource).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		r.add(byID("class-not-found", fmt.Sprintf("SecretProviderClass %s/%s does not exist", namespace, name), ""))
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("get SecretProviderClass %s/%s: %w", namespace, name, err)
	}
	var c ssv1.SecretProviderClass
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &c); err != nil {
		return "", fmt.Errorf("decode SecretProviderClass %s/%s: %w", namespace, name, err)
	}
	p := string(c.Spec.Provider)
	switch {
	case p == "":
		r.add(byID("provider-unset", fmt.Sprintf("SecretProviderClass %s/%s: spec.provider is empty", namespace, name), ""))
		return "", nil
	case !providerName.MatchString(p):
		r.add(byID("provider-name-invalid", fmt.Sprintf("SecretProviderClass %s/%s: spec.provider %q", namespace, name, p), ""))
		return "", nil
	}
	if s.Providers != nil {
		s.providerSocket(ctx, p, namespace, name, r)
	}
	return p, nil
}

// providerSocket asks provider p on its socket (explain run on the node).
func (s Source) providerSocket(ctx context.Context, p, namespace, name string, r *Report) {
	vctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	v, err := s.Providers.Version(vctx, p)
	switch {
	case err == nil:
		r.check("provider/"+p+"/socket", true, "provider %q answers Version on its socket: %s %s", p, v.GetRuntimeName(), v.GetRuntimeVersion())
	case errors.Is(err, pluginclient.ErrProviderNotFound):
		r.check("provider/"+p+"/socket", false, "%v", err)
		r.add(byID("provider-not-found", fmt.Sprintf("provider %q of SecretProviderClass %s/%s has no socket on this node", p, namespace, name), err.Error()))
	default:
		r.check("provider/"+p+"/socket", false, "%v", err)
		r.add(byID("provider-unavailable", fmt.Sprintf("provider %q of SecretProviderClass %s/%s does not answer Version", p, namespace, name), err.Error()))
	}
}

// registration checks the CSIDriver and the node's CSINode ("" = every node).
func (s Source) registration(ctx context.Context, node string, r *Report) error {
	d, err := s.Kube.StorageV1().CSIDrivers().Get(ctx, DriverName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		r.add(byID("csidriver-missing", "CSIDriver "+DriverName+" does not exist", ""))
	case err != nil:
		return fmt.Errorf("get CSIDriver %s: %w", DriverName, err)
	case d.Spec.PodInfoOnMount == nil || !*d.Spec.PodInfoOnMount:
		r.add(byID("pod-info-off", "CSIDriver "+DriverName+" has podInfoOnMount unset or false", ""))
	}
	if node == "" {
		return nil
	}
	n, err := s.Kube.StorageV1().CSINodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("get CSINode %s: %w", node, err)
	}
	registered := false
	if err == nil {
		for _, dr := range n.Spec.Drivers {
			registered = registered || dr.Name == DriverName
		}
	}
	if !registered {
		r.add(byID("driver-not-registered", fmt.Sprintf("CSINode %s does not list %s: the driver is not running on that node or has not registered", node, DriverName), ""))
	}
	return nil
}

// statuses diagnoses a running pod without a mounted
// SecretProviderClassPodStatus for one of its classes.
func (s Source) statuses(ctx context.Context, pod *corev1.Pod, classes []string, r *Report) error {
	for _, c := range classes {
		name := pod.Name + "-" + pod.Namespace + "-" + c
		u, err := s.Dynamic.Resource(spcpsResource).Namespace(pod.Namespace).Get(ctx, name, metav1.GetOptions{})
		var st ssv1.SecretProviderClassPodStatus
		if err == nil {
			err = runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &st)
		}
		switch {
		case apierrors.IsNotFound(err) || (err == nil && !st.Status.Mounted):
			r.add(byID("status-missing", fmt.Sprintf("no mounted SecretProviderClassPodStatus %s for a running pod", name), ""))
		case err != nil:
			return fmt.Errorf("get SecretProviderClassPodStatus %s/%s: %w", pod.Namespace, name, err)
		}
	}
	return nil
}
