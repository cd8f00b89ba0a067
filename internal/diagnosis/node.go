package diagnosis

import (
	"context"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// providerPods checks the pods of the pod's providers on its node: a pod
// that is not Ready (its health probe fails, or it crashes) is diagnosed. A
// provider is recognised by its pod's name or a label value containing
// "provider-<p>", "<p>-provider" or "<p>-csi-provider" (our chart's, and the
// upstream providers' DaemonSets). No such pod is only a check: providers
// also run as host processes (--provider-dirs asks their sockets).
func (s Source) providerPods(ctx context.Context, node string, providers []string, r *Report) error {
	if len(providers) == 0 {
		return nil
	}
	pods, err := s.Kube.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + node})
	if err != nil {
		for _, p := range providers {
			r.check("provider/"+p, false, "cannot list the pods of node %s: %v", node, err)
		}
		return nil
	}
	for _, p := range providers {
		found := false
		for i := range pods.Items {
			pod := &pods.Items[i]
			if pod.Spec.NodeName != node || !isProviderPod(pod, p) {
				continue
			}
			found = true
			if ready(pod) {
				r.check("provider/"+p, true, "pod %s/%s on node %s is Ready (its health probe passes)", pod.Namespace, pod.Name, node)
				continue
			}
			state := podState(pod)
			r.check("provider/"+p, false, "pod %s/%s on node %s is not Ready: %s", pod.Namespace, pod.Name, node, state)
			r.add(byID("provider-not-ready", fmt.Sprintf("the pod of provider %q on node %s, %s/%s, is not Ready", p, node, pod.Namespace, pod.Name), state))
		}
		if !found {
			r.check("provider/"+p, false, "no pod of provider %q on node %s (a host process? --provider-dirs asks its socket)", p, node)
		}
	}
	return nil
}

func isProviderPod(pod *corev1.Pod, p string) bool {
	names := []string{pod.Name}
	for _, v := range pod.Labels {
		names = append(names, v)
	}
	for _, n := range names {
		n = strings.ToLower(n)
		for _, pat := range []string{"provider-" + p, p + "-provider", p + "-csi-provider"} {
			if strings.Contains(n, strings.ToLower(pat)) {
				return true
			}
		}
	}
	return false
}

func ready(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podState describes why a pod is not Ready: phase and each container's
// state, bounded.
func podState(pod *corev1.Pod) string {
	parts := []string{"phase " + string(pod.Status.Phase)}
	for _, c := range pod.Status.ContainerStatuses {
		s := fmt.Sprintf("container %s: ready=%t restarts=%d", c.Name, c.Ready, c.RestartCount)
		if w := c.State.Waiting; w != nil {
			s += " waiting (" + w.Reason + ")"
		}
		if t := c.LastTerminationState.Terminated; t != nil {
			s += fmt.Sprintf(" last exit %d (%s)", t.ExitCode, t.Reason)
		}
		parts = append(parts, s)
	}
	out := strings.Join(parts, "; ")
	if len(out) > 500 {
		out = out[:500] + "..."
	}
	return out
}

// driverMetrics reads the metrics of the driver on the pod's node and
// reports, for the pod's providers, mounts and failures by error_type. A pod
// that is not running and has no other explanation (its events may have
// expired: kube-apiserver keeps them an hour) is diagnosed from the
// node's mount failures for its providers.
func (s Source) driverMetrics(ctx context.Context, pod *corev1.Pod, providers []string, r *Report) {
	if s.Metrics == nil {
		return
	}
	text, from, err := s.Metrics.DriverMetrics(ctx, pod.Spec.NodeName)
	if err != nil {
		r.check("driver-metrics", false, "cannot read the metrics of the driver on node %s: %v", pod.Spec.NodeName, err)
		return
	}
	c, err := parseCounts(text)
	if err != nil {
		r.check("driver-metrics", false, "metrics of the driver on node %s (%s): %v", pod.Spec.NodeName, from, err)
		return
	}
	var details []string
	var mountErrs []string
	for _, p := range providers {
		pe, re := c.publishErrors[p], c.rotationErrors[p]
		details = append(details, fmt.Sprintf("provider %q: %g mounts, failed mounts %s, failed rotations %s",
			p, c.publishes[p], formatCounts(pe), formatCounts(re)))
		if len(pe) > 0 {
			mountErrs = append(mountErrs, fmt.Sprintf("node_publish_error_total{provider=%q} %s", p, formatCounts(pe)))
		}
	}
	r.check("driver-metrics", true, "driver on node %s (%s): %s", pod.Spec.NodeName, from, strings.Join(details, "; "))
	if pod.Status.Phase != corev1.PodRunning && len(r.Diagnoses) == 0 && len(mountErrs) > 0 {
		r.add(byID("driver-mount-errors", fmt.Sprintf("pod %s/%s is not running and the driver on node %s counts failed mounts for its provider", pod.Namespace, pod.Name, pod.Spec.NodeName),
			strings.Join(mountErrs, "; ")))
	}
}

// formatCounts is "none" or "3 (InvalidArgument 2, NotFound 1)".
func formatCounts(m map[string]float64) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	total := 0.0
	for k, v := range m {
		keys = append(keys, k)
		total += v
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %g", k, m[k]))
	}
	return fmt.Sprintf("%g (%s)", total, strings.Join(parts, ", "))
}
