package atomicfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// DataDir is the symlink that points at the current payload directory.
	DataDir    = "..data"
	dataTmp    = "..data_tmp"
	tsPrefix   = ".."
	tsLayout   = "2006_01_02_15_04_05."
	dirMode    = 0o755
	reservedPf = ".."
)

// Write makes dir hold exactly files, atomically. It returns changed=false
// without touching anything when the current payload already has the same
// paths, modes and contents. Nothing is written when validation fails, and a
// failure while writing leaves the previous payload in place.
//
// Options (WithGroup) change ownership and modes; without them files keep
// the modes given and directories are 0755, as with upstream.
//
// The caller serialises calls for one dir.
func Write(dir string, files []File, lim Limits, opts ...Option) (changed bool, err error) {
	if err := Validate(files, lim); err != nil {
		return false, err
	}
	o := newOptions(opts)
	if o.gid >= 0 {
		own := make([]File, len(files))
		for i, f := range files {
			f.Mode = o.fileMode(f.Mode)
			own[i] = f
		}
		files = own
	}
	oldTS, err := currentPayload(dir)
	if err != nil {
		return false, err
	}
	// The top-level entries of dir, when known from the first write's
	// listing (saves listing it again after the swap).
	var listed []fs.DirEntry
	if oldTS != "" {
		old, err := OpenPayload(dir)
		if err != nil {
			return false, err
		}
		same, err := payloadEqual(old, files, o)
		old.Close()
		if err != nil {
			return false, err
		}
		if same {
			// A writer that died between the swap and the links left some
			// top-level names missing; make them whole (cheap when they are).
			return false, syncTopLevel(dir, files, o, nil)
		}
	} else if listed, err = removeLegacyEntries(dir); err != nil {
		return false, err
	}

	tsDir, err := os.MkdirTemp(dir, tsPrefix+time.Now().UTC().Format(tsLayout))
	if err != nil {
		return false, fmt.Errorf("create payload directory: %w", err)
	}
	tsName := filepath.Base(tsDir)
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(tsDir)
		}
	}()
	// The payload directory stays 0700 (root only) while its files are
	// written, so that nobody sees a file before it is complete; it gets
	// its final mode and group just before the swap.
	fsync := needsSync(tsDir)
	// Files are opened relative to the payload directory: one path
	// component to resolve instead of the whole target path (a fifth of
	// the CPU of writing 100 small files below a kubelet volume path). We
	// just created it: never through a symlink.
	tsFD, err := openDir(tsDir, syscallNoFollow)
	if err != nil {
		return false, fmt.Errorf("open payload directory: %w", err)
	}
	// On a tmpfs the written files' descriptors are closed together
	// (closeFDs); fsync'd files are closed one by one, each close checked.
	var open []int
	for _, f := range files {
		var fd int
		if fd, err = writeFile(tsFD, tsDir, f, o, fsync); err != nil {
			break
		}
		if fd >= 0 {
			if open = append(open, fd); len(open) == closeBatch {
				closeFDs(open)
				open = open[:0]
			}
		}
	}
	closeFDs(open)
	if cerr := syscall.Close(tsFD); err == nil && cerr != nil {
		err = fmt.Errorf("close payload directory: %w", cerr)
	}
	if err != nil {
		return false, err
	}
	if err := o.own(tsDir, o.dirMode(), false); err != nil {
		return false, fmt.Errorf("chmod payload directory: %w", err)
	}

	if err := swapData(dir, tsName, o); err != nil {
		return false, err
	}
	ok = true

	if err := syncTopLevel(dir, files, o, listed); err != nil {
		return true, err
	}
	if oldTS != "" {
		if err := os.RemoveAll(filepath.Join(dir, oldTS)); err != nil {
			return true, fmt.Errorf("remove old payload: %w", err)
		}
	}
	return true, nil
}

// swapData points ..data at the payload directory tsName in one rename. A
// ..data_tmp left by a writer that died is replaced.
func swapData(dir, tsName string, o options) error {
	tmp := filepath.Join(dir, dataTmp)
	err := os.Symlink(tsName, tmp)
	if errors.Is(err, fs.ErrExist) {
		_ = os.RemoveAll(tmp)
		err = os.Symlink(tsName, tmp)
	}
	if err != nil {
		return fmt.Errorf("create %s link: %w", dataTmp, err)
	}
	if err := o.own(tmp, 0, true); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("chown %s link: %w", dataTmp, err)
	}
	// rename(2) itself: os.Rename would lstat ..data first, to refuse
	// replacing a directory, which rename(2) refuses for a link anyway.
	if err := syscall.Rename(tmp, filepath.Join(dir, DataDir)); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("swap %s link: %w", DataDir, &os.LinkError{Op: "rename", Old: tmp, New: filepath.Join(dir, DataDir), Err: err})
	}
	return nil
}

// HasPayload reports whether dir shows files to a reader: a ..data link, or
// entries a provider wrote itself. A payload directory without a ..data
// link (a writer that died before the swap) is not a payload.
func HasPayload(dir string) (bool, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, fmt.Errorf("list volume: %w", err)
	}
	for _, e := range entries {
		if e.Name() == DataDir || !strings.HasPrefix(e.Name(), reservedPf) {
			return true, nil
		}
	}
	return false, nil
}

// currentPayload returns the name of the directory ..data points at, or ""
// when dir holds no ..data link. The link is trusted only when it names a
// payload directory of the kind Write (and kubelet's writer) creates: a
// "..<timestamp>.<digits>" directory directly inside dir, itself not a
// link. A provider that writes into the volume could otherwise point it at
// ".." or "/etc" and make the driver read or remove what it points at.
func currentPayload(dir string) (string, error) {
	target, err := os.Readlink(filepath.Join(dir, DataDir))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("%w: read %s link: %v", ErrForeignLayout, DataDir, err)
	}
	if !payloadName.MatchString(target) {
		return "", fmt.Errorf("%w: %s link points at %.80q, not at a payload directory inside the volume", ErrForeignLayout, DataDir, target)
	}
	fi, err := os.Lstat(filepath.Join(dir, target))
	if err != nil {
		return "", fmt.Errorf("%w: %s link points at %q: %v", ErrForeignLayout, DataDir, target, err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("%w: %s link points at %q, which is not a directory", ErrForeignLayout, DataDir, target)
	}
	return target, nil
}

// payloadName matches the payload directories os.MkdirTemp makes from
// tsPrefix+tsLayout: "..2006_01_02_15_04_05.<digits>".
var payloadName = regexp.MustCompile(`^\.\.[0-9]{4}(_[0-9]{2}){5}\.[0-9]{1,20}$`)

// OpenPayload opens the files a reader of dir sees, as a handle rooted
// there: the directory ..data names when the link is valid, else dir
// itself when there is no link (a provider that wrote plain files). Every
// read through the handle stays inside it (os.Root). A ..data link that
// does not name a payload directory inside dir is ErrForeignLayout.
func OpenPayload(dir string) (*os.Root, error) {
	vol, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open volume: %w", err)
	}
	defer vol.Close()
	ts, err := currentPayload(dir)
	if err != nil {
		return nil, err
	}
	if ts == "" {
		return vol.OpenRoot(".")
	}
	return vol.OpenRoot(ts)
}

// openDir opens dir for *at system calls; flags adds open flags.
func openDir(dir string, flags int) (int, error) {
	fd, err := ignoringEINTR(func() (int, error) {
		return syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC|flags, 0)
	})
	if err != nil {
		return -1, &fs.PathError{Op: "open", Path: dir, Err: err}
	}
	return fd, nil
}

// closeBatch bounds how many written files' descriptors a Write holds open
// at once before closing them together.
const closeBatch = 16

// closeFDs closes descriptors this process owns: each run of consecutive
// numbers with one close_range(2), which cannot touch anyone else's
// descriptor since every number in the run is one of ours. 100 small files
// cost a third fewer system calls. Descriptors of files on a tmpfs only:
// closing them reports nothing that matters.
func closeFDs(fds []int) {
	slices.Sort(fds)
	for i := 0; i < len(fds); {
		j := i
		for j+1 < len(fds) && fds[j+1] == fds[j]+1 {
			j++
		}
		//nolint:gosec // G115: descriptors are non-negative
		if j == i || unix.CloseRange(uint(fds[i]), uint(fds[j]), 0) != nil {
			// One descriptor, or a kernel without close_range (before
			// 5.9), which then closed nothing.
			for _, fd := range fds[i : j+1] {
				_ = syscall.Close(fd)
			}
		}
		i = j + 1
	}
}

// writeFile creates f below root, whose descriptor is rootFD. Without fsync
// it returns the file's descriptor still open for the caller to close
// (closeFDs); with fsync, or on error, the file is closed and fd is -1.
func writeFile(rootFD int, root string, f File, o options, fsync bool) (fd int, err error) {
	rel := filepath.FromSlash(f.Path)
	if strings.Contains(f.Path, "/") {
		p := filepath.Join(root, rel)
		if err := mkdirs(root, filepath.Dir(p), o); err != nil {
			return -1, fmt.Errorf("create directory for %q: %w", f.Path, err)
		}
	}
	// Without a group the file is created with its mode (the payload
	// directory is still closed to others); a chmod follows only when the
	// umask took bits away. With a group it is 0600 until chowned.
	perm, chmod := fs.FileMode(0o600), true
	if o.gid < 0 {
		perm, chmod = f.Mode, f.Mode&^processUmask() != f.Mode
	}
	// Plain system calls on the descriptor: os.File would also register it
	// with the network poller (four fcntl and an epoll_ctl per file, more
	// than the write itself for a small secret).
	fd, err = ignoringEINTR(func() (int, error) {
		return syscall.Openat(rootFD, rel, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_EXCL|syscall.O_CLOEXEC|syscallNoFollow, uint32(perm.Perm()))
	})
	if err != nil {
		return -1, fmt.Errorf("create %q: %w", f.Path, &fs.PathError{Op: "open", Path: filepath.Join(root, rel), Err: err})
	}
	werr := writeAll(fd, f.Contents)
	if werr == nil && o.gid >= 0 {
		werr = syscall.Fchown(fd, -1, o.gid)
	}
	if werr == nil && chmod {
		// The umask must not change the mode the provider asked for.
		werr = syscall.Fchmod(fd, uint32(f.Mode.Perm()))
	}
	if werr == nil && !fsync {
		return fd, nil
	}
	if werr == nil {
		werr = syscall.Fsync(fd)
	}
	if cerr := syscall.Close(fd); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return -1, fmt.Errorf("write %q: %w", f.Path, &fs.PathError{Op: "write", Path: filepath.Join(root, rel), Err: werr})
	}
	return -1, nil
}

// writeAll writes b to fd, retrying short and interrupted writes.
func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := syscall.Write(fd, b)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrShortWrite
		}
		b = b[n:]
	}
	return nil
}

// ignoringEINTR retries fn while it is interrupted by a signal.
func ignoringEINTR(fn func() (int, error)) (int, error) {
	for {
		n, err := fn()
		if !errors.Is(err, syscall.EINTR) {
			return n, err
		}
	}
}

// mkdirs creates dir and its missing parents below root with the payload's
// directory mode and group.
func mkdirs(root, dir string, o options) error {
	if dir == root {
		return nil
	}
	if _, err := os.Lstat(dir); err == nil {
		return nil
	}
	if err := mkdirs(root, filepath.Dir(dir), o); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	return o.own(dir, o.dirMode(), false)
}

// payloadEqual reports whether the regular files under root are exactly
// files (paths, modes, contents and, with a group, group ownership).
func payloadEqual(root *os.Root, files []File, o options) (bool, error) {
	want := make(map[string]File, len(files))
	for _, f := range files {
		want[f.Path] = f
	}
	n := 0
	differ := errors.New("differ")
	err := fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		f, ok := want[p]
		if !ok || !d.Type().IsRegular() {
			return differ
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Mode().Perm() != f.Mode || info.Size() != int64(len(f.Contents)) || !o.groupMatches(info) {
			return differ
		}
		got, err := root.ReadFile(p)
		if err != nil {
			return err
		}
		if !bytes.Equal(got, f.Contents) {
			return differ
		}
		n++
		return nil
	})
	if errors.Is(err, differ) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("compare with current payload: %w", err)
	}
	return n == len(files), nil
}

// syncTopLevel makes the visible top-level entries exactly the symlinks
// name -> ..data/name for the payload's top-level names. entries are dir's
// top-level entries when the caller has just listed them (nil: list).
func syncTopLevel(dir string, files []File, o options, entries []fs.DirEntry) error {
	top := make(map[string]bool)
	for _, f := range files {
		first, _, _ := strings.Cut(f.Path, "/")
		top[first] = true
	}
	if entries == nil {
		var err error
		if entries, err = os.ReadDir(dir); err != nil {
			return fmt.Errorf("list volume: %w", err)
		}
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, reservedPf) {
			continue
		}
		if top[name] && e.Type()&fs.ModeSymlink != 0 {
			if t, err := os.Readlink(filepath.Join(dir, name)); err == nil && t == path.Join(DataDir, name) {
				delete(top, name)
				continue
			}
		}
		if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("remove stale entry %q: %w", name, err)
		}
	}
	if len(top) == 0 {
		return nil
	}
	// Links are made relative to the volume directory (see Write).
	dirFD, err := openDir(dir, 0)
	if err != nil {
		return fmt.Errorf("open volume: %w", err)
	}
	defer func() { _ = syscall.Close(dirFD) }()
	for name := range top {
		if err := unix.Symlinkat(path.Join(DataDir, name), dirFD, name); err != nil {
			return fmt.Errorf("link %q: %w", name, &fs.PathError{Op: "symlink", Path: filepath.Join(dir, name), Err: err})
		}
		if err := o.own(filepath.Join(dir, name), 0, true); err != nil {
			return fmt.Errorf("chown link %q: %w", name, err)
		}
	}
	return nil
}

// removeLegacyEntries deletes top-level entries that are not symlinks, left
// by a provider that wrote into the volume itself, before the first payload
// written here, and returns the entries left (never nil).
func removeLegacyEntries(dir string) ([]fs.DirEntry, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list volume: %w", err)
	}
	left := make([]fs.DirEntry, 0, len(entries))
	for _, e := range entries {
		if e.Type()&fs.ModeSymlink != 0 {
			left = append(left, e)
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return nil, fmt.Errorf("remove legacy entry %q: %w", e.Name(), err)
		}
	}
	return left, nil
}

// Read returns the payload currently visible in dir (for tests and for
// comparing what a provider wrote itself), read through OpenPayload. Only
// regular files are returned.
func Read(dir string) ([]File, error) {
	root, err := OpenPayload(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	var out []File
	err = fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != "." && strings.HasPrefix(d.Name(), reservedPf) {
			return fs.SkipDir
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		b, err := root.ReadFile(p)
		if err != nil {
			return err
		}
		out = append(out, File{Path: p, Mode: info.Mode().Perm(), Contents: b})
		return nil
	})
	return out, err
}

// needsSync reports whether files written under dir need an fsync: not on
// a tmpfs (the driver's volumes), whose files live only in memory and
// where fsync does nothing but cost a system call per file.
func needsSync(dir string) bool {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return true
	}
	return st.Type != tmpfsMagic
}

// tmpfsMagic is TMPFS_MAGIC, the f_type statfs(2) reports for a tmpfs.
const tmpfsMagic = 0x01021994

// processUmask is the process's umask, read once from /proc/self/status
// (umask(2) cannot read it without setting it); 0777 when unknown, so
// that every file gets an explicit chmod.
var processUmask = sync.OnceValue(func() fs.FileMode {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0o777
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Umask:"); ok {
			m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
			if err != nil || m > 0o777 {
				return 0o777
			}
			return fs.FileMode(m)
		}
	}
	return 0o777
})
