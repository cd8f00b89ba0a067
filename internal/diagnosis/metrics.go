package diagnosis

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// MetricsReader returns the Prometheus text of the driver's metrics on a
// node and where it read them.
type MetricsReader interface {
	DriverMetrics(ctx context.Context, node string) (text, from string, err error)
}

// DefaultMetricsPort is the driver's default --metrics-addr port.
const DefaultMetricsPort = 8095

// maxMetricsBytes bounds the metrics page read.
const maxMetricsBytes = 4 << 20

// DriverPodSelector selects the driver's pods (the chart's and upstream's
// label).
const DriverPodSelector = "app=secrets-store-csi-driver"

// KubeMetrics reads the driver's metrics the way a user of the cluster can:
// through the API server's proxy to the driver's pod on the node (its
// container port named "metrics", else Port; needs get on pods/proxy), and
// when the node has no driver pod (a driver run as a host process), straight
// from the node's InternalIP at Port, as a Prometheus pod scrapes it.
type KubeMetrics struct {
	Kube kubernetes.Interface
	// Port is the metrics port when no pod names one (0: DefaultMetricsPort).
	Port int
	// HTTP is the client for the direct read (nil: one with a 10 s timeout).
	HTTP *http.Client
}

// DriverMetrics implements MetricsReader.
func (m KubeMetrics) DriverMetrics(ctx context.Context, node string) (string, string, error) {
	port := m.Port
	if port == 0 {
		port = DefaultMetricsPort
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	pods, err := m.Kube.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
		FieldSelector: "spec.nodeName=" + node, LabelSelector: DriverPodSelector})
	if err == nil {
		for _, p := range pods.Items {
			if p.Spec.NodeName != node || p.Status.Phase != corev1.PodRunning {
				continue
			}
			if mp := namedPort(&p, "metrics"); mp != 0 {
				port = mp
			}
			from := fmt.Sprintf("pod %s/%s port %d through the API server's proxy", p.Namespace, p.Name, port)
			rc, err := m.Kube.CoreV1().Pods(p.Namespace).ProxyGet("http", p.Name, strconv.Itoa(port), "/metrics", nil).Stream(ctx)
			if err != nil {
				return "", from, fmt.Errorf("GET %s: %w", from, err)
			}
			defer rc.Close()
			text, err := readBounded(rc)
			return text, from, err
		}
	}
	n, err := m.Kube.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return "", "", fmt.Errorf("no running driver pod on node %s, and its address is unknown: %w", node, err)
	}
	ip := ""
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP && ip == "" {
			ip = a.Address
		}
	}
	if ip == "" {
		return "", "", fmt.Errorf("no running driver pod on node %s, and the node has no InternalIP", node)
	}
	url := "http://" + net.JoinHostPort(ip, strconv.Itoa(port)) + "/metrics"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", url, fmt.Errorf("GET %s: %w", url, err)
	}
	c := m.HTTP
	if c == nil {
		c = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", url, fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", url, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	text, err := readBounded(resp.Body)
	return text, url, err
}

func namedPort(p *corev1.Pod, name string) int {
	for _, c := range p.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name == name {
				return int(cp.ContainerPort)
			}
		}
	}
	return 0
}

func readBounded(r io.Reader) (string, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxMetricsBytes+1))
	if err != nil {
		return "", fmt.Errorf("reading metrics: %w", err)
	}
	if len(b) > maxMetricsBytes {
		return "", fmt.Errorf("metrics page larger than %d bytes", maxMetricsBytes)
	}
	return string(b), nil
}

// counts are the driver's counters explain reads, by provider (and
// error_type).
type counts struct {
	publishes      map[string]float64
	publishErrors  map[string]map[string]float64
	rotationErrors map[string]map[string]float64
}

// parseCounts reads the driver's counters from its metrics text.
func parseCounts(text string) (counts, error) {
	c := counts{publishes: map[string]float64{}, publishErrors: map[string]map[string]float64{}, rotationErrors: map[string]map[string]float64{}}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		return c, fmt.Errorf("not Prometheus text: %w", err)
	}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			v := m.GetCounter().GetValue()
			prov := labels["provider"]
			switch name {
			case "node_publish_total":
				c.publishes[prov] += v
			case "node_publish_error_total":
				addCount(c.publishErrors, prov, labels["error_type"], v)
			case "rotation_reconcile_error_total":
				addCount(c.rotationErrors, prov, labels["error_type"], v)
			}
		}
	}
	return c, nil
}

func addCount(m map[string]map[string]float64, provider, errType string, v float64) {
	if v <= 0 {
		return
	}
	if m[provider] == nil {
		m[provider] = map[string]float64{}
	}
	m[provider][errType] += v
}
