// Package tmpfs mounts and unmounts the in-memory filesystems that hold a
// volume's secrets, so that secret material never reaches a persistent disk.
package tmpfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
	mount "k8s.io/mount-utils"
)

// Mounter is the small surface of mount syscalls the driver uses.
type Mounter interface {
	// Mount mounts a tmpfs of at most sizeBytes at target (created if
	// missing).
	Mount(target string, sizeBytes int64) error
	// Unmount unmounts target; a target that is not mounted or does not
	// exist is not an error.
	Unmount(target string) error
	// IsMountPoint reports whether target is a mount point; false, nil when
	// it does not exist.
	IsMountPoint(target string) (bool, error)
}

// OS mounts real tmpfs filesystems through k8s.io/mount-utils.
type OS struct {
	m mount.Interface
}

// NewOS returns the real Mounter.
func NewOS() *OS { return &OS{m: mount.New("")} }

var _ Mounter = (*OS)(nil)

// Mount implements Mounter. Options: nosuid, nodev, noexec, mode=0755 and a
// size cap, as a secret volume needs no more.
func (o *OS) Mount(target string, sizeBytes int64) error {
	if err := os.MkdirAll(target, 0o750); err != nil {
		return fmt.Errorf("create target directory: %w", err)
	}
	data := "mode=0755"
	if sizeBytes > 0 {
		data += ",size=" + strconv.FormatInt(sizeBytes, 10)
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
	mounted, err := o.IsMountPoint(target)
	if err != nil || !mounted {
		return err
	}
	// umount(2) directly, for the same reason as in Mount. MNT_DETACH would
	// hide a busy mount; a plain unmount reports it so kubelet retries.
	if err := unix.Unmount(target, 0); err != nil {
		return fmt.Errorf("unmount %s: %w", target, err)
	}
	return nil
}

// IsMountPoint implements Mounter. A tmpfs is always a different device
// from its parent directory, so the cheap device comparison is exact here;
// a corrupted (stale) mount counts as mounted so that it gets unmounted.
func (o *OS) IsMountPoint(target string) (bool, error) {
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
