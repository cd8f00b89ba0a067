package publish

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	ssv1 "github.com/sscsi/secrets-store/driver/apis/v1"
	"github.com/sscsi/secrets-store/driver/internal/metrics"
	"github.com/sscsi/secrets-store/driver/internal/rotation"
	"github.com/sscsi/secrets-store/driver/internal/tmpfs"
	"github.com/sscsi/secrets-store/internal/pluginclient"
	"github.com/sscsi/secrets-store/providers/fake"
	"github.com/sscsi/secrets-store/providers/plugin"
)

// spcs is an in-memory spc.Getter (a unit-test fake; the real API server is
// exercised by the integration and e2e suites).
type spcs map[string]*ssv1.SecretProviderClass

func (s spcs) Get(_ context.Context, ns, name string) (*ssv1.SecretProviderClass, error) {
	if o, ok := s[ns+"/"+name]; ok {
		return o, nil
	}
	return nil, apierrors.NewNotFound(ssv1.Resource("secretproviderclasses"), name)
}

func newSPC(ns, name, provider string, params map[string]string) *ssv1.SecretProviderClass {
	return &ssv1.SecretProviderClass{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       ssv1.SecretProviderClassSpec{Provider: ssv1.Provider(provider), Parameters: params},
	}
}

// scripted is a raw provider whose answers the test controls, to send what
// our own plugin scaffolding would refuse to send.
type scripted struct {
	v1alpha1.UnimplementedCSIDriverProviderServer
	mu   sync.Mutex
	resp *v1alpha1.MountResponse
	err  error
	reqs []*v1alpha1.MountRequest
	hook func()
}

func (s *scripted) Mount(_ context.Context, r *v1alpha1.MountRequest) (*v1alpha1.MountResponse, error) {
	s.mu.Lock()
	s.reqs = append(s.reqs, r)
	resp, err, hook := s.resp, s.err, s.hook
	s.mu.Unlock()
	if hook != nil {
		hook()
	}
	if resp != nil && len(resp.Files) == 0 && r.TargetPath != "" && err == nil {
		// Legacy behaviour: write into the target path.
		_ = os.WriteFile(filepath.Join(r.TargetPath, "legacy.txt"), []byte("from-provider"), 0o644)
	}
	return resp, err
}

func (s *scripted) set(resp *v1alpha1.MountResponse, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resp, s.err = resp, err
}

func (s *scripted) last() *v1alpha1.MountRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.reqs) == 0 {
		return nil
	}
	return s.reqs[len(s.reqs)-1]
}

type eventLog struct {
	mu     sync.Mutex
	events []string
}

func (e *eventLog) Event(pod Pod, warning bool, reason, msg string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.events = append(e.events, reason+": "+msg)
}

func (e *eventLog) all() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return strings.Join(e.events, "\n")
}

type statusLog struct {
	mu  sync.Mutex
	got []Outcome
}

func (s *statusLog) Record(o Outcome) { s.mu.Lock(); s.got = append(s.got, o); s.mu.Unlock() }
func (s *statusLog) Forget(string)    {}

type harness struct {
	t        *testing.T
	pub      *Publisher
	fake     *fake.Backend
	scripted *scripted
	scrSrv   *grpc.Server
	dir      string
	now      time.Time
	nowMu    sync.Mutex
	events   *eventLog
	status   *statusLog
	metrics  *metrics.Recorder
	spcs     spcs
	cfg      Config
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("these tests mount real tmpfs filesystems and must run as root")
	}
}

func newHarness(t *testing.T, rot rotation.Policy) *harness {
	t.Helper()
	requireRoot(t)
	h := &harness{t: t, dir: t.TempDir(), now: time.Unix(1_700_000_000, 0), events: &eventLog{}, status: &statusLog{}, metrics: metrics.New()}
	sockDir := filepath.Join(h.dir, "providers")
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)

	h.fake = fake.New()
	fsrv, err := plugin.New(plugin.Config{Name: "fake", Backend: h.fake})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- fsrv.Serve(ctx, filepath.Join(sockDir, "fake.sock")) }()
	t.Cleanup(func() { cancel(); <-served })

	h.scripted = &scripted{}
	h.scrSrv = grpc.NewServer()
	v1alpha1.RegisterCSIDriverProviderServer(h.scrSrv, h.scripted)
	if err := os.MkdirAll(sockDir, 0o755); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("unix", filepath.Join(sockDir, "scripted.sock"))
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = h.scrSrv.Serve(lis) }()
	t.Cleanup(h.scrSrv.Stop)

	waitFor(t, func() bool { _, err := os.Stat(filepath.Join(sockDir, "fake.sock")); return err == nil })
	client, err := pluginclient.New(pluginclient.Config{Dirs: []string{filepath.Join(h.dir, "nothing-here"), sockDir}, ConnectTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	// As the driver wires it: only providers with a socket are label values.
	h.metrics = metrics.NewWithConfig(metrics.Config{KnownProvider: client.Has})
	h.spcs = spcs{
		"ns/fake":     newSPC("ns", "fake", "fake", map[string]string{"objects": "- objectName: user\n  value: alice\n- objectName: pass\n  value: s3cr3t-value\n  filePermission: \"0600\"\n"}),
		"ns/scripted": newSPC("ns", "scripted", "scripted", map[string]string{"p": "from-spc", "override": "spc"}),
		"ns/missing":  newSPC("ns", "missing", "nosuchprovider", nil),
	}
	h.cfg = Config{
		Mounter: tmpfs.NewOS(), SPCs: h.spcs, Providers: client, Rotation: rot,
		TmpfsSize: 1 << 20, Status: h.status, Events: h.events, Metrics: h.metrics,
		Now: func() time.Time { h.nowMu.Lock(); defer h.nowMu.Unlock(); return h.now },
	}
	h.pub, err = New(h.cfg)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *harness) advance(d time.Duration) { h.nowMu.Lock(); h.now = h.now.Add(d); h.nowMu.Unlock() }

func (h *harness) target(name string) string {
	p := filepath.Join(h.dir, "pods", name, "mount")
	h.t.Cleanup(func() { _ = h.pub.Unpublish(context.Background(), p) })
	return p
}

func (h *harness) req(target, spcName string) Request {
	return Request{VolumeID: "vol-" + filepath.Base(filepath.Dir(target)), TargetPath: target, VolumeContext: map[string]string{
		AttrSPC: spcName, AttrPodNamespace: "ns", AttrPodName: "pod", AttrPodUID: "uid-1", AttrServiceAccount: "default",
		"csi.storage.k8s.io/ephemeral": "true", "override": "volume",
	}}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func isTmpfs(t *testing.T, p string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 3 && f[1] == p && f[2] == "tmpfs" {
			return strings.Contains(f[3], "nosuid") && strings.Contains(f[3], "nodev") && strings.Contains(f[3], "noexec")
		}
	}
	return false
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestFirstMountWritesFilesOnTmpfs(t *testing.T) {
	h := newHarness(t, rotation.Policy{})
	tgt := h.target("a")
	if err := h.pub.Publish(t.Context(), h.req(tgt, "fake")); err != nil {
		t.Fatal(err)
	}
	if !isTmpfs(t, tgt) {
		t.Fatal("target is not a nosuid,nodev,noexec tmpfs mount")
	}
	if got := readFile(t, filepath.Join(tgt, "user")); got != "alice" {
		t.Errorf("user = %q", got)
	}
	fi, err := os.Stat(filepath.Join(tgt, "pass"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("pass mode = %v, %v; want 0600", fi.Mode(), err)
	}
	if len(h.status.got) != 1 || len(h.status.got[0].Versions) != 2 || h.status.got[0].Versions[0].ID != "pass" {
		t.Errorf("status outcome = %+v", h.status.got)
	}
	if v := h.metric("node_publish_total"); v != 1 {
		t.Errorf("node_publish_total = %v", v)
	}
}

// TestProviderLabelIsBounded: a SecretProviderClass can name any provider;
// the metrics label only names that have a socket, so invented names add
// no series.
func TestProviderLabelIsBounded(t *testing.T) {
	h := newHarness(t, rotation.Policy{})
	for i := range 20 {
		name := fmt.Sprintf("invented%d", i)
		h.spcs["ns/"+name] = newSPC("ns", name, name, nil)
		if err := h.pub.Publish(t.Context(), h.req(h.target(name), name)); err == nil {
			t.Fatalf("publish with provider %s succeeded", name)
		}
	}
	if err := h.pub.Publish(t.Context(), h.req(h.target("real"), "fake")); err != nil {
		t.Fatal(err)
	}
	mfs, err := h.metrics.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	providers := map[string]bool{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "provider" {
					providers[l.GetValue()] = true
				}
			}
		}
	}
	if len(providers) != 2 || !providers["fake"] || !providers[metrics.OtherProvider] {
		t.Fatalf("provider label values %v, want only fake and %s", providers, metrics.OtherProvider)
	}
	if v := h.metric("node_publish_error_total"); v != 20 {
		t.Errorf("node_publish_error_total = %v, want 20", v)
	}
}

// metric sums every series of a counter family.
// labelOf is the value of label of the first series of metric name.
func (h *harness) labelOf(name, label string) string {
	h.t.Helper()
	mfs, err := h.metrics.Registry().Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label {
					return l.GetValue()
				}
			}
		}
	}
	return ""
}

func (h *harness) metric(name string) float64 {
	h.t.Helper()
	mfs, err := h.metrics.Registry().Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

func TestRepublishWithoutRotationDoesNotCallProvider(t *testing.T) {
	h := newHarness(t, rotation.Policy{})
	tgt := h.target("a")
	for i := 0; i < 3; i++ {
		if err := h.pub.Publish(t.Context(), h.req(tgt, "fake")); err != nil {
			t.Fatal(err)
		}
		h.advance(time.Hour)
	}
	if c := h.fake.Calls(); c != 1 {
		t.Fatalf("provider called %d times, want 1", c)
	}
}

func TestRotation(t *testing.T) {
	h := newHarness(t, rotation.Policy{Enabled: true, Interval: time.Minute})
	tgt := h.target("a")
	if err := h.pub.Publish(t.Context(), h.req(tgt, "fake")); err != nil {
		t.Fatal(err)
	}
	link := func() string { l, _ := os.Readlink(filepath.Join(tgt, "..data")); return l }
	first := link()

	// Not due yet: no provider call.
	h.advance(30 * time.Second)
	if err := h.pub.Publish(t.Context(), h.req(tgt, "fake")); err != nil {
		t.Fatal(err)
	}
	if c := h.fake.Calls(); c != 1 {
		t.Fatalf("calls before interval = %d, want 1", c)
	}

	// Due, nothing changed: fetched, files not rewritten.
	h.advance(31 * time.Second)
	if err := h.pub.Publish(t.Context(), h.req(tgt, "fake")); err != nil {
		t.Fatal(err)
	}
	if c := h.fake.Calls(); c != 2 {
		t.Fatalf("calls after interval = %d, want 2", c)
	}
	if link() != first {
		t.Fatal("unchanged content was rewritten")
	}

	// Due, changed: new content visible, event emitted.
	h.fake.Set("user", []byte("bob"))
	h.advance(time.Minute)
	if err := h.pub.Publish(t.Context(), h.req(tgt, "fake")); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(tgt, "user")); got != "bob" {
		t.Fatalf("user after rotation = %q", got)
	}
	if !strings.Contains(h.events.all(), "SecretRotationComplete") {
		t.Errorf("events = %q", h.events.all())
	}
	if v := h.metric("rotation_reconcile_total"); v != 2 {
		t.Errorf("rotation_reconcile_total = %v, want 2", v)
	}
}

func TestRotationSendsCurrentVersionsAndFailureKeepsFiles(t *testing.T) {
	h := newHarness(t, rotation.Policy{Enabled: true, Interval: time.Minute})
	tgt := h.target("a")
	h.scripted.set(&v1alpha1.MountResponse{
		ObjectVersion: []*v1alpha1.ObjectVersion{{Id: "o", Version: "v1"}},
		Files:         []*v1alpha1.File{{Path: "o", Mode: 0o644, Contents: []byte("one")}},
	}, nil)
	if err := h.pub.Publish(t.Context(), h.req(tgt, "scripted")); err != nil {
		t.Fatal(err)
	}
	if cv := h.scripted.last().GetCurrentObjectVersion(); len(cv) != 0 {
		t.Errorf("first mount sent versions %v", cv)
	}
	h.scripted.set(nil, status.Error(codes.Unavailable, "backend down"))
	h.advance(2 * time.Minute)
	if err := h.pub.Publish(t.Context(), h.req(tgt, "scripted")); err != nil {
		t.Fatalf("failed rotation must not fail the republish: %v", err)
	}
	cv := h.scripted.last().GetCurrentObjectVersion()
	if len(cv) != 1 || cv[0].GetId() != "o" || cv[0].GetVersion() != "v1" {
		t.Errorf("rotation sent current versions %v, want o=v1", cv)
	}
	if got := readFile(t, filepath.Join(tgt, "o")); got != "one" {
		t.Fatalf("files after failed rotation = %q, want the old ones", got)
	}
	// Upstream's wording (alerts match it), then the provider's message.
	if ev := h.events.all(); !strings.Contains(ev, "SecretRotationFailed") || !strings.Contains(ev, "provider mount err: ") || !strings.Contains(ev, "backend down") {
		t.Errorf("no SecretRotationFailed event with upstream's 'provider mount err: ' and the provider's message: %q", ev)
	}
	if v := h.metric("rotation_reconcile_error_total"); v != 1 {
		t.Errorf("rotation_reconcile_error_total = %v", v)
	}
	if got := h.labelOf("rotation_reconcile_error_total", "error_type"); got != "Unavailable" {
		t.Errorf("rotation_reconcile_error_total error_type = %q, want the provider's gRPC code Unavailable", got)
	}
	// The failure did not move the clock of the last fetch: next republish retries.
	h.scripted.set(&v1alpha1.MountResponse{
		ObjectVersion: []*v1alpha1.ObjectVersion{{Id: "o", Version: "v2"}},
		Files:         []*v1alpha1.File{{Path: "o", Mode: 0o644, Contents: []byte("two")}},
	}, nil)
	if err := h.pub.Publish(t.Context(), h.req(tgt, "scripted")); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(tgt, "o")); got != "two" {
		t.Fatalf("retry after failure: %q", got)
	}
}

func TestAttributesAndSecretsSentToProvider(t *testing.T) {
	h := newHarness(t, rotation.Policy{})
	tgt := h.target("a")
	h.scripted.set(&v1alpha1.MountResponse{ObjectVersion: []*v1alpha1.ObjectVersion{{Id: "o", Version: "1"}}, Files: []*v1alpha1.File{{Path: "o", Mode: 0o644}}}, nil)
	r := h.req(tgt, "scripted")
	r.VolumeContext[AttrTokens] = `{"aud":{"token":"from-context"}}`
	r.Secrets = map[string]string{AttrTokens: `{"aud":{"token":"from-secrets"}}`, "user": "u"}
	if err := h.pub.Publish(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	got, err := plugin.DecodeRequest(h.scripted.last())
	if err != nil {
		t.Fatal(err)
	}
	if got.Attributes["p"] != "from-spc" || got.Attributes["override"] != "volume" || got.Attributes[AttrPodName] != "pod" {
		t.Errorf("attributes = %v", got.Attributes)
	}
	if tok, _ := got.Token("aud"); tok.Token != "from-secrets" {
		t.Errorf("token = %q, want the one from the CSI secrets", tok.Token)
	}
	if got.Secrets["user"] != "u" || len(got.Secrets) != 1 {
		t.Errorf("secrets = %v", got.Secrets)
	}
	if p := h.scripted.last().GetPermission(); p != "420" {
		t.Errorf("permission = %q", p)
	}
	// Empty secrets are the literal null.
	tgt2 := h.target("b")
	if err := h.pub.Publish(t.Context(), h.req(tgt2, "scripted")); err != nil {
		t.Fatal(err)
	}
	if s := h.scripted.last().GetSecrets(); s != "null" {
		t.Errorf("empty secrets sent as %q, want null", s)
	}
}

func TestMissingProviderFailsFast(t *testing.T) {
	h := newHarness(t, rotation.Policy{})
	tgt := h.target("a")
	start := time.Now()
	err := h.pub.Publish(t.Context(), h.req(tgt, "missing"))
	if Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "nosuchprovider") || !strings.Contains(err.Error(), "nothing-here") {
		t.Fatalf("err = %v (code %v); want Unavailable naming the provider and the directories", err, Code(err))
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
	if isTmpfs(t, tgt) {
		t.Error("failed first mount left the tmpfs mounted")
	}
}

func TestDeadSocketFailsFast(t *testing.T) {
	h := newHarness(t, rotation.Policy{})
	// A socket file with no listener behind it.
	p := filepath.Join(h.dir, "providers", "dead.sock")
	lis, err := net.Listen("unix", p)
	if err != nil {
		t.Fatal(err)
	}
	lis.(*net.UnixListener).SetUnlinkOnClose(false)
	lis.Close()
	h.spcs["ns/dead"] = newSPC("ns", "dead", "dead", nil)
	start := time.Now()
	err = h.pub.Publish(t.Context(), h.req(h.target("a"), "dead"))
	if Code(err) != codes.Unavailable {
		t.Fatalf("err = %v, want Unavailable", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("dead provider took %v to fail", d)
	}
}

func TestHostileResponsesRejected(t *testing.T) {
	ver := []*v1alpha1.ObjectVersion{{Id: "o", Version: "1"}}
	cases := map[string]*v1alpha1.MountResponse{
		"dotdot":     {ObjectVersion: ver, Files: []*v1alpha1.File{{Path: "../x", Mode: 0o644}}},
		"absolute":   {ObjectVersion: ver, Files: []*v1alpha1.File{{Path: "/etc/passwd", Mode: 0o644}}},
		"empty":      {ObjectVersion: ver, Files: []*v1alpha1.File{{Path: "", Mode: 0o644}}},
		"long":       {ObjectVersion: ver, Files: []*v1alpha1.File{{Path: strings.Repeat("x", 300), Mode: 0o644}}},
		"duplicate":  {ObjectVersion: ver, Files: []*v1alpha1.File{{Path: "a", Mode: 0o644}, {Path: "a", Mode: 0o644}}},
		"setuid":     {ObjectVersion: ver, Files: []*v1alpha1.File{{Path: "a", Mode: 0o4755}}},
		"negative":   {ObjectVersion: ver, Files: []*v1alpha1.File{{Path: "a", Mode: -1}}},
		"noversions": {Files: []*v1alpha1.File{{Path: "a", Mode: 0o644}}},
		"errorcode":  {ObjectVersion: ver, Error: &v1alpha1.Error{Code: "Boom"}},
	}
	h := newHarness(t, rotation.Policy{Enabled: true, Interval: time.Minute})
	for name, resp := range cases {
		t.Run(name, func(t *testing.T) {
			tgt := h.target(name)
			h.scripted.set(resp, nil)
			err := h.pub.Publish(t.Context(), h.req(tgt, "scripted"))
			// The provider's fault, not the caller's: Internal, naming it.
			if Code(err) != codes.Internal || !strings.Contains(err.Error(), `provider "scripted"`) {
				t.Fatalf("err = %v (code %v), want Internal naming the provider", err, Code(err))
			}
			if isTmpfs(t, tgt) {
				t.Error("rejected first mount left the tmpfs mounted")
			}
			if _, err := os.Stat("/etc/passwd.sscsi"); err == nil {
				t.Error("wrote outside the target")
			}
		})
	}
	// On rotation, a hostile answer keeps the previous payload.
	tgt := h.target("rot")
	h.scripted.set(&v1alpha1.MountResponse{ObjectVersion: ver, Files: []*v1alpha1.File{{Path: "good", Mode: 0o644, Contents: []byte("g")}}}, nil)
	if err := h.pub.Publish(t.Context(), h.req(tgt, "scripted")); err != nil {
		t.Fatal(err)
	}
	h.scripted.set(cases["dotdot"], nil)
	h.advance(time.Hour)
	if err := h.pub.Publish(t.Context(), h.req(tgt, "scripted")); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(tgt, "good")); got != "g" {
		t.Fatalf("payload after hostile rotation = %q", got)
	}
}

func TestProviderCrashMidCall(t *testing.T) {
	h := newHarness(t, rotation.Policy{})
	tgt := h.target("a")
	h.scripted.mu.Lock()
	h.scripted.hook = func() { go h.scrSrv.Stop(); time.Sleep(200 * time.Millisecond) }
	h.scripted.mu.Unlock()
	h.scripted.set(&v1alpha1.MountResponse{ObjectVersion: []*v1alpha1.ObjectVersion{{Id: "o", Version: "1"}}, Files: []*v1alpha1.File{{Path: "o", Mode: 0o644}}}, nil)
	err := h.pub.Publish(t.Context(), h.req(tgt, "scripted"))
	if c := Code(err); c != codes.Unavailable && c != codes.Canceled {
		t.Fatalf("err = %v (code %v), want Unavailable", err, c)
	}
	if isTmpfs(t, tgt) {
		t.Error("tmpfs left mounted")
	}
}

func TestLegacyProviderWritesItself(t *testing.T) {
	h := newHarness(t, rotation.Policy{Enabled: true, Interval: time.Minute})
	tgt := h.target("a")
	h.scripted.set(&v1alpha1.MountResponse{ObjectVersion: []*v1alpha1.ObjectVersion{{Id: "o", Version: "1"}}}, nil)
	if err := h.pub.Publish(t.Context(), h.req(tgt, "scripted")); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(tgt, "legacy.txt")); got != "from-provider" {
		t.Fatalf("legacy file = %q", got)
	}
	// A later driver-written payload removes what the legacy provider left.
	h.scripted.set(&v1alpha1.MountResponse{ObjectVersion: []*v1alpha1.ObjectVersion{{Id: "o", Version: "2"}}, Files: []*v1alpha1.File{{Path: "o", Mode: 0o644, Contents: []byte("x")}}}, nil)
	h.advance(time.Hour)
	if err := h.pub.Publish(t.Context(), h.req(tgt, "scripted")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(tgt, "legacy.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("legacy file still there: %v", err)
	}
}

func TestSPCErrors(t *testing.T) {
	h := newHarness(t, rotation.Policy{})
	h.spcs["ns/noprov"] = newSPC("ns", "noprov", "", nil)
	h.spcs["ns/badprov"] = newSPC("ns", "badprov", "../../etc", nil)
	for name, want := range map[string]codes.Code{"nope": codes.NotFound, "noprov": codes.FailedPrecondition, "badprov": codes.FailedPrecondition} {
		err := h.pub.Publish(t.Context(), h.req(h.target(name), name))
		if Code(err) != want || !strings.Contains(err.Error(), "ns/"+name) {
			t.Errorf("%s: err = %v (code %v), want %v naming ns/%s", name, err, Code(err), want, name)
		}
	}
	r := h.req(h.target("x"), "fake")
	delete(r.VolumeContext, AttrSPC)
	if err := h.pub.Publish(t.Context(), r); Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "secretProviderClass") {
		t.Errorf("missing attribute: %v", err)
	}
}

func TestUnpublish(t *testing.T) {
	h := newHarness(t, rotation.Policy{})
	if err := h.pub.Unpublish(t.Context(), filepath.Join(h.dir, "never-existed")); err != nil {
		t.Errorf("unknown path: %v", err)
	}
	plain := filepath.Join(h.dir, "plain")
	if err := os.MkdirAll(plain, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := h.pub.Unpublish(t.Context(), plain); err != nil {
		t.Errorf("unmounted dir: %v", err)
	}
	tgt := h.target("a")
	if err := h.pub.Publish(t.Context(), h.req(tgt, "fake")); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := h.pub.Unpublish(t.Context(), tgt); err != nil {
			t.Fatalf("unpublish #%d: %v", i, err)
		}
	}
	if isTmpfs(t, tgt) {
		t.Error("still mounted")
	}
	if _, err := os.Stat(tgt); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("target dir still exists: %v", err)
	}
	if h.pub.Volumes() != 0 {
		t.Errorf("volume state not forgotten")
	}
}

// TestFSGroup: with the pod's fsGroup the tmpfs root, the payload
// directories and the files are group-owned, files group-readable with no
// world bits, on the first mount and after a rotation; without a group the
// modes are the provider's and the group root's (upstream).
func TestFSGroup(t *testing.T) {
	h := newHarness(t, rotation.Policy{Enabled: true, Interval: time.Minute})
	gid := uint32(2000)
	check := func(tgt string, group *uint32, want map[string]os.FileMode) {
		t.Helper()
		for p, mode := range want {
			fi, err := os.Stat(filepath.Join(tgt, p))
			if err != nil {
				t.Fatal(err)
			}
			g := fi.Sys().(*syscall.Stat_t).Gid
			wantG := uint32(0)
			if group != nil {
				wantG = *group
			}
			if fi.Mode().Perm() != mode || g != wantG {
				t.Errorf("%s: mode %o gid %d, want %o %d", p, fi.Mode().Perm(), g, mode, wantG)
			}
		}
	}
	withGroup := h.target("g")
	req := h.req(withGroup, "fake")
	req.Group = &gid
	if err := h.pub.Publish(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	check(withGroup, &gid, map[string]os.FileMode{".": 0o750, "user": 0o640, "pass": 0o640})
	h.fake.Set("user", []byte("bob"))
	h.advance(2 * time.Minute)
	if err := h.pub.Publish(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(withGroup, "user")); got != "bob" {
		t.Fatalf("user after rotation = %q", got)
	}
	check(withGroup, &gid, map[string]os.FileMode{".": 0o750, "user": 0o640, "pass": 0o640})

	plain := h.target("p")
	if err := h.pub.Publish(t.Context(), h.req(plain, "fake")); err != nil {
		t.Fatal(err)
	}
	check(plain, nil, map[string]os.FileMode{".": 0o755, "user": 0o644, "pass": 0o600})

	// A legacy provider writes into the volume itself: its files are given
	// to the group too.
	h.scripted.set(&v1alpha1.MountResponse{ObjectVersion: []*v1alpha1.ObjectVersion{{Id: "x", Version: "1"}}}, nil)
	legacy := h.target("l")
	req = h.req(legacy, "scripted")
	req.Group = &gid
	if err := h.pub.Publish(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	check(legacy, &gid, map[string]os.FileMode{".": 0o750, "legacy.txt": 0o640})
}

// TestUpstreamPhrases: every FailedMount message that scripts and alerts
// written for the upstream driver match on is in ours too, next to our hint.
func TestUpstreamPhrases(t *testing.T) {
	h := newHarness(t, rotation.Policy{})
	h.spcs["ns/noprov"] = newSPC("ns", "noprov", "", nil)
	ver := []*v1alpha1.ObjectVersion{{Id: "o", Version: "1"}}
	cases := []struct {
		name, spc string
		resp      *v1alpha1.MountResponse
		phrases   []string
	}{
		{"class missing", "nope", nil, []string{"failed to get secretproviderclass ns/nope", "create it in the pod's namespace"}},
		{"provider unset", "noprov", nil, []string{"provider not set in ns/noprov", "spec.provider is empty"}},
		{"no provider socket", "missing", nil, []string{"failed to mount secrets store objects for pod ns/pod", `error connecting to provider "nosuchprovider"`, "provider not found", "is the \"nosuchprovider\" provider installed"}},
		{"error code", "scripted", &v1alpha1.MountResponse{ObjectVersion: ver, Error: &v1alpha1.Error{Code: "Boom"}}, []string{"failed to mount secrets store objects for pod ns/pod", "mount request failed with provider error code Boom"}},
		{"no versions", "scripted", &v1alpha1.MountResponse{Files: []*v1alpha1.File{{Path: "a", Mode: 0o644}}}, []string{"failed to mount secrets store objects for pod ns/pod", "missing object versions"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.resp != nil {
				h.scripted.set(c.resp, nil)
			}
			err := h.pub.Publish(t.Context(), h.req(h.target(strings.ReplaceAll(c.name, " ", "-")), c.spc))
			if err == nil {
				t.Fatal("mount succeeded")
			}
			for _, p := range c.phrases {
				if !strings.Contains(err.Error(), p) {
					t.Errorf("message %q lacks %q", err, p)
				}
			}
		})
	}
	r := h.req(h.target("noattr"), "fake")
	delete(r.VolumeContext, AttrSPC)
	if err := h.pub.Publish(t.Context(), r); err == nil || !strings.Contains(err.Error(), "secretProviderClass is not set") {
		t.Errorf("missing attribute: %v", err)
	}
}
