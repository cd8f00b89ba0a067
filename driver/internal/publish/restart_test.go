package publish

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"github.com/sscsi/secrets-store/driver/internal/rotation"
	"github.com/sscsi/secrets-store/driver/internal/tmpfs"
	"github.com/sscsi/secrets-store/internal/atomicfs"
)

// restart replaces the Publisher with a new one, as a restarted driver
// process has: nothing in memory, the same mounts on the node.
func (h *harness) restart() {
	h.t.Helper()
	p, err := New(h.cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	h.pub = p
}

// mountCount is how many mounts are stacked at p.
func mountCount(t *testing.T, p string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[1] == p {
			n++
		}
	}
	return n
}

func TestRestartKnowsLastFetchAndVersions(t *testing.T) {
	h := newHarness(t, rotation.Policy{Enabled: true, Interval: time.Minute})
	tgt := h.target("a")
	h.scripted.set(&v1alpha1.MountResponse{
		ObjectVersion: []*v1alpha1.ObjectVersion{{Id: "o", Version: "v1"}, {Id: "p", Version: "v7"}},
		Files:         []*v1alpha1.File{{Path: "o", Mode: 0o644, Contents: []byte("one")}},
	}, nil)
	if err := h.pub.Publish(t.Context(), h.req(tgt, "scripted")); err != nil {
		t.Fatal(err)
	}
	calls := func() int { h.scripted.mu.Lock(); defer h.scripted.mu.Unlock(); return len(h.scripted.reqs) }

	// A restarted driver inside the interval: no fetch.
	h.restart()
	h.advance(20 * time.Second)
	if err := h.pub.Publish(t.Context(), h.req(tgt, "scripted")); err != nil {
		t.Fatal(err)
	}
	if c := calls(); c != 1 {
		t.Fatalf("provider called %d times after a restart inside the interval, want 1 (the first mount)", c)
	}
	if got := readFile(t, filepath.Join(tgt, "o")); got != "one" {
		t.Fatalf("file after restart = %q", got)
	}

	// Restarted again, past the interval: one fetch carrying the versions
	// recorded before the restart.
	h.restart()
	h.advance(time.Minute)
	if err := h.pub.Publish(t.Context(), h.req(tgt, "scripted")); err != nil {
		t.Fatal(err)
	}
	if c := calls(); c != 2 {
		t.Fatalf("provider called %d times after the interval, want 2", c)
	}
	cv := h.scripted.last().GetCurrentObjectVersion()
	if len(cv) != 2 || cv[0].GetId() != "o" || cv[0].GetVersion() != "v1" || cv[1].GetId() != "p" || cv[1].GetVersion() != "v7" {
		t.Fatalf("current_object_version after restart = %v, want o=v1 p=v7", cv)
	}
	// The record disappears with the mount.
	if err := h.pub.Unpublish(t.Context(), tgt); err != nil {
		t.Fatal(err)
	}
	if h.pub.Volumes() != 0 {
		t.Error("volume still remembered after unpublish")
	}
}

func TestRestartWithoutRotationDoesNotFetch(t *testing.T) {
	h := newHarness(t, rotation.Policy{})
	tgt := h.target("a")
	if err := h.pub.Publish(t.Context(), h.req(tgt, "fake")); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		h.restart()
		h.advance(time.Hour)
		if err := h.pub.Publish(t.Context(), h.req(tgt, "fake")); err != nil {
			t.Fatal(err)
		}
	}
	if c := h.fake.Calls(); c != 1 {
		t.Fatalf("provider called %d times across restarts, want 1", c)
	}
}

// TestInterruptedFirstMount: a driver that died after mount(2) and before
// recording leaves an empty (or half-written) tmpfs; kubelet's retry must
// get a complete volume on a single mount, not success on an empty one.
func TestInterruptedFirstMount(t *testing.T) {
	for _, tc := range []struct {
		name  string
		leave func(t *testing.T, dir string)
	}{
		{"empty tmpfs", func(*testing.T, string) {}},
		{"half-written payload directory", func(t *testing.T, dir string) {
			half := filepath.Join(dir, "..2026_01_01_00_00_00.123")
			if err := os.MkdirAll(half, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(half, "user"), []byte("ali"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, rotation.Policy{})
			tgt := h.target("a")
			if err := h.cfg.Mounter.Mount(tgt, tmpfs.Limits{SizeBytes: 1 << 20}); err != nil {
				t.Fatal(err)
			}
			tc.leave(t, tgt)
			if err := h.pub.Publish(t.Context(), h.req(tgt, "fake")); err != nil {
				t.Fatal(err)
			}
			if got := readFile(t, filepath.Join(tgt, "user")); got != "alice" {
				t.Fatalf("user = %q", got)
			}
			if n := mountCount(t, tgt); n != 1 {
				t.Fatalf("%d mounts stacked at the target, want 1", n)
			}
			if _, err := os.Stat(filepath.Join(tgt, "..2026_01_01_00_00_00.123")); err == nil {
				t.Error("half-written payload directory left behind")
			}
			if err := h.pub.Publish(t.Context(), h.req(tgt, "fake")); err != nil {
				t.Fatal(err)
			}
			if c := h.fake.Calls(); c != 1 {
				t.Fatalf("provider called %d times, want 1", c)
			}
		})
	}
}

// TestPayloadWithoutRecord: a driver died after swapping ..data and before
// all links and the record were made. The next republish fetches once (even
// with rotation off), completes the links, and records.
func TestPayloadWithoutRecord(t *testing.T) {
	h := newHarness(t, rotation.Policy{})
	tgt := h.target("a")
	if err := h.cfg.Mounter.Mount(tgt, tmpfs.Limits{SizeBytes: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	files := []atomicfs.File{{Path: "user", Mode: 0o644, Contents: []byte("alice")}, {Path: "pass", Mode: 0o600, Contents: []byte("s3cr3t-value")}}
	if _, err := atomicfs.Write(tgt, files, atomicfs.Limits{}); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(tgt, "pass")); err != nil {
		t.Fatal(err)
	}
	if err := h.pub.Publish(t.Context(), h.req(tgt, "fake")); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(tgt, "pass")); got != "s3cr3t-value" {
		t.Fatalf("pass = %q", got)
	}
	h.restart()
	if err := h.pub.Publish(t.Context(), h.req(tgt, "fake")); err != nil {
		t.Fatal(err)
	}
	if c := h.fake.Calls(); c != 1 {
		t.Fatalf("provider called %d times, want 1", c)
	}
}

// TestUnreadableRecordIsRefetched: a record that does not parse counts as
// none; the volume is fetched again and recorded anew.
func TestUnreadableRecordIsRefetched(t *testing.T) {
	h := newHarness(t, rotation.Policy{})
	tgt := h.target("a")
	if err := h.pub.Publish(t.Context(), h.req(tgt, "fake")); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"{", `{"fetched":0}`, `{"fetched":5,"versions":[{"id":""}]}`, strings.Repeat("x", 100)} {
		if err := unix.Setxattr(tgt, "trusted.secrets-store.csi.k8s.io.volume", []byte(bad), 0); err != nil {
			t.Fatal(err)
		}
		h.restart()
		before := h.fake.Calls()
		if err := h.pub.Publish(t.Context(), h.req(tgt, "fake")); err != nil {
			t.Fatalf("record %q: %v", bad, err)
		}
		if h.fake.Calls() != before+1 {
			t.Fatalf("record %q: not fetched again", bad)
		}
		if got := readFile(t, filepath.Join(tgt, "user")); got != "alice" {
			t.Fatalf("user = %q", got)
		}
	}
}

func TestRecordRoundTripAndBound(t *testing.T) {
	v := &volume{lastFetch: time.Unix(1_700_000_000, 42), provider: "p", versions: []*v1alpha1.ObjectVersion{{Id: "a", Version: "1"}}}
	b, err := encodeRecord(v)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeRecord(b)
	if err != nil || !got.lastFetch.Equal(v.lastFetch) || got.provider != "p" || len(got.versions) != 1 || got.versions[0].GetVersion() != "1" {
		t.Fatalf("round trip = %+v, %v", got, err)
	}
	// Versions too large to keep are dropped, the fetch time stays.
	big := &volume{lastFetch: v.lastFetch, provider: "p"}
	for i := 0; i < 200; i++ {
		big.versions = append(big.versions, &v1alpha1.ObjectVersion{Id: strings.Repeat("i", 100), Version: strings.Repeat("v", 100)})
	}
	b, err = encodeRecord(big)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := decodeRecord(b); err != nil || len(got.versions) != 0 || !got.lastFetch.Equal(v.lastFetch) {
		t.Fatalf("oversized record = %+v, %v", got, err)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add([]byte(`{"fetched":1,"provider":"p","versions":[{"id":"a","version":"1"}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := decodeRecord(b)
		if err != nil {
			return
		}
		if v.lastFetch.IsZero() {
			t.Fatal("accepted a record without a fetch time")
		}
		for _, o := range v.versions {
			if o.GetId() == "" {
				t.Fatal("accepted an empty id")
			}
		}
	})
}
