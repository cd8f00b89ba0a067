package atomicfs

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// tmpfsDir mounts a real tmpfs, as the driver does for a volume.
func tmpfsDir(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test mounts a tmpfs and changes ownership: run it as root")
	}
	dir := t.TempDir()
	// t.TempDir's parent is 0700: let the non-root readers below through.
	if err := os.Chmod(filepath.Dir(dir), 0o711); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0755,size=1m"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, 0) })
	return dir
}

func statOf(t *testing.T, p string, follow bool) (fs.FileMode, uint32) {
	t.Helper()
	var st unix.Stat_t
	var err error
	if follow {
		err = unix.Stat(p, &st)
	} else {
		err = unix.Lstat(p, &st)
	}
	if err != nil {
		t.Fatal(err)
	}
	return fs.FileMode(st.Mode & 0o777), st.Gid
}

// readAs reads p in a child process running as uid 1000 with the given
// supplementary groups, like a non-root container.
func readAs(p string, groups ...uint32) (string, error) {
	cmd := exec.Command("/bin/cat", p)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 1000, Gid: 3000, Groups: groups}}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestWithGroup: with a group every payload file and directory is owned by
// it, files gain group read and lose every "other" bit, directories are 0750;
// a non-root process in the group reads the files, one outside it cannot; a
// rotation keeps all of that and an unchanged payload is not rewritten.
func TestWithGroup(t *testing.T) {
	const gid = 2000
	dir := tmpfsDir(t)
	if err := ApplyGroup(dir, gid); err != nil {
		t.Fatal(err)
	}
	if m, g := statOf(t, dir, false); m != 0o750 || g != gid {
		t.Fatalf("volume root: mode %o gid %d, want 750 %d", m, g, gid)
	}
	payload := []File{
		{Path: "token", Mode: 0o440, Contents: []byte("t1")},
		{Path: "db/password", Mode: 0o644, Contents: []byte("p1")},
		{Path: "owner-only", Mode: 0o400, Contents: []byte("o1")},
		{Path: "world", Mode: 0o777, Contents: []byte("w1")},
	}
	contents := map[string]string{"token": "t", "db/password": "p", "owner-only": "o", "world": "w"}
	want := map[string]fs.FileMode{"token": 0o440, "db/password": 0o640, "owner-only": 0o440, "world": 0o770}
	check := func(gen string) {
		t.Helper()
		for p, m := range want {
			full := filepath.Join(dir, p)
			if gm, g := statOf(t, full, true); gm != m || g != gid {
				t.Errorf("%s: mode %o gid %d, want %o %d", p, gm, g, m, gid)
			}
			if got, err := readAs(full, gid); err != nil || got != contents[p]+gen {
				t.Errorf("uid 1000 in group %d reading %s: %q, %v", gid, p, got, err)
			}
			if _, err := readAs(full); err == nil {
				t.Errorf("uid 1000 outside group %d read %s", gid, p)
			}
		}
		entries := []string{DataDir, "db", filepath.Join(DataDir, "db"), "token"}
		ts, err := os.Readlink(filepath.Join(dir, DataDir))
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, ts)
		for _, e := range entries {
			if _, g := statOf(t, filepath.Join(dir, e), false); g != gid {
				t.Errorf("%s: gid %d, want %d", e, g, gid)
			}
		}
		for _, d := range []string{ts, filepath.Join(ts, "db")} {
			if m, _ := statOf(t, filepath.Join(dir, d), false); m != 0o750 {
				t.Errorf("directory %s: mode %o, want 750", d, m)
			}
		}
	}
	if changed, err := Write(dir, payload, Limits{}, WithGroup(gid)); err != nil || !changed {
		t.Fatalf("first write: changed=%v err=%v", changed, err)
	}
	check("1")
	if changed, err := Write(dir, payload, Limits{}, WithGroup(gid)); err != nil || changed {
		t.Fatalf("same payload again: changed=%v err=%v, want no rewrite", changed, err)
	}
	for i := range payload {
		payload[i].Contents = []byte(strings.Replace(string(payload[i].Contents), "1", "2", 1))
	}
	if changed, err := Write(dir, payload, Limits{}, WithGroup(gid)); err != nil || !changed {
		t.Fatalf("rotation: changed=%v err=%v", changed, err)
	}
	check("2")
}

// TestWithoutGroup: without a group nothing changes from upstream: modes
// exactly as given, root's group, 0755 directories.
func TestWithoutGroup(t *testing.T) {
	dir := tmpfsDir(t)
	if _, err := Write(dir, []File{{Path: "a/b", Mode: 0o440, Contents: []byte("x")}, {Path: "c", Mode: 0o604, Contents: []byte("y")}}, Limits{}); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]fs.FileMode{"a/b": 0o440, "c": 0o604, "a": 0o755} {
		if m, g := statOf(t, filepath.Join(dir, p), true); m != want || g != 0 {
			t.Errorf("%s: mode %o gid %d, want %o 0", p, m, g, want)
		}
	}
	if _, err := readAs(filepath.Join(dir, "a/b"), 2000); err == nil {
		t.Error("uid 1000 read a 0440 root file without a group")
	}
	if got, err := readAs(filepath.Join(dir, "c")); err != nil || got != "y" {
		t.Errorf("uid 1000 reading a world-readable file: %q %v", got, err)
	}
}

// TestApplyGroupLegacy: files a legacy provider wrote into the volume itself
// are given to the group the same way.
func TestApplyGroupLegacy(t *testing.T) {
	dir := tmpfsDir(t)
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sub", "f"), []byte("v"), 0o604); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := ApplyGroup(dir, 2000); err != nil {
		t.Fatal(err)
	}
	if m, g := statOf(t, filepath.Join(dir, "sub", "f"), false); m != 0o640 || g != 2000 {
		t.Errorf("sub/f: mode %o gid %d", m, g)
	}
	if m, g := statOf(t, filepath.Join(dir, "sub"), false); m != 0o750 || g != 2000 {
		t.Errorf("sub: mode %o gid %d", m, g)
	}
	if _, g := statOf(t, "/etc/passwd", false); g == 2000 {
		t.Error("ApplyGroup followed a symlink out of the volume")
	}
}

// TestWriteManyFilesOnTmpfs: on a tmpfs the files' descriptors are closed
// in batches (closeFDs); every file is complete, has its mode, and no
// descriptor is left open.
func TestWriteManyFilesOnTmpfs(t *testing.T) {
	dir := tmpfsDir(t)
	var in []File
	for i := range 100 {
		in = append(in, File{Path: fmt.Sprintf("d%d/f-%03d", i%3, i), Mode: fs.FileMode(0o600 + i%2*0o40), Contents: []byte(fmt.Sprintf("value %d", i))})
	}
	before := openFDs(t)
	if _, err := Write(dir, in, Limits{}); err != nil {
		t.Fatal(err)
	}
	if after := openFDs(t); after != before {
		t.Errorf("%d descriptors open after Write, %d before", after, before)
	}
	got, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(in) {
		t.Fatalf("read %d files, wrote %d", len(got), len(in))
	}
	want := map[string]File{}
	for _, f := range in {
		want[f.Path] = f
	}
	for _, f := range got {
		w := want[f.Path]
		if string(f.Contents) != string(w.Contents) || f.Mode != w.Mode {
			t.Errorf("%s: %q %v, want %q %v", f.Path, f.Contents, f.Mode, w.Contents, w.Mode)
		}
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
