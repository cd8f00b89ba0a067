package tmpfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/sscsi/secrets-store/internal/atomicfs"
)

// mountOptions returns the super options of the mount at target from
// /proc/self/mountinfo.
func mountOptions(t *testing.T, target string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == target {
			return f[len(f)-1]
		}
	}
	t.Fatalf("%s is not in mountinfo", target)
	return ""
}

func mountTmpfs(t *testing.T, lim Limits) string {
	t.Helper()
	target := filepath.Join(t.TempDir(), "vol")
	o := NewOS()
	if err := o.Mount(target, lim); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := o.Unmount(target); err != nil {
			t.Error(err)
		}
	})
	return target
}

func TestMountCapsInodes(t *testing.T) {
	target := mountTmpfs(t, Limits{SizeBytes: 1 << 20, Inodes: 64})
	opts := mountOptions(t, target)
	if !strings.Contains(opts, "nr_inodes=64") || !strings.Contains(opts, "size=1024k") {
		t.Fatalf("mount options %q lack nr_inodes=64 and size=1024k", opts)
	}
	// Directories cost no bytes of the size cap; the inode cap stops them.
	var err error
	n := 0
	for ; n < 1000 && err == nil; n++ {
		err = os.Mkdir(filepath.Join(target, fmt.Sprintf("d%d", n)), 0o755)
	}
	if !errors.Is(err, syscall.ENOSPC) || n > 64 {
		t.Fatalf("made %d directories in a tmpfs of 64 inodes (last error %v)", n, err)
	}
}

// TestWorstAcceptedPayloadFits: a payload at every limit at once, and its
// replacement by another, fit in the inode cap derived from the limits.
func TestWorstAcceptedPayloadFits(t *testing.T) {
	lim := atomicfs.Limits{MaxFiles: 200, MaxDirs: 50, MaxDepth: 4}
	target := mountTmpfs(t, Limits{SizeBytes: 16 << 20, Inodes: lim.Inodes()})
	for round := range 3 {
		var files []atomicfs.File
		for i := range lim.MaxDirs {
			files = append(files, atomicfs.File{Path: fmt.Sprintf("r%d-d%d/x/y", round, i), Mode: 0o644})
		}
		for i := len(files); i < lim.MaxFiles; i++ {
			files = append(files, atomicfs.File{Path: fmt.Sprintf("r%d-f%d", round, i), Mode: 0o644})
		}
		// MaxDirs counts every directory: r-d/x is one more per entry.
		if err := atomicfs.Validate(files, lim); err == nil {
			t.Fatal("a payload of twice MaxDirs directories was accepted")
		}
		files = files[:0]
		for i := range lim.MaxDirs {
			files = append(files, atomicfs.File{Path: fmt.Sprintf("r%d-d%d/f", round, i), Mode: 0o644})
		}
		for i := len(files); i < lim.MaxFiles; i++ {
			files = append(files, atomicfs.File{Path: fmt.Sprintf("r%d-f%d", round, i), Mode: 0o644})
		}
		if _, err := atomicfs.Write(target, files, lim); err != nil {
			t.Fatalf("round %d: worst accepted payload does not fit in %d inodes: %v", round, lim.Inodes(), err)
		}
	}
}

// TestIsMountPoint: a mounted tmpfs, a directory inside it, a plain
// directory, a missing path, a bind mount on the same file system (which a
// device comparison cannot see) and the target after Unmount.
func TestIsMountPoint(t *testing.T) {
	o := NewOS()
	target := mountTmpfs(t, Limits{SizeBytes: 1 << 20, Inodes: 64})
	inside := filepath.Join(target, "dir")
	plain := t.TempDir()
	if err := os.Mkdir(inside, 0o755); err != nil {
		t.Fatal(err)
	}
	bind := filepath.Join(target, "bind")
	if err := os.Mkdir(bind, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount(inside, bind, "", syscall.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(bind, 0) })
	for path, want := range map[string]bool{
		target: true, inside: false, plain: false, filepath.Join(plain, "missing"): false, bind: true,
	} {
		got, err := o.IsMountPoint(path)
		if err != nil || got != want {
			t.Errorf("IsMountPoint(%s) = %v, %v; want %v", path, got, err, want)
		}
	}
	if err := syscall.Unmount(bind, 0); err != nil {
		t.Fatal(err)
	}
	if err := o.Unmount(target); err != nil {
		t.Fatal(err)
	}
	if got, err := o.IsMountPoint(target); err != nil || got {
		t.Errorf("after Unmount: IsMountPoint = %v, %v; want false", got, err)
	}
}

// TestUnmount: a busy mount is reported (kubelet retries), a directory that
// is not a mount point and a missing path are not errors.
func TestUnmount(t *testing.T) {
	o := NewOS()
	target := mountTmpfs(t, Limits{SizeBytes: 1 << 20, Inodes: 64})
	f, err := os.Open(target)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Unmount(target); !errors.Is(err, syscall.EBUSY) {
		t.Errorf("Unmount of a busy mount = %v, want EBUSY", err)
	}
	_ = f.Close()
	for _, p := range []string{target, target, t.TempDir(), filepath.Join(t.TempDir(), "missing")} {
		if err := o.Unmount(p); err != nil {
			t.Errorf("Unmount(%s) = %v", p, err)
		}
	}
	if got, _ := o.IsMountPoint(target); got {
		t.Error("still mounted after Unmount")
	}
}
