package publish

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
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
	for _, bad := range []string{"{", `{"fetched":0}`, `{"fetched":5,"versions":[{"id":""}]}`, `{"fetched":5,"unconfirmedStatus":{"pod":"p"}}`, strings.Repeat("x", 100)} {
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
	v := &volume{lastFetch: time.Unix(1_700_000_000, 42), provider: "p", versions: []*v1alpha1.ObjectVersion{{Id: "a", Version: "1"}},
		unconfirmed: &statusOwner{Namespace: "n", Pod: "p", UID: "u", SPC: "s"}}
	b, err := encodeRecord(v)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeRecord(b)
	if err != nil || !got.lastFetch.Equal(v.lastFetch) || got.provider != "p" || len(got.versions) != 1 || got.versions[0].GetVersion() != "1" ||
		got.unconfirmed == nil || *got.unconfirmed != *v.unconfirmed {
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
	f.Add([]byte(`{"fetched":1,"provider":"p","versions":[{"id":"a","version":"1"}],"unconfirmedStatus":{"namespace":"n","pod":"p","uid":"u","spc":"s"}}`))
	f.Add([]byte(`{"fetched":1,"unconfirmedStatus":{"pod":"p"}}`))
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
		if u := v.unconfirmed; u != nil && (u.Namespace == "" || u.Pod == "" || u.SPC == "") {
			t.Fatalf("accepted an unconfirmed status without its object's identity: %+v", u)
		}
	})
}

// recordOf reads the volume record on target.
func recordOf(t *testing.T, target string) record {
	t.Helper()
	b, err := tmpfs.NewOS().LoadState(target)
	if err != nil || b == nil {
		t.Fatalf("record on %s: %q, %v", target, b, err)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func (s *statusLog) count() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.got) }

func (s *statusLog) lastOutcome(t *testing.T) Outcome {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.got) == 0 {
		t.Fatal("no status recorded")
	}
	return s.got[len(s.got)-1]
}

// TestUnconfirmedStatusResumedAfterRestart: a volume whose status write was
// never confirmed (the driver died inside the writer's window or while the
// API server was away) has it recorded again by the restarted driver, from
// the record alone; a volume whose write was confirmed costs nothing.
func TestUnconfirmedStatusResumedAfterRestart(t *testing.T) {
	h := newHarness(t, rotation.Policy{})
	lost, kept := h.target("lost"), h.target("kept")
	for _, tgt := range []string{lost, kept} {
		if err := h.pub.Publish(t.Context(), h.req(tgt, "fake")); err != nil {
			t.Fatal(err)
		}
	}
	if n := h.status.count(); n != 2 {
		t.Fatalf("%d statuses recorded for 2 first mounts", n)
	}
	want := h.status.lastOutcome(t)
	for _, tgt := range []string{lost, kept} {
		if u := recordOf(t, tgt).Unconfirmed; u == nil || *u != (statusOwner{Namespace: "ns", Pod: "pod", UID: "uid-1", SPC: "fake"}) {
			t.Fatalf("record of %s before the write: unconfirmedStatus = %+v", filepath.Base(filepath.Dir(tgt)), u)
		}
	}
	h.pub.StatusWritten(kept, want.Versions)
	if u := recordOf(t, kept).Unconfirmed; u != nil {
		t.Fatalf("confirmed status still unconfirmed in the record: %+v", u)
	}

	h.restart()
	other := filepath.Join(h.dir, "not-a-volume")
	if err := os.MkdirAll(other, 0o755); err != nil {
		t.Fatal(err)
	}
	before := h.status.count()
	if n := h.pub.ResumeStatus([]string{lost, kept, other}); n != 1 {
		t.Fatalf("ResumeStatus handed over %d statuses, want 1 (only the unconfirmed volume)", n)
	}
	if h.status.count() != before+1 {
		t.Fatalf("%d statuses recorded by ResumeStatus, want 1", h.status.count()-before)
	}
	got := h.status.lastOutcome(t)
	if got.TargetPath != lost || got.Pod != (Pod{Namespace: "ns", Name: "pod", UID: "uid-1"}) || got.SPC.Name != "fake" || got.SPC.Namespace != "ns" ||
		!slices.Equal(got.Versions, want.Versions) {
		t.Fatalf("resumed status = %+v (spc %+v), want target %s, pod ns/pod uid-1, spc fake, versions %v", got, got.SPC, lost, want.Versions)
	}
	// The republishes that follow neither fetch nor record again.
	for _, tgt := range []string{lost, kept} {
		if err := h.pub.Publish(t.Context(), h.req(tgt, "fake")); err != nil {
			t.Fatal(err)
		}
	}
	if h.status.count() != before+1 || h.fake.Calls() != 2 {
		t.Fatalf("after the republishes: %d more statuses, %d provider calls; want 1, 2", h.status.count()-before, h.fake.Calls())
	}
	// The writer confirms: a second restart has nothing to resume.
	h.pub.StatusWritten(lost, got.Versions)
	h.restart()
	if n := h.pub.ResumeStatus([]string{lost, kept}); n != 0 {
		t.Fatalf("ResumeStatus after the confirmation handed over %d, want 0", n)
	}
}

// TestStatusRecordedOnlyWhenItChanges: an unchanged rotation, also the
// first one after a restart (the writer's memory is empty then), records
// no status; a changed one does, and a late confirmation of the previous
// versions does not confirm the new ones.
func TestStatusRecordedOnlyWhenItChanges(t *testing.T) {
	h := newHarness(t, rotation.Policy{Enabled: true, Interval: time.Minute})
	tgt := h.target("a")
	v1 := &v1alpha1.MountResponse{ObjectVersion: []*v1alpha1.ObjectVersion{{Id: "o", Version: "v1"}}, Files: []*v1alpha1.File{{Path: "o", Mode: 0o644, Contents: []byte("one")}}}
	h.scripted.set(v1, nil)
	if err := h.pub.Publish(t.Context(), h.req(tgt, "scripted")); err != nil {
		t.Fatal(err)
	}
	first := h.status.lastOutcome(t)
	h.pub.StatusWritten(tgt, first.Versions)

	h.restart()
	h.advance(2 * time.Minute)
	if err := h.pub.Publish(t.Context(), h.req(tgt, "scripted")); err != nil {
		t.Fatal(err)
	}
	if c := len(h.scripted.reqs); c != 2 {
		t.Fatalf("provider called %d times, want 2 (a rotation was due)", c)
	}
	if n := h.status.count(); n != 1 {
		t.Fatalf("%d statuses recorded, want 1: an unchanged rotation after a restart must not write the status", n)
	}

	h.scripted.set(&v1alpha1.MountResponse{ObjectVersion: []*v1alpha1.ObjectVersion{{Id: "o", Version: "v2"}}, Files: []*v1alpha1.File{{Path: "o", Mode: 0o644, Contents: []byte("two")}}}, nil)
	h.advance(2 * time.Minute)
	if err := h.pub.Publish(t.Context(), h.req(tgt, "scripted")); err != nil {
		t.Fatal(err)
	}
	if n := h.status.count(); n != 2 {
		t.Fatalf("%d statuses recorded, want 2 after a change", n)
	}
	h.pub.StatusWritten(tgt, first.Versions) // late, for v1
	if u := recordOf(t, tgt).Unconfirmed; u == nil {
		t.Fatal("a confirmation of the previous versions confirmed the new ones")
	}
	h.pub.StatusWritten(tgt, h.status.lastOutcome(t).Versions)
	if u := recordOf(t, tgt).Unconfirmed; u != nil {
		t.Fatalf("unconfirmedStatus = %+v after the confirmation of the current versions", u)
	}
}

// TestStatusConfirmationNeverWritesBelowTheMount: a confirmation arriving
// after the volume was unpublished, or after its tmpfs vanished, writes no
// record, in particular not on kubelet's directory below the mount.
func TestStatusConfirmationNeverWritesBelowTheMount(t *testing.T) {
	h := newHarness(t, rotation.Policy{})
	tgt := h.target("a")
	if err := h.pub.Publish(t.Context(), h.req(tgt, "fake")); err != nil {
		t.Fatal(err)
	}
	versions := h.status.lastOutcome(t).Versions

	// Unpublish has begun (it forgets the volume before unmounting).
	h.pub.forget(tgt)
	h.pub.StatusWritten(tgt, versions)
	if u := recordOf(t, tgt).Unconfirmed; u == nil {
		t.Fatal("a confirmation after the volume was forgotten wrote its record")
	}

	// The tmpfs vanished behind the driver's back while it was known.
	h.restart()
	if h.pub.state(tgt) == nil {
		t.Fatal("record not loaded")
	}
	if err := unix.Unmount(tgt, 0); err != nil {
		t.Fatal(err)
	}
	h.pub.StatusWritten(tgt, versions)
	buf := make([]byte, 64)
	if _, err := unix.Getxattr(tgt, "trusted.secrets-store.csi.k8s.io.volume", buf); !errors.Is(err, unix.ENODATA) {
		t.Fatalf("record on the directory below the mount: getxattr err = %v, want ENODATA", err)
	}
}
