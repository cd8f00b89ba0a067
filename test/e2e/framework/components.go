package framework

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Local cluster layout (test/cluster/lib.sh).
const (
	ClusterDir = "/var/lib/sscsi-cluster"
	DriverSock = KubeletDir + "/plugins/csi-secrets-store/csi.sock"
)

// Component is a process of the local node that a test may kill and bring back.
type Component struct {
	// Name is the PID file's name in test/cluster (host mode).
	Name string
	// Selectors find its pod when it runs as a DaemonSet (daemonset and chart modes); empty for
	// components that always run as host processes.
	Selectors []string
}

// Components the suite restarts.
var (
	Driver       = Component{Name: "secrets-store-csi-driver", Selectors: []string{"app=secrets-store-csi-driver", "app.kubernetes.io/component=driver"}}
	FakeProvider = Component{Name: "provider-fake", Selectors: []string{"app=provider-fake", "app.kubernetes.io/name=secrets-store-provider-fake"}}
	APIServer    = Component{Name: "kube-apiserver"}
)

// DriverMode is how test/cluster/up.sh runs the driver and the fake provider ($SSCSI_DRIVER_MODE).
func DriverMode() string {
	if m := os.Getenv("SSCSI_DRIVER_MODE"); m != "" {
		return m
	}
	return "host"
}

func (c Component) asPod() bool { return len(c.Selectors) > 0 && DriverMode() != "host" }

// hostProcess is a component started by test/cluster/lib.sh's start_bg.
type hostProcess struct {
	pid  int
	exe  string
	args []string
}

func (c Component) pidFile() string { return filepath.Join(ClusterDir, "pids", c.Name+".pid") }

func (c Component) hostProcess() (hostProcess, error) {
	raw, err := os.ReadFile(c.pidFile())
	if err != nil {
		return hostProcess{}, fmt.Errorf("%s is not running as a host process: %w", c.Name, err)
	}
	f := strings.Fields(string(raw))
	if len(f) != 2 {
		return hostProcess{}, fmt.Errorf("%s: malformed %s", c.Name, c.pidFile())
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil {
		return hostProcess{}, fmt.Errorf("%s: malformed %s", c.Name, c.pidFile())
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return hostProcess{}, fmt.Errorf("%s (pid %d) is not running: %w", c.Name, pid, err)
	}
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	return hostProcess{pid: pid, exe: f[1], args: args[1:]}, nil
}

// Stop ends the component with sig and waits until it is gone. It returns what Start needs to
// bring the same component back.
func (c Component) Stop(t testing.TB, sig syscall.Signal) func(testing.TB) {
	t.Helper()
	if c.asPod() {
		t.Fatalf("Stop of %s: only host processes can stay stopped; use Kill for pods", c.Name)
	}
	p, err := c.hostProcess()
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(p.pid, sig); err != nil {
		t.Fatalf("signal %s (pid %d): %v", c.Name, p.pid, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		// readlink fails once the process has exited, even while it is an unreaped zombie.
		if _, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", p.pid)); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s (pid %d) still running 30s after %v", c.Name, p.pid, sig)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("%s (pid %d) stopped with %v", c.Name, p.pid, sig)
	return func(t testing.TB) { t.Helper(); c.start(t, p) }
}

// start runs the process again with the same command line, log and PID file, as start_bg does.
func (c Component) start(t testing.TB, p hostProcess) {
	t.Helper()
	logf, err := os.OpenFile(filepath.Join(ClusterDir, "logs", c.Name+".log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(p.exe, p.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("restart %s: %v", c.Name, err)
	}
	pid := cmd.Process.Pid
	if err := os.WriteFile(c.pidFile(), fmt.Appendf(nil, "%d %s\n", pid, p.exe), 0o644); err != nil {
		t.Fatal(err)
	}
	// The process outlives the test binary (the cluster keeps it); never wait for it here.
	_ = cmd.Process.Release()
	t.Logf("%s restarted (pid %d)", c.Name, pid)
}

// Kill ends the component with SIGKILL and brings it back, as a crash (a panic, the OOM killer)
// does: a host process is restarted with the same command line; in a DaemonSet pod the
// container's process is killed on the node and kubelet restarts the container in the same pod.
// Kill returns once the new process runs (the pod is Ready again).
func (f *Framework) Kill(t testing.TB, c Component) {
	t.Helper()
	if !c.asPod() {
		c.Stop(t, syscall.SIGKILL)(t)
		return
	}
	pod := f.componentPod(t, c)
	restarts := restartCount(&pod)
	pids, err := containerProcesses(pod.UID, c.Name)
	if err != nil {
		t.Fatal(err)
	}
	if len(pids) == 0 {
		t.Fatalf("no %s process of pod %s/%s on the node", c.Name, pod.Namespace, pod.Name)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("SIGKILL %s (pid %d): %v", c.Name, pid, err)
		}
	}
	t.Logf("%s (pid %v in pod %s/%s) killed with SIGKILL", c.Name, pids, pod.Namespace, pod.Name)
	err = poll(t.Context(), 2*time.Minute, func(ctx context.Context) (bool, error) {
		p, err := f.Client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil || p.UID != pod.UID || restartCount(p) <= restarts {
			return false, nil
		}
		return podReady(p), nil
	})
	if err != nil {
		t.Fatalf("%s: pod %s/%s did not restart its container and become Ready within 2m of the SIGKILL: %v", c.Name, pod.Namespace, pod.Name, err)
	}
}

func restartCount(p *corev1.Pod) int32 {
	var n int32
	for _, s := range p.Status.ContainerStatuses {
		n += s.RestartCount
	}
	return n
}

func podReady(p *corev1.Pod) bool {
	for _, cond := range p.Status.Conditions {
		if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// containerProcesses returns the node PIDs of the processes running binary name (the image's
// /name) in the containers of pod uid, found by the pod's cgroup.
func containerProcesses(uid types.UID, name string) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	dashed, underscored := string(uid), strings.ReplaceAll(string(uid), "-", "_")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil || filepath.Base(strings.TrimSuffix(exe, " (deleted)")) != name {
			continue
		}
		cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		if err != nil {
			continue
		}
		if strings.Contains(string(cg), dashed) || strings.Contains(string(cg), underscored) {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// RollingRestart restarts the component the way a rollout does: a DaemonSet pod is replaced by
// a rolling update of its DaemonSet (SIGTERM, grace period, new pod); a host process gets
// SIGTERM and is started again.
func (f *Framework) RollingRestart(t testing.TB, c Component) {
	t.Helper()
	if !c.asPod() {
		c.Stop(t, syscall.SIGTERM)(t)
		return
	}
	old := f.componentPod(t, c)
	var ds string
	for _, o := range old.OwnerReferences {
		if o.Kind == "DaemonSet" {
			ds = o.Name
		}
	}
	if ds == "" {
		t.Fatalf("%s pod %s/%s has no DaemonSet owner", c.Name, old.Namespace, old.Name)
	}
	if out, err := f.Kubectl(t.Context(), "-n", old.Namespace, "rollout", "restart", "daemonset/"+ds); err != nil {
		t.Fatalf("rollout restart %s: %v: %s", ds, err, out)
	}
	if out, err := f.Kubectl(t.Context(), "-n", old.Namespace, "rollout", "status", "daemonset/"+ds, "--timeout=120s"); err != nil {
		t.Fatalf("rollout status %s: %v: %s", ds, err, out)
	}
	f.waitComponentPod(t, c, old.UID)
}

func (f *Framework) componentPod(t testing.TB, c Component) corev1.Pod {
	t.Helper()
	for _, sel := range c.Selectors {
		pods, err := f.Client.CoreV1().Pods("").List(t.Context(), metav1.ListOptions{LabelSelector: sel, FieldSelector: "spec.nodeName=localhost"})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil {
				return p
			}
		}
	}
	t.Fatalf("no pod of %s on node localhost (selectors %v)", c.Name, c.Selectors)
	return corev1.Pod{}
}

// waitComponentPod waits until a pod of c other than old is Ready.
func (f *Framework) waitComponentPod(t testing.TB, c Component, old types.UID) {
	t.Helper()
	err := poll(t.Context(), 2*time.Minute, func(ctx context.Context) (bool, error) {
		for _, sel := range c.Selectors {
			pods, err := f.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: sel, FieldSelector: "spec.nodeName=localhost"})
			if err != nil {
				return false, nil
			}
			for _, p := range pods.Items {
				if p.UID == old || p.DeletionTimestamp != nil {
					continue
				}
				if podReady(&p) {
					return true, nil
				}
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no new Ready pod of %s within 2m: %v", c.Name, err)
	}
}

// WaitDriverServing waits until the driver answers on its CSI socket and kubelet lists it.
func (f *Framework) WaitDriverServing(t testing.TB) {
	t.Helper()
	err := poll(t.Context(), time.Minute, func(ctx context.Context) (bool, error) {
		c, err := net.DialTimeout("unix", DriverSock, time.Second)
		if err != nil {
			return false, nil
		}
		_ = c.Close()
		ok, err := f.DriverRegistered(ctx)
		return err == nil && ok, nil
	})
	if err != nil {
		t.Fatalf("driver not serving on %s within 1m: %v", DriverSock, err)
	}
}

// WaitAPIServer waits until the API server answers /readyz.
func (f *Framework) WaitAPIServer(t testing.TB, timeout time.Duration) {
	t.Helper()
	err := poll(t.Context(), timeout, func(ctx context.Context) (bool, error) {
		return f.Client.Discovery().RESTClient().Get().AbsPath("/readyz").Do(ctx).Error() == nil, nil
	})
	if err != nil {
		t.Fatalf("API server not ready within %s: %v", timeout, err)
	}
}

// Served is the fake provider's count of mounts of one object.
type Served struct {
	Mounts             int `json:"mounts"`
	WithCurrentVersion int `json:"withCurrentVersion"`
}

// FakeServed returns how often the fake provider served objectName (GET /v1/served).
func FakeServed(ctx context.Context, objectName string) (Served, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, FakeAdminURL+"/v1/served", nil)
	if err != nil {
		return Served{}, err
	}
	token, err := os.ReadFile(FakeAdminTokenFile)
	if err != nil {
		return Served{}, fmt.Errorf("fake provider admin token: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return Served{}, fmt.Errorf("GET fake provider /v1/served: %w", err)
	}
	defer resp.Body.Close()
	var all map[string]Served
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return Served{}, err
	}
	if err := json.Unmarshal(buf.Bytes(), &all); err != nil {
		return Served{}, fmt.Errorf("GET fake provider /v1/served: %s: %w", buf.String(), err)
	}
	return all[objectName], nil
}

// VolumeDir is the host directory of a pod's CSI volume (what kubelet bind-mounts into it).
func VolumeDir(pod *corev1.Pod, volume string) string {
	return filepath.Join(KubeletDir, "pods", string(pod.UID), "volumes", "kubernetes.io~csi", volume, "mount")
}
