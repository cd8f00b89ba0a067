// Package apiserver measures what running the driver costs the Kubernetes API server, from the
// API server's own metrics: many driver processes (distinct node names) against one real etcd +
// kube-apiserver, each with its own CSI socket, the fake provider in-process. Run with
// `make bench-apiserver` (DRIVERS=100 VOLUMES=10 by default); figures are printed as a table and
// reported as benchmark metrics.
package apiserver

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"k8s.io/client-go/rest"

	"github.com/sscsi/secrets-store/providers/fake"
	"github.com/sscsi/secrets-store/providers/plugin"
	"github.com/sscsi/secrets-store/test/cluster/controlplane"
	"github.com/sscsi/secrets-store/test/driverharness"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// counts is a snapshot of the API server's request counters by "VERB resource", its etcd
// requests by operation (what a request cost behind the API server: a read served from the
// watch cache costs none), plus gauges.
type counts struct {
	requests map[string]float64
	etcd     map[string]float64
	watches  float64 // apiserver_longrunning_requests{verb="WATCH"}
}

var (
	etcdLine  = regexp.MustCompile(`^etcd_requests_total\{(.*)\} ([0-9.e+]+)$`)
	reqLine   = regexp.MustCompile(`^apiserver_request_total\{(.*)\} ([0-9.e+]+)$`)
	watchLine = regexp.MustCompile(`^apiserver_longrunning_requests\{(.*)\} ([0-9.e+]+)$`)
	labelRe   = regexp.MustCompile(`(\w+)="([^"]*)"`)
)

func labels(s string) map[string]string {
	out := map[string]string{}
	for _, m := range labelRe.FindAllStringSubmatch(s, -1) {
		out[m[1]] = m[2]
	}
	return out
}

// scrape reads the API server's /metrics.
func scrape(b *testing.B, rc *rest.Config) counts {
	b.Helper()
	hc, err := rest.HTTPClientFor(rc)
	if err != nil {
		b.Fatal(err)
	}
	resp, err := hc.Get(rc.Host + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	c := counts{requests: map[string]float64{}, etcd: map[string]float64{}}
	s := bufio.NewScanner(resp.Body)
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		line := s.Text()
		if m := reqLine.FindStringSubmatch(line); m != nil {
			l := labels(m[1])
			if l["resource"] == "" || strings.HasPrefix(l["resource"], "customresourcedefinitions") {
				continue
			}
			v, _ := strconv.ParseFloat(m[2], 64)
			c.requests[l["verb"]+" "+l["resource"]] += v
		} else if m := etcdLine.FindStringSubmatch(line); m != nil {
			v, _ := strconv.ParseFloat(m[2], 64)
			c.etcd["etcd-"+labels(m[1])["operation"]] += v
		} else if m := watchLine.FindStringSubmatch(line); m != nil {
			if labels(m[1])["verb"] == "WATCH" {
				v, _ := strconv.ParseFloat(m[2], 64)
				c.watches += v
			}
		}
	}
	if err := s.Err(); err != nil {
		b.Fatal(err)
	}
	return c
}

// delta is after-before per counter, without zeroes and without the benchmark's own traffic
// (it only reads /metrics, which has no resource label).
func delta(before, after counts) map[string]float64 {
	return sub(before.requests, after.requests)
}

// etcdDelta is after-before of the API server's etcd requests by operation. It includes the API
// server's own background traffic (leases, compaction, other controllers): read it against the
// idle figure.
func etcdDelta(before, after counts) map[string]float64 { return sub(before.etcd, after.etcd) }

func sub(before, after map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range after {
		if d := v - before[k]; d > 0 {
			out[k] = d
		}
	}
	return out
}

func total(m map[string]float64) float64 {
	t := 0.0
	for _, v := range m {
		t += v
	}
	return t
}

func format(m map[string]float64, per float64) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%s=%.2f", k, v/per))
	}
	if len(parts) == 0 {
		return "none"
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

type driverProc struct {
	cmd  *exec.Cmd
	node csipb.NodeClient
	dir  string
}

// BenchmarkAPIServerCost starts DRIVERS driver processes and measures the API server's request
// counters at idle, per first mount, per rotation (unchanged and changed content) and per
// unmount, and its open watches.
func BenchmarkAPIServerCost(b *testing.B) {
	bin := os.Getenv("SSCSI_DRIVER_BIN")
	if bin == "" {
		b.Fatal("set SSCSI_DRIVER_BIN to the driver binary (make bench-apiserver does)")
	}
	nDrivers, nVols := envInt("DRIVERS", 100), envInt("VOLUMES", 10)
	idle, interval := envDuration("IDLE", time.Minute), envDuration("ROTATION", 15*time.Second)
	if os.Geteuid() != 0 {
		b.Fatal("the drivers mount real tmpfs filesystems: run as root")
	}
	dir := b.TempDir()
	rc := controlplane.ForTest(b)
	rc.QPS, rc.Burst = 1000, 1000
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := driverharness.WriteKubeconfig(rc, kubeconfig); err != nil {
		b.Fatal(err)
	}
	if err := driverharness.InstallCRDs(b.Context(), rc); err != nil {
		b.Fatal(err)
	}
	crd, err := driverharness.CRDClient(rc)
	if err != nil {
		b.Fatal(err)
	}
	env := &driverharness.Env{REST: rc, CRD: crd}
	for v := 0; v < nVols; v++ {
		if err := env.CreateSPC(b.Context(), "default", fmt.Sprintf("app-%02d", v), fmt.Sprintf("- objectName: obj-%02d\n  value: value-%02d\n", v, v)); err != nil {
			b.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(b.Context()))
	defer cancel()
	backend := fake.New()
	psrv, err := plugin.New(plugin.Config{Name: "fake", Backend: backend})
	if err != nil {
		b.Fatal(err)
	}
	provDir := filepath.Join(dir, "providers")
	go func() { _ = psrv.Serve(ctx, filepath.Join(provDir, "fake.sock")) }()

	before := scrape(b, rc)
	drivers := make([]*driverProc, nDrivers)
	for i := range drivers {
		d := &driverProc{dir: filepath.Join(dir, fmt.Sprintf("node-%03d", i))}
		if err := os.MkdirAll(d.dir, 0o755); err != nil {
			b.Fatal(err)
		}
		logf, err := os.Create(filepath.Join(d.dir, "driver.log"))
		if err != nil {
			b.Fatal(err)
		}
		d.cmd = exec.Command(bin, "--endpoint=unix://"+filepath.Join(d.dir, "csi.sock"), fmt.Sprintf("--nodeid=node-%03d", i),
			"--provider-volume="+provDir, "--additional-provider-volume-paths=", "--metrics-addr=", "--kubeconfig="+kubeconfig,
			"--kubelet-registration=false", "--enable-secret-rotation", "--rotation-poll-interval="+interval.String())
		d.cmd.Stdout, d.cmd.Stderr = logf, logf
		if err := d.cmd.Start(); err != nil {
			b.Fatal(err)
		}
		drivers[i] = d
	}
	defer func() {
		for _, d := range drivers {
			if d != nil && d.cmd.Process != nil {
				_ = d.cmd.Process.Signal(syscall.SIGTERM)
				_ = d.cmd.Wait()
			}
		}
	}()
	for _, d := range drivers {
		sock := filepath.Join(d.dir, "csi.sock")
		deadline := time.Now().Add(60 * time.Second)
		for {
			if _, err := os.Stat(sock); err == nil {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("driver %s did not serve in 60s", d.dir)
			}
			time.Sleep(50 * time.Millisecond)
		}
		cc, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		defer cc.Close()
		d.node = csipb.NewNodeClient(cc)
	}
	time.Sleep(5 * time.Second) // start-up requests (access reviews) settle
	rssSum := 0.0
	for _, d := range drivers {
		rssSum += rssMiB(d.cmd.Process.Pid)
	}

	for b.Loop() {
		c0 := scrape(b, rc)
		time.Sleep(idle)
		c1 := scrape(b, rc)
		idleReq := delta(c0, c1)
		perMin := float64(nDrivers) * idle.Minutes()

		forAll := func(f func(d *driverProc, v int) error) {
			var wg sync.WaitGroup
			errs := make(chan error, nDrivers)
			for i, d := range drivers {
				wg.Add(1)
				go func(i int, d *driverProc) {
					defer wg.Done()
					for v := 0; v < nVols; v++ {
						if err := f(d, v); err != nil {
							errs <- fmt.Errorf("node %d volume %d: %w", i, v, err)
							return
						}
					}
				}(i, d)
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				b.Fatal(err)
			}
			time.Sleep(3 * time.Second) // background status writes
		}
		publish := func(d *driverProc, v int) error { return publishVolume(ctx, d, v) }

		forAll(publish)
		c2 := scrape(b, rc)
		mountReq := delta(c1, c2)

		time.Sleep(interval)
		forAll(publish) // kubelet's republish after the interval: a rotation, nothing changed
		c3 := scrape(b, rc)
		rotReq := delta(c2, c3)

		for v := 0; v < nVols; v++ {
			backend.Set(fmt.Sprintf("obj-%02d", v), []byte("rotated"))
		}
		time.Sleep(interval)
		forAll(publish) // a rotation that changes every file
		c4 := scrape(b, rc)
		rotChangedReq := delta(c3, c4)

		forAll(func(d *driverProc, v int) error {
			_, err := d.node.NodeUnpublishVolume(ctx, &csipb.NodeUnpublishVolumeRequest{VolumeId: volID(v), TargetPath: target(d, v)})
			return err
		})
		c5 := scrape(b, rc)
		unmountReq := delta(c4, c5)

		vols := float64(nDrivers * nVols)
		fmt.Printf("\nAPI server cost of %d drivers (%d volumes each, rotation every %s), from the API server's metrics:\n", nDrivers, nVols, interval)
		fmt.Printf("  open watches:                         %.0f with the drivers, %.0f before they started\n", c1.watches, before.watches)
		fmt.Printf("  idle requests per driver per minute:  %.3f  [%s]\n", total(idleReq)/perMin, format(idleReq, perMin))
		fmt.Printf("  requests per first mount:             %.3f  [%s]\n", total(mountReq)/vols, format(mountReq, vols))
		fmt.Printf("  requests per rotation (unchanged):    %.3f  [%s]\n", total(rotReq)/vols, format(rotReq, vols))
		fmt.Printf("  requests per rotation (changed):      %.3f  [%s]\n", total(rotChangedReq)/vols, format(rotChangedReq, vols))
		fmt.Printf("  requests per unmount:                 %.3f  [%s]\n", total(unmountReq)/vols, format(unmountReq, vols))
		fmt.Printf("  driver RSS idle, mean:                %.1f MiB (no informer caches)\n", rssSum/float64(nDrivers))
		fmt.Printf("  etcd requests of the API server (incl. its own background):\n")
		fmt.Printf("    idle, per driver per minute:        %s\n", format(etcdDelta(c0, c1), perMin))
		fmt.Printf("    per first mount:                    %s\n", format(etcdDelta(c1, c2), vols))
		fmt.Printf("    per rotation (unchanged):           %s\n", format(etcdDelta(c2, c3), vols))
		fmt.Printf("    per rotation (changed):             %s\n", format(etcdDelta(c3, c4), vols))
		fmt.Printf("    per unmount:                        %s\n", format(etcdDelta(c4, c5), vols))
		b.ReportMetric(c1.watches-before.watches, "driver-watches")
		b.ReportMetric(total(idleReq)/perMin, "idle-req/driver/min")
		b.ReportMetric(total(mountReq)/vols, "req/mount")
		b.ReportMetric(total(rotReq)/vols, "req/rotation")
		b.ReportMetric(total(rotChangedReq)/vols, "req/changed-rotation")
		b.ReportMetric(total(unmountReq)/vols, "req/unmount")
		b.ReportMetric(0, "ns/op")
	}
}

func volID(v int) string { return fmt.Sprintf("vol-%02d", v) }

func target(d *driverProc, v int) string { return filepath.Join(d.dir, "pods", volID(v), "mount") }

func publishVolume(ctx context.Context, d *driverProc, v int) error {
	_, err := d.node.NodePublishVolume(ctx, &csipb.NodePublishVolumeRequest{
		VolumeId: volID(v), TargetPath: target(d, v), Readonly: true,
		VolumeCapability: &csipb.VolumeCapability{
			AccessType: &csipb.VolumeCapability_Mount{Mount: &csipb.VolumeCapability_MountVolume{}},
			AccessMode: &csipb.VolumeCapability_AccessMode{Mode: csipb.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY},
		},
		VolumeContext: map[string]string{
			"secretProviderClass":                    fmt.Sprintf("app-%02d", v),
			"csi.storage.k8s.io/pod.name":            "pod-" + filepath.Base(d.dir) + "-" + volID(v),
			"csi.storage.k8s.io/pod.namespace":       "default",
			"csi.storage.k8s.io/pod.uid":             "uid-" + filepath.Base(d.dir) + "-" + volID(v),
			"csi.storage.k8s.io/serviceAccount.name": "default",
			"csi.storage.k8s.io/ephemeral":           "true",
		},
	})
	return err
}

func rssMiB(pid int) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}
