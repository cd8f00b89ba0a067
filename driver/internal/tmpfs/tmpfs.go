// Package tmpfs mounts and unmounts the in-memory filesystems that hold a
// volume's secrets, so that secret material never reaches a persistent disk.
package tmpfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
	mount "k8s.io/mount-utils"
)

// Limits bound one tmpfs. Zero values mean the kernel defaults (half of RAM
// for both), which a volume should never get.
type Limits struct {
	// SizeBytes caps the bytes of file contents.
	SizeBytes int64
	// Inodes caps files, directories and symlinks (nr_inodes): their
	// kernel memory is not counted in SizeBytes.
	Inodes int64
}

// Mounter is the small surface of mount syscalls the driver uses.
type Mounter interface {
	// Mount mounts a tmpfs bounded by lim at target (created if missing).
	Mount(target string, lim Limits) error
	// Unmount unmounts target; a target that is not mounted or does not
	// exist is not an error.
	Unmount(target string) error
	// IsMountPoint reports whether target is a mount point; false, nil when
	// it does not exist.
	IsMountPoint(target string) (bool, error)
	// SaveState stores b (at most MaxStateBytes) with the mounted tmpfs at
	// target, replacing what was stored: it lives exactly as long as the
	// mount, in memory, and survives a restart of the driver.
	SaveState(target string, b []byte) error
	// LoadState returns what SaveState stored at target; nil, nil when
	// nothing was stored.
	LoadState(target string) ([]byte, error)
}

// MaxStateBytes bounds what SaveState stores (the kernel's limit on one
// extended attribute value is 64 KiB).
const MaxStateBytes = 16 << 10

// stateAttr is the extended attribute on the tmpfs root that holds the
// driver's record of the volume. The trusted namespace needs CAP_SYS_ADMIN
// to read or write, so the pod neither sees nor changes it, and tmpfs keeps
// it in memory with the mount.
const stateAttr = "trusted.secrets-store.csi.k8s.io.volume"

// OS mounts real tmpfs filesystems through k8s.io/mount-utils.
type OS struct {
	m mount.Interface
}

// NewOS returns the real Mounter.
func NewOS() *OS { return &OS{m: mount.New("")} }

var _ Mounter = (*OS)(nil)

// Mount implements Mounter. Options: nosuid, nodev, noexec, mode=0755, a
// size cap and an inode cap, as a secret volume needs no more.
func (o *OS) Mount(target string, lim Limits) error {
	// kubelet creates the target's parent directory: one mkdir(2) is the
	// usual case; an existing target is used as it is.
	if err := os.Mkdir(target, 0o750); errors.Is(err, fs.ErrNotExist) {
		err = os.MkdirAll(target, 0o750)
		if err != nil {
			return fmt.Errorf("create target directory: %w", err)
		}
	} else if err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create target directory: %w", err)
	}
	data := "mode=0755"
	if lim.SizeBytes > 0 {
		data += ",size=" + strconv.FormatInt(lim.SizeBytes, 10)
	}
	if lim.Inodes > 0 {
		data += ",nr_inodes=" + strconv.FormatInt(lim.Inodes, 10)
	}
	// The mount(2) syscall directly: mount-utils' Mount forks /bin/mount,
	// which costs ~10 ms per volume and most of a publish's latency.
	if err := unix.Mount("tmpfs", target, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, data); err != nil {
		return fmt.Errorf("mount tmpfs at %s: %w", target, err)
	}
	return nil
}

// Unmount implements Mounter.
func (o *OS) Unmount(target string) error {
	// umount(2) directly, for the same reason as in Mount, and without a
	// mount point check first: the kernel answers EINVAL for a path that is
	// not a mount point and ENOENT for a missing one. MNT_DETACH would hide
	// a busy mount; a plain unmount reports it (EBUSY) so kubelet retries.
	err := unix.Unmount(target, 0)
	switch {
	case err == nil, errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
		return nil
	default:
		return fmt.Errorf("unmount %s: %w", target, err)
	}
}

// SaveState implements Mounter.
func (o *OS) SaveState(target string, b []byte) error {
	if len(b) > MaxStateBytes {
		return fmt.Errorf("volume state of %d bytes exceeds %d", len(b), MaxStateBytes)
	}
	if err := unix.Setxattr(target, stateAttr, b, 0); err != nil {
		return fmt.Errorf("store volume state on %s: %w", target, err)
	}
	return nil
}

// LoadState implements Mounter.
func (o *OS) LoadState(target string) ([]byte, error) {
	buf := make([]byte, MaxStateBytes)
	n, err := unix.Getxattr(target, stateAttr, buf)
	switch {
	case errors.Is(err, unix.ENODATA):
		return nil, nil
	case errors.Is(err, unix.ERANGE):
		return nil, fmt.Errorf("volume state on %s exceeds %d bytes", target, MaxStateBytes)
	case err != nil:
		return nil, fmt.Errorf("read volume state on %s: %w", target, err)
	}
	return buf[:n], nil
}

// Mounted returns the tmpfs mount points below dir, from the mount table:
// at start, the volumes that a previous driver process mounted.
func (o *OS) Mounted(dir string) ([]string, error) {
	mps, err := o.m.List()
	if err != nil {
		return nil, fmt.Errorf("list mounts: %w", err)
	}
	prefix := filepath.Clean(dir) + "/"
	var out []string
	for _, mp := range mps {
		if mp.Type == "tmpfs" && strings.HasPrefix(mp.Path, prefix) {
			out = append(out, mp.Path)
		}
	}
	return out, nil
}

// IsMountPoint implements Mounter. A tmpfs is always a different device
// from its parent directory, so the cheap device comparison is exact here;
// a corrupted (stale) mount counts as mounted so that it gets unmounted.
func (o *OS) IsMountPoint(target string) (bool, error) {
	// One statx(2) answers it since Linux 5.8 (STATX_ATTR_MOUNT_ROOT);
	// mount-utils compares the device of the target with its parent's (two
	// stats, and a bind mount of the same filesystem goes unseen). Errors
	// (a missing target, a corrupted mount) are told apart below.
	var st unix.Statx_t
	err := unix.Statx(unix.AT_FDCWD, target, unix.AT_STATX_DONT_SYNC, 0, &st)
	switch {
	case err == nil && st.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0:
		return st.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0, nil
	case errors.Is(err, unix.ENOENT):
		return false, nil
	}
	notMnt, err := o.m.IsLikelyNotMountPoint(target)
	switch {
	case err == nil:
		return !notMnt, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case mount.IsCorruptedMnt(err):
		return true, nil
	default:
		return false, fmt.Errorf("check mount point %s: %w", target, err)
	}
}
