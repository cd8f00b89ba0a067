package atomicfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func files(kv ...string) []File {
	var out []File
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, File{Path: kv[i], Mode: 0o644, Contents: []byte(kv[i+1])})
	}
	return out
}

func readVisible(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if strings.HasPrefix(rel, "..") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type()&os.ModeSymlink != 0 {
			// Follow top-level links like a reader would.
			fi, err := os.Stat(p)
			if err != nil {
				return err
			}
			if fi.IsDir() {
				return filepath.WalkDir(p+"/", func(q string, e os.DirEntry, err error) error {
					if err != nil || e.IsDir() {
						return err
					}
					r, _ := filepath.Rel(p, q)
					b, err := os.ReadFile(q)
					out[filepath.Join(rel, r)] = string(b)
					return err
				})
			}
			b, err := os.ReadFile(p)
			out[rel] = string(b)
			return err
		}
		if !d.IsDir() {
			b, err := os.ReadFile(p)
			out[rel] = string(b)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestWriteLayoutAndModes(t *testing.T) {
	dir := t.TempDir()
	in := []File{
		{Path: "a", Mode: 0o600, Contents: []byte("A")},
		{Path: "nested/deep/b", Mode: 0o640, Contents: []byte("B")},
		{Path: "empty", Mode: 0o644},
		// Bits a usual umask (022) takes away must still be set.
		{Path: "shared", Mode: 0o666, Contents: []byte("S")},
	}
	changed, err := Write(dir, in, Limits{})
	if err != nil || !changed {
		t.Fatalf("Write = %v, %v; want changed", changed, err)
	}
	got := readVisible(t, dir)
	want := map[string]string{"a": "A", "nested/deep/b": "B", "empty": "", "shared": "S"}
	if len(got) != len(want) {
		t.Fatalf("visible files = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	for _, f := range in {
		fi, err := os.Stat(filepath.Join(dir, f.Path))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != f.Mode {
			t.Errorf("%s mode = %#o, want %#o", f.Path, fi.Mode().Perm(), f.Mode)
		}
	}
	// The payload directory is closed while written, open once swapped in.
	if fi, err := os.Stat(filepath.Join(dir, DataDir)); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("payload directory = %v, %v; want mode 0755", fi, err)
	}
	if target, err := os.Readlink(filepath.Join(dir, "a")); err != nil || target != "..data/a" {
		t.Errorf("a link = %q, %v; want ..data/a", target, err)
	}
	if target, err := os.Readlink(filepath.Join(dir, "nested")); err != nil || target != "..data/nested" {
		t.Errorf("nested link = %q, %v", target, err)
	}
}

func TestWriteUnchangedIsNoop(t *testing.T) {
	dir := t.TempDir()
	in := files("a", "1", "b", "2")
	if _, err := Write(dir, in, Limits{}); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Readlink(filepath.Join(dir, DataDir))
	changed, err := Write(dir, files("b", "2", "a", "1"), Limits{})
	if err != nil || changed {
		t.Fatalf("second Write = %v, %v; want unchanged", changed, err)
	}
	after, _ := os.Readlink(filepath.Join(dir, DataDir))
	if before != after {
		t.Errorf("..data moved from %s to %s on identical payload", before, after)
	}
	// A mode change alone is a change.
	in[0].Mode = 0o600
	if changed, err := Write(dir, in, Limits{}); err != nil || !changed {
		t.Fatalf("mode change: %v, %v; want changed", changed, err)
	}
}

func TestWriteReplacesAndRemoves(t *testing.T) {
	dir := t.TempDir()
	if _, err := Write(dir, files("a", "1", "gone", "x", "d/e", "2"), Limits{}); err != nil {
		t.Fatal(err)
	}
	old, _ := os.Readlink(filepath.Join(dir, DataDir))
	if _, err := Write(dir, files("a", "one", "d/f", "3"), Limits{}); err != nil {
		t.Fatal(err)
	}
	got := readVisible(t, dir)
	if len(got) != 2 || got["a"] != "one" || got["d/f"] != "3" {
		t.Fatalf("after rewrite: %v", got)
	}
	if _, err := os.Lstat(filepath.Join(dir, "gone")); !os.IsNotExist(err) {
		t.Errorf("stale top-level link 'gone' still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, old)); !os.IsNotExist(err) {
		t.Errorf("old payload %s not removed: %v", old, err)
	}
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	if len(names) != 4 { // ..2026..., ..data, a, d
		t.Errorf("entries = %v", names)
	}
}

func TestWriteRemovesLegacyEntries(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "legacy"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "legacydir/x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Write(dir, files("a", "1"), Limits{}); err != nil {
		t.Fatal(err)
	}
	got := readVisible(t, dir)
	if len(got) != 1 || got["a"] != "1" {
		t.Fatalf("legacy entries not cleaned: %v", got)
	}
}

// TestFirstWriteOverLeftLinks: links found before the first payload (a
// writer that died after making ..data_tmp, a stale top-level link, a link
// that is already right) end as the links of the payload and nothing else.
func TestFirstWriteOverLeftLinks(t *testing.T) {
	dir := t.TempDir()
	for name, target := range map[string]string{dataTmp: "..2020_01_01_00_00_00.1", "stale": "..data/stale", "a": "..data/a"} {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Write(dir, files("a", "1", "d/e", "2"), Limits{}); err != nil {
		t.Fatal(err)
	}
	got := readVisible(t, dir)
	if len(got) != 2 || got["a"] != "1" || got["d/e"] != "2" {
		t.Fatalf("visible = %v", got)
	}
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	if len(names) != 4 || names[1] != DataDir || names[2] != "a" || names[3] != "d" { // ..2026..., ..data, a, d
		t.Errorf("entries = %v", names)
	}
}

func TestValidateRejectsHostilePayloads(t *testing.T) {
	long := strings.Repeat("a", 256)
	cases := map[string][]File{
		"dotdot":       {{Path: "../x", Mode: 0o644}},
		"inner dotdot": {{Path: "a/../../x", Mode: 0o644}},
		"absolute":     {{Path: "/etc/passwd", Mode: 0o644}},
		"empty":        {{Path: "", Mode: 0o644}},
		"dot":          {{Path: ".", Mode: 0o644}},
		"unclean":      {{Path: "a//b", Mode: 0o644}},
		"trailing":     {{Path: "a/", Mode: 0o644}},
		"reserved":     {{Path: "..data", Mode: 0o644}},
		"nul":          {{Path: "a\x00b", Mode: 0o644}},
		"long comp":    {{Path: long, Mode: 0o644}},
		"long path":    {{Path: strings.Repeat("ab/", 400) + "c", Mode: 0o644}},
		"setuid":       {{Path: "a", Mode: 0o4755}},
		"sticky":       {{Path: "a", Mode: os.ModeSticky | 0o644}},
		"duplicate":    {{Path: "a", Mode: 0o644}, {Path: "a", Mode: 0o644}},
		"file and dir": {{Path: "a", Mode: 0o644}, {Path: "a/b", Mode: 0o644}},
		"too many":     make([]File, 3),
		"too large":    {{Path: "a", Mode: 0o644, Contents: make([]byte, 101)}},
	}
	for i := range cases["too many"] {
		cases["too many"][i] = File{Path: string(rune('a' + i)), Mode: 0o644}
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := Write(dir, files("keep", "me"), Limits{}); err != nil {
				t.Fatal(err)
			}
			_, err := Write(dir, in, Limits{MaxFiles: 2, MaxTotalBytes: 100})
			if !errors.Is(err, ErrInvalidPayload) {
				t.Fatalf("Write(%v) error = %v, want ErrInvalidPayload", in, err)
			}
			if got := readVisible(t, dir); len(got) != 1 || got["keep"] != "me" {
				t.Fatalf("previous payload changed: %v", got)
			}
			if _, err := os.Stat("/etc/passwd.x"); err == nil {
				t.Fatal("wrote outside")
			}
		})
	}
}

func TestWriteRejectsForeignDataLink(t *testing.T) {
	dir := t.TempDir()
	if err := os.Symlink("/etc", filepath.Join(dir, DataDir)); err != nil {
		t.Fatal(err)
	}
	if _, err := Write(dir, files("a", "1"), Limits{}); err == nil {
		t.Fatal("Write followed a ..data link pointing outside the volume")
	}
}

func TestRead(t *testing.T) {
	dir := t.TempDir()
	in := []File{{Path: "x/y", Mode: 0o600, Contents: []byte("v")}}
	if _, err := Write(dir, in, Limits{}); err != nil {
		t.Fatal(err)
	}
	got, err := Read(dir)
	if err != nil || len(got) != 1 || got[0].Path != "x/y" || got[0].Mode != 0o600 || string(got[0].Contents) != "v" {
		t.Fatalf("Read = %+v, %v", got, err)
	}
}

func FuzzValidatePath(f *testing.F) {
	for _, s := range []string{"a", "a/b", "../a", "/a", "", "a/./b", "..data", "a/..b", "a\x00", ".hidden/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if ValidatePath(p) != nil {
			return
		}
		// Anything accepted must stay inside a root when joined.
		root := "/volume"
		j := filepath.Join(root, p)
		if !strings.HasPrefix(j, root+"/") {
			t.Fatalf("accepted %q escapes: %s", p, j)
		}
		for _, c := range strings.Split(p, "/") {
			if c == "" || c == "." || strings.HasPrefix(c, "..") {
				t.Fatalf("accepted %q with component %q", p, c)
			}
		}
	})
}

func TestValidateBoundsDirectories(t *testing.T) {
	lim := Limits{MaxDirs: 4, MaxDepth: 3}
	ok := []File{{Path: "a/b/c", Mode: 0o644}, {Path: "a/d", Mode: 0o644}, {Path: "e/f", Mode: 0o644}, {Path: "g/h", Mode: 0o644}}
	if err := Validate(ok, lim); err != nil {
		t.Fatalf("4 directories at depth 3 rejected: %v", err)
	}
	deep := []File{{Path: "a/b/c/d", Mode: 0o644}}
	if err := Validate(deep, lim); !errors.Is(err, ErrInvalidPayload) || !strings.Contains(err.Error(), `"a/b/c/d"`) {
		t.Fatalf("depth 4: err = %v, want ErrInvalidPayload naming the path", err)
	}
	many := append(ok, File{Path: "x/y", Mode: 0o644})
	if err := Validate(many, lim); !errors.Is(err, ErrInvalidPayload) || !strings.Contains(err.Error(), `"x/y"`) {
		t.Fatalf("5 directories: err = %v, want ErrInvalidPayload naming the path", err)
	}
	// The attack of the issue: a few hundred deep aliases would create
	// tens of thousands of directories; the defaults refuse it before
	// anything is written.
	var nest []File
	for i := range 300 {
		p := fmt.Sprintf("n%d", i)
		for len(p) < 1000 {
			p += "/d"
		}
		nest = append(nest, File{Path: p, Mode: 0o644})
	}
	dir := t.TempDir()
	if _, err := Write(dir, nest, Limits{}); !errors.Is(err, ErrInvalidPayload) {
		t.Fatalf("nested aliases: err = %v, want ErrInvalidPayload", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("rejected payload left %d entries", len(ents))
	}
	wide := make([]File, 0, DefaultMaxDirs+1)
	for i := range DefaultMaxDirs + 1 {
		wide = append(wide, File{Path: fmt.Sprintf("d%d/f", i), Mode: 0o644})
	}
	if err := Validate(wide, Limits{}); !errors.Is(err, ErrInvalidPayload) {
		t.Fatalf("%d directories: err = %v, want ErrInvalidPayload", len(wide), err)
	}
}

// TestDataLinkCannotRedirect: a provider that writes into the volume
// itself may leave any ..data link; only a payload directory inside the
// volume is followed, and nothing outside is read or removed.
func TestDataLinkCannotRedirect(t *testing.T) {
	for name, target := range map[string]string{
		"parent":        "..",
		"host dir":      "/etc",
		"relative out":  "../outside",
		"self":          ".",
		"payload link":  "..2024_01_01_00_00_00.1", // a symlink, made below
		"payload file":  "..2024_01_01_00_00_00.2", // a file, made below
		"reserved name": "..data_tmp",
	} {
		t.Run(name, func(t *testing.T) {
			parent := t.TempDir()
			outside := filepath.Join(parent, "outside")
			if err := os.WriteFile(outside, []byte("host"), 0o644); err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(parent, "vol")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			switch name {
			case "payload link":
				if err := os.Symlink(parent, filepath.Join(dir, target)); err != nil {
					t.Fatal(err)
				}
			case "payload file":
				if err := os.WriteFile(filepath.Join(dir, target), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Symlink(target, filepath.Join(dir, DataDir)); err != nil {
				t.Fatal(err)
			}
			if _, err := Write(dir, files("a", "1"), Limits{}); !errors.Is(err, ErrForeignLayout) {
				t.Errorf("Write: err = %v, want ErrForeignLayout", err)
			}
			if _, err := Read(dir); !errors.Is(err, ErrForeignLayout) {
				t.Errorf("Read: err = %v, want ErrForeignLayout", err)
			}
			if r, err := OpenPayload(dir); !errors.Is(err, ErrForeignLayout) {
				t.Errorf("OpenPayload: err = %v, want ErrForeignLayout", err)
				if r != nil {
					r.Close()
				}
			}
			if b, err := os.ReadFile(outside); err != nil || string(b) != "host" {
				t.Fatalf("the file next to the volume was touched: %q, %v", b, err)
			}
		})
	}
}

func TestOpenPayloadFollowsOnlyTheRealPayload(t *testing.T) {
	dir := t.TempDir()
	if _, err := Write(dir, files("x/y", "v"), Limits{}); err != nil {
		t.Fatal(err)
	}
	r, err := OpenPayload(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if b, err := r.ReadFile("x/y"); err != nil || string(b) != "v" {
		t.Fatalf("read x/y = %q, %v", b, err)
	}
	// A symlink inside the payload cannot lead out of it.
	if err := os.Symlink("/etc/hostname", filepath.Join(dir, DataDir, "x", "esc")); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadFile("x/esc"); err == nil {
		t.Fatal("read through a symlink that leaves the payload")
	}
}

// TestCloseFDsClosesOnlyThose: runs of consecutive descriptors are closed
// together, and a descriptor between them that is not in the list stays
// open.
func TestCloseFDsClosesOnlyThose(t *testing.T) {
	src, err := syscall.Open(os.DevNull, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(src)
	// Six consecutive numbers that are free in this process.
	base := 0
	for b := 600; b < 1000 && base == 0; b += 50 {
		free := true
		for i := range 6 {
			if _, err := unix.FcntlInt(uintptr(b+i), unix.F_GETFD, 0); !errors.Is(err, unix.EBADF) {
				free = false
			}
		}
		if free {
			base = b
		}
	}
	if base == 0 {
		t.Fatal("no six free consecutive descriptor numbers between 600 and 1000")
	}
	var fds []int
	for i := range 6 {
		if err := unix.Dup3(src, base+i, unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		fds = append(fds, base+i)
	}
	t.Cleanup(func() {
		for _, fd := range fds {
			_ = syscall.Close(fd)
		}
	})
	// Ours: all but the fourth, given out of order.
	closeFDs([]int{fds[5], fds[0], fds[2], fds[1], fds[4]})
	for i, fd := range fds {
		_, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if i == 3 {
			if err != nil {
				t.Errorf("descriptor %d, not in the list, was closed: %v", fd, err)
			}
			continue
		}
		if !errors.Is(err, unix.EBADF) {
			t.Errorf("descriptor %d still open (%v)", fd, err)
		}
	}
}
