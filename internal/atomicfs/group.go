package atomicfs

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Option changes how Write lays out a payload.
type Option func(*options)

type options struct {
	// gid owns the payload when >= 0; -1 leaves files to the writing
	// process (root) with the modes exactly as given.
	gid int
}

func newOptions(opts []Option) options {
	o := options{gid: -1}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// WithGroup makes the payload readable by group gid and by nobody else
// besides its owner: every file and directory is chowned to the group,
// files get group read and lose all "other" bits (mode&^0o007|0o040),
// directories are 0750. This is how a pod's fsGroup (CSI
// volume_mount_group) reaches the files, so a non-root container whose
// supplementary groups include gid can read them.
func WithGroup(gid uint32) Option {
	return func(o *options) { o.gid = int(gid) }
}

func (o options) fileMode(m fs.FileMode) fs.FileMode {
	if o.gid < 0 {
		return m
	}
	return m&^0o007 | 0o040
}

func (o options) dirMode() fs.FileMode {
	if o.gid < 0 {
		return dirMode
	}
	return 0o750
}

// own gives p (a file or directory, never followed if a symlink) to the
// group and sets mode on anything that is not a symlink.
func (o options) own(p string, mode fs.FileMode, symlink bool) error {
	if o.gid < 0 {
		if symlink {
			return nil
		}
		return os.Chmod(p, mode)
	}
	if err := os.Lchown(p, -1, o.gid); err != nil {
		return err
	}
	if symlink {
		return nil
	}
	return os.Chmod(p, mode)
}

// groupMatches reports whether info's group is the wanted one (always true
// without WithGroup).
func (o options) groupMatches(info fs.FileInfo) bool {
	if o.gid < 0 {
		return true
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	return ok && int(st.Gid) == o.gid
}

// ApplyGroup gives everything under dir, dir included, to group gid with
// the modes WithGroup uses: for the volume's root directory (a fresh tmpfs)
// and for files a legacy provider wrote into the volume itself. Symlinks
// are chowned, never followed.
func ApplyGroup(dir string, gid uint32) error {
	o := options{gid: int(gid)}
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var mode fs.FileMode
		symlink := d.Type()&fs.ModeSymlink != 0
		switch {
		case symlink:
		case d.IsDir():
			mode = o.dirMode()
		default:
			info, err := d.Info()
			if err != nil {
				return err
			}
			mode = o.fileMode(info.Mode().Perm())
		}
		if err := o.own(p, mode, symlink); err != nil {
			return fmt.Errorf("give %s to group %d: %w", p, gid, err)
		}
		return nil
	})
}
