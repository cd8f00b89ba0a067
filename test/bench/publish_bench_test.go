// Package bench measures the driver through its CSI socket, with a real
// kube-apiserver and the fake provider (see test/driverharness). Run with
// `make bench`; the figures are reported as benchmark metrics.
package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	ssv1 "github.com/sscsi/secrets-store/driver/apis/v1"
	"github.com/sscsi/secrets-store/test/driverharness"
)

func objects(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "- objectName: secret-%02d\n  value: value-%02d-%s\n", i, i, strings.Repeat("x", 64))
	}
	return b.String()
}

type client struct {
	node     csipb.NodeClient
	identity csipb.IdentityClient
	dir      string
}

func setup(b *testing.B, o driverharness.Options) (*driverharness.Env, *client) {
	b.Helper()
	o.Binary = os.Getenv("SSCSI_DRIVER_BIN")
	env := driverharness.Start(b, o)
	for _, n := range []int{1, 10, 100} {
		if err := env.CreateSPC(b.Context(), "default", "files-"+strconv.Itoa(n), objects(n)); err != nil {
			b.Fatal(err)
		}
	}
	if err := env.CreateSPC(b.Context(), "default", "one-kib", "- objectName: secret\n  value: "+strings.Repeat("k", 1024)+"\n"); err != nil {
		b.Fatal(err)
	}
	cc, err := grpc.NewClient("unix://"+env.Endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cc.Close() })
	return env, &client{node: csipb.NewNodeClient(cc), identity: csipb.NewIdentityClient(cc), dir: filepath.Join(env.Dir, "pods")}
}

// publish and unpublish play kubelet's part around the CSI calls: kubelet
// creates the volume's directory (<pod>/volumes/kubernetes.io~csi/<volume>,
// where it keeps vol_data.json) before NodePublishVolume, the driver creates
// the target path ("mount") inside it and removes it on
// NodeUnpublishVolume, and kubelet then removes the volume's directory.
func (c *client) publish(ctx context.Context, i int, spc string) (string, error) {
	id := fmt.Sprintf("vol-%06d", i)
	target := filepath.Join(c.dir, id, "mount")
	if err := os.MkdirAll(filepath.Dir(target), 0o750); err != nil {
		return "", err
	}
	_, err := c.node.NodePublishVolume(ctx, &csipb.NodePublishVolumeRequest{
		VolumeId: id, TargetPath: target, Readonly: true,
		VolumeCapability: &csipb.VolumeCapability{
			AccessType: &csipb.VolumeCapability_Mount{Mount: &csipb.VolumeCapability_MountVolume{}},
			AccessMode: &csipb.VolumeCapability_AccessMode{Mode: csipb.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY},
		},
		VolumeContext: map[string]string{
			"secretProviderClass":                    spc,
			"csi.storage.k8s.io/pod.name":            "pod-" + id,
			"csi.storage.k8s.io/pod.namespace":       "default",
			"csi.storage.k8s.io/pod.uid":             fmt.Sprintf("00000000-0000-0000-0000-%012d", i),
			"csi.storage.k8s.io/serviceAccount.name": "default",
			"csi.storage.k8s.io/ephemeral":           "true",
		},
	})
	return target, err
}

func (c *client) unpublish(ctx context.Context, i int, target string) error {
	if _, err := c.node.NodeUnpublishVolume(ctx, &csipb.NodeUnpublishVolumeRequest{VolumeId: fmt.Sprintf("vol-%06d", i), TargetPath: target}); err != nil {
		return err
	}
	return os.Remove(filepath.Dir(target))
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(p*float64(len(s)-1))]
}

// BenchmarkPublishPaced publishes one volume every 100 ms (as upstream was
// measured) and reports p50/p99 latency of NodePublishVolume and, with
// SSCSI_DRIVER_BIN, the driver's CPU per publish+unpublish.
func BenchmarkPublishPaced(b *testing.B) {
	env, c := setup(b, driverharness.Options{})
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("files=%d", n), func(b *testing.B) {
			var lat []time.Duration
			var cpu0 time.Duration
			h := &holder{c: c}
			if env.PID != 0 {
				cpu0 = cpuTime(b, env.PID)
			}
			next := 0
			for b.Loop() {
				next++
				start := time.Now()
				target, err := c.publish(b.Context(), next+n*1_000_000, "files-"+strconv.Itoa(n))
				lat = append(lat, time.Since(start))
				if err != nil {
					b.Fatal(err)
				}
				h.add(next+n*1_000_000, target)
				h.release(b, cpuHold)
				time.Sleep(100 * time.Millisecond)
			}
			h.drain(b)
			if env.PID != 0 {
				b.ReportMetric(float64((cpuTime(b, env.PID)-cpu0).Microseconds())/1000/float64(len(lat)), "cpu-ms/op")
			}
			h.checkWritten(b, env)
			b.ReportMetric(float64(percentile(lat, 0.5).Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkPublishBackToBack publishes distinct volumes as fast as one
// client can and reports publishes per second; any failure fails it.
func BenchmarkPublishBackToBack(b *testing.B) {
	_, c := setup(b, driverharness.Options{})
	var targets []string
	start := time.Now()
	i := 0
	for b.Loop() {
		t, err := c.publish(b.Context(), i, "files-1")
		if err != nil {
			b.Fatalf("publish %d: %v", i, err)
		}
		targets = append(targets, t)
		i++
	}
	el := time.Since(start)
	b.ReportMetric(float64(len(targets))/el.Seconds(), "publishes/s")
	for j, t := range targets {
		if err := c.unpublish(context.WithoutCancel(b.Context()), j, t); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublishCPU reports the CPU time (user+system) the driver process
// spends on one publish and unpublish of a volume with one 1 KiB file,
// including the pod status write that follows each publish. Needs
// SSCSI_DRIVER_BIN.
func BenchmarkPublishCPU(b *testing.B) {
	if os.Getenv("SSCSI_DRIVER_BIN") == "" {
		b.Fatal("BenchmarkPublishCPU measures a separate driver process: set SSCSI_DRIVER_BIN (make bench does)")
	}
	env, c := setup(b, driverharness.Options{})
	ctx := b.Context()
	// Warm up connections and caches, then let background writes settle.
	for i := 0; i < 20; i++ {
		t, err := c.publish(ctx, 900_000+i, "one-kib")
		if err != nil {
			b.Fatal(err)
		}
		if err := c.unpublish(ctx, 900_000+i, t); err != nil {
			b.Fatal(err)
		}
	}
	time.Sleep(time.Second)
	// Volumes stay mounted for cpuHold (see holder), and the check after
	// the loop makes sure every publish's status was written.
	h := &holder{c: c}
	before := cpuTime(b, env.PID)
	n := 0
	for b.Loop() {
		t, err := c.publish(ctx, 800_000+n, "one-kib")
		if err != nil {
			b.Fatal(err)
		}
		h.add(800_000+n, t)
		n++
		h.release(b, cpuHold)
		// Paced like kubelet, so that the SecretProviderClass cache and
		// the status writer see realistic gaps.
		time.Sleep(20 * time.Millisecond)
	}
	h.drain(b)
	used := cpuTime(b, env.PID) - before
	b.StopTimer()
	h.checkWritten(b, env)
	b.ReportMetric(float64(used.Microseconds())/1000/float64(n), "cpu-ms/op")
	b.ReportMetric(0, "ns/op")
}

// cpuHold is how long the benchmarks keep each volume mounted (holder): well
// past the pod status writer's batching window (200 ms).
const cpuHold = 600 * time.Millisecond

// holder keeps each published volume mounted for cpuHold before it
// unpublishes it, as a pod's volume stays mounted while its pod runs: the
// driver's pod status writer gathers a short window of records before it
// writes them, and a volume unpublished within that window is never
// written. Unpublishing at once would leave the status write, a third of a
// publish's CPU, out of the figures.
type holder struct {
	c    *client
	held []heldVolume
	pods []string // every pod published, for checkWritten
}

type heldVolume struct {
	i      int
	target string
	at     time.Time
}

func (h *holder) add(i int, target string) {
	h.held = append(h.held, heldVolume{i: i, target: target, at: time.Now()})
	h.pods = append(h.pods, fmt.Sprintf("pod-vol-%06d", i))
}

// release unpublishes the volumes mounted for at least older.
func (h *holder) release(b *testing.B, older time.Duration) {
	b.Helper()
	for len(h.held) > 0 && time.Since(h.held[0].at) >= older {
		if err := h.c.unpublish(b.Context(), h.held[0].i, h.held[0].target); err != nil {
			b.Fatal(err)
		}
		h.held = h.held[1:]
	}
}

// drain waits until the last volumes are old enough, unpublishes them and
// lets the unpublishes settle.
func (h *holder) drain(b *testing.B) {
	b.Helper()
	time.Sleep(cpuHold)
	h.release(b, 0)
	time.Sleep(time.Second)
}

// checkWritten fails unless every pod added has a
// SecretProviderClassPodStatus in the default namespace.
func (h *holder) checkWritten(b *testing.B, env *driverharness.Env) {
	b.Helper()
	rc, err := driverharness.CRDClient(env.REST)
	if err != nil {
		b.Fatal(err)
	}
	var list ssv1.SecretProviderClassPodStatusList
	if err := rc.Get().Namespace("default").Resource("secretproviderclasspodstatuses").Do(context.Background()).Into(&list); err != nil {
		b.Fatal(err)
	}
	have := make(map[string]bool, len(list.Items))
	for _, o := range list.Items {
		have[o.Status.PodName] = true
	}
	missing := 0
	for _, p := range h.pods {
		if !have[p] {
			missing++
		}
	}
	if missing > 0 {
		b.Fatalf("%d of %d publishes had no SecretProviderClassPodStatus written: the figures would leave the status writes out", missing, len(h.pods))
	}
}

// BenchmarkIdleRPCCPU reports the driver's CPU per GetPluginInfo call, paced
// like BenchmarkPublishCPU: one gRPC round trip that does no work, the floor
// under each of the calls a publish+unpublish makes (two CSI calls, the
// provider's Mount and the pod status write). Needs SSCSI_DRIVER_BIN.
func BenchmarkIdleRPCCPU(b *testing.B) {
	if os.Getenv("SSCSI_DRIVER_BIN") == "" {
		b.Fatal("BenchmarkIdleRPCCPU measures a separate driver process: set SSCSI_DRIVER_BIN (make bench does)")
	}
	env, c := setup(b, driverharness.Options{})
	ctx := b.Context()
	for i := 0; i < 20; i++ {
		if _, err := c.identity.GetPluginInfo(ctx, &csipb.GetPluginInfoRequest{}); err != nil {
			b.Fatal(err)
		}
	}
	time.Sleep(time.Second)
	before := cpuTime(b, env.PID)
	n := 0
	for b.Loop() {
		if _, err := c.identity.GetPluginInfo(ctx, &csipb.GetPluginInfoRequest{}); err != nil {
			b.Fatal(err)
		}
		n++
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(time.Second)
	used := cpuTime(b, env.PID) - before
	b.ReportMetric(float64(used.Microseconds())/1000/float64(n), "cpu-ms/op")
	b.ReportMetric(0, "ns/op")
}

// cpuTime is the user+system CPU time of process pid.
func cpuTime(b *testing.B, pid int) time.Duration {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	// USER_HZ is 100 on Linux.
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// BenchmarkRSS reports the driver process's resident memory idle and with
// 110 volumes held (the default kubelet max pods). Needs SSCSI_DRIVER_BIN.
func BenchmarkRSS(b *testing.B) {
	if os.Getenv("SSCSI_DRIVER_BIN") == "" {
		b.Fatal("BenchmarkRSS measures a separate driver process: set SSCSI_DRIVER_BIN (make bench does)")
	}
	env, c := setup(b, driverharness.Options{})
	for b.Loop() {
		time.Sleep(2 * time.Second)
		idle := rssMiB(b, env.PID)
		var targets []string
		for i := 0; i < 110; i++ {
			t, err := c.publish(b.Context(), 500_000+i, "files-10")
			if err != nil {
				b.Fatal(err)
			}
			targets = append(targets, t)
		}
		time.Sleep(2 * time.Second)
		held := rssMiB(b, env.PID)
		heldAnon, heldFile := statusMiB(b, env.PID, "RssAnon:"), statusMiB(b, env.PID, "RssFile:")
		for i, t := range targets {
			if err := c.unpublish(b.Context(), 500_000+i, t); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(idle, "idle-RSS-MiB")
		b.ReportMetric(held, "110vol-RSS-MiB")
		b.ReportMetric(heldAnon, "110vol-anon-MiB")
		b.ReportMetric(heldFile, "110vol-file-MiB")
	}
	b.ReportMetric(0, "ns/op")
}

func rssMiB(b *testing.B, pid int) float64 {
	return statusMiB(b, pid, "VmRSS:")
}

// statusMiB reads one kB field of /proc/<pid>/status in MiB.
func statusMiB(b *testing.B, pid int, field string) float64 {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	b.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}
