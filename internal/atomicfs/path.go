// Package atomicfs writes a set of files into a directory so that readers
// see either the whole old set or the whole new set, never a mix, using the
// layout of kubelet's Secret and ConfigMap volumes: the payload lives in a
// hidden timestamped directory, "..data" is a symlink to it that is swapped
// with a rename, and every user-visible top-level entry is a symlink into
// "..data". It also owns validation of untrusted relative paths.
package atomicfs

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
)

// Limits bound a payload. Zero values mean the defaults below.
type Limits struct {
	// MaxFiles is the largest number of files in one payload.
	MaxFiles int
	// MaxTotalBytes is the largest sum of file sizes in one payload.
	MaxTotalBytes int64
	// MaxDirs is the largest number of distinct directories the payload's
	// paths create (not counting the payload directory itself).
	MaxDirs int
	// MaxDepth is the largest number of components of one path ("a/b/c"
	// has 3).
	MaxDepth int
}

// Default limits: generous for real secrets, small enough that a hostile
// provider cannot fill a node's memory through one volume.
const (
	DefaultMaxFiles      = 1000
	DefaultMaxTotalBytes = 64 << 20
	// DefaultMaxDirs and DefaultMaxDepth bound the directories a payload
	// creates: every directory is an inode and a dentry in kernel memory,
	// which the tmpfs size cap does not count.
	DefaultMaxDirs  = 256
	DefaultMaxDepth = 16
	// MaxPathLength is the longest relative path accepted (bytes).
	MaxPathLength = 1024
	// maxComponentLength is NAME_MAX on Linux.
	maxComponentLength = 255
)

func (l Limits) withDefaults() Limits {
	if l.MaxFiles <= 0 {
		l.MaxFiles = DefaultMaxFiles
	}
	if l.MaxTotalBytes <= 0 {
		l.MaxTotalBytes = DefaultMaxTotalBytes
	}
	if l.MaxDirs <= 0 {
		l.MaxDirs = DefaultMaxDirs
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultMaxDepth
	}
	return l
}

// Inodes returns the most inodes a volume written by Write within these
// limits can hold at any moment: two payloads during a swap (each its
// directory, its files and its directories), one top-level link per file,
// the ..data and ..data_tmp links, the volume root and a small margin. The
// driver mounts each tmpfs with this nr_inodes, so a provider that writes
// into the volume itself is bounded too.
func (l Limits) Inodes() int64 {
	l = l.withDefaults()
	perPayload := int64(l.MaxFiles) + int64(l.MaxDirs) + 1
	return 2*perPayload + int64(l.MaxFiles) + 2 + 1 + inodeMargin
}

// inodeMargin leaves room for the kernel's own accounting (the root inode
// of a tmpfs counts in some kernels) and a legacy provider's temp files.
const inodeMargin = 16

// Sentinel errors. Every validation error wraps ErrInvalidPayload, so callers
// can map all of them to one status code with errors.Is.
var (
	// ErrInvalidPayload: the files handed to Write are not acceptable.
	ErrInvalidPayload = errors.New("invalid payload")
	// ErrForeignLayout: the volume's ..data link was not written by this
	// package or kubelet's writer (it points outside the volume, at a
	// non-directory, or at a name no writer makes); nothing is read
	// through it or removed.
	ErrForeignLayout = errors.New("invalid volume layout")
)

// ValidatePath reports whether p is an acceptable relative file path: not
// empty, not absolute, already clean, no ".." component, no component that
// starts with ".." (reserved for the writer's own entries), no NUL byte, and
// within the length limits.
func ValidatePath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("%w: path is empty", ErrInvalidPayload)
	case len(p) > MaxPathLength:
		return fmt.Errorf("%w: path %.40q... is longer than %d bytes", ErrInvalidPayload, p, MaxPathLength)
	case strings.ContainsRune(p, 0):
		return fmt.Errorf("%w: path %q contains a NUL byte", ErrInvalidPayload, p)
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("%w: path %q is absolute; paths must be relative to the volume", ErrInvalidPayload, p)
	case path.Clean(p) != p || p == ".":
		return fmt.Errorf("%w: path %q is not clean (use %q)", ErrInvalidPayload, p, path.Clean(p))
	}
	for _, c := range strings.Split(p, "/") {
		if c == ".." {
			return fmt.Errorf("%w: path %q contains '..'", ErrInvalidPayload, p)
		}
		if strings.HasPrefix(c, "..") {
			return fmt.Errorf("%w: path %q has a component starting with '..', which is reserved", ErrInvalidPayload, p)
		}
		if len(c) > maxComponentLength {
			return fmt.Errorf("%w: path %.40q... has a component longer than %d bytes", ErrInvalidPayload, p, maxComponentLength)
		}
	}
	return nil
}

// ValidateMode accepts permission bits only: no setuid, setgid, sticky or
// file-type bits.
func ValidateMode(p string, m fs.FileMode) error {
	if m&^fs.ModePerm != 0 {
		return fmt.Errorf("%w: file %q has mode %#o; only permission bits (0000-0777) are allowed", ErrInvalidPayload, p, uint32(m))
	}
	return nil
}

// File is one file of a payload.
type File struct {
	Path     string
	Mode     fs.FileMode
	Contents []byte
}

// Validate checks a whole payload before anything is written: every path
// and mode, duplicates, a path that is both a file and a directory, and the
// limits.
func Validate(files []File, lim Limits) error {
	lim = lim.withDefaults()
	if len(files) > lim.MaxFiles {
		return fmt.Errorf("%w: %d files exceed the limit of %d", ErrInvalidPayload, len(files), lim.MaxFiles)
	}
	seen := make(map[string]bool, len(files))
	dirs := make(map[string]bool)
	var total int64
	for _, f := range files {
		if err := ValidatePath(f.Path); err != nil {
			return err
		}
		if depth := strings.Count(f.Path, "/") + 1; depth > lim.MaxDepth {
			return fmt.Errorf("%w: path %.80q has %d components; at most %d are allowed", ErrInvalidPayload, f.Path, depth, lim.MaxDepth)
		}
		for dir := path.Dir(f.Path); dir != "." && !dirs[dir]; dir = path.Dir(dir) {
			dirs[dir] = true
			if len(dirs) > lim.MaxDirs {
				return fmt.Errorf("%w: path %.80q: the payload creates more than %d directories", ErrInvalidPayload, f.Path, lim.MaxDirs)
			}
		}
		if err := ValidateMode(f.Path, f.Mode); err != nil {
			return err
		}
		if seen[f.Path] {
			return fmt.Errorf("%w: path %q appears more than once", ErrInvalidPayload, f.Path)
		}
		seen[f.Path] = true
		total += int64(len(f.Contents))
		if total > lim.MaxTotalBytes {
			return fmt.Errorf("%w: total size exceeds the limit of %d bytes", ErrInvalidPayload, lim.MaxTotalBytes)
		}
	}
	for dir := range dirs {
		if seen[dir] {
			return fmt.Errorf("%w: path %q is a file and also a parent directory of another file", ErrInvalidPayload, dir)
		}
	}
	return nil
}
