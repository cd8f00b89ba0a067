// Command inodes measures the kernel memory a worst-case accepted volume
// costs: it mounts -volumes tmpfs filesystems with the driver's default
// limits (size and nr_inodes), writes into each the payload that creates the
// most inodes and the longest names the validation accepts, and reports the
// growth of Slab and Shmem in /proc/meminfo per volume. Run as root:
// `make bench-inodes` (or go run ./test/bench/inodes -volumes 50).
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/sscsi/secrets-store/internal/atomicfs"
)

func meminfo() (map[string]int64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]int64{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		var k string
		var v int64
		if _, err := fmt.Sscanf(strings.Replace(s.Text(), ":", " ", 1), "%s %d", &k, &v); err == nil {
			out[k] = v
		}
	}
	return out, s.Err()
}

// worst is the accepted payload with the most inodes and the longest
// names: MaxDirs top-level directories and MaxFiles files with 255-byte
// components, each top-level name a symlink too.
func worst(lim atomicfs.Limits, round int) []atomicfs.File {
	name := func(prefix string, i int) string {
		s := fmt.Sprintf("%s%d-%d-", prefix, round, i)
		return s + strings.Repeat("n", 255-len(s))
	}
	var files []atomicfs.File
	for i := range lim.MaxDirs {
		files = append(files, atomicfs.File{Path: name("d", i) + "/" + name("f", i), Mode: 0o644})
	}
	for i := len(files); i < lim.MaxFiles; i++ {
		files = append(files, atomicfs.File{Path: name("f", i), Mode: 0o644})
	}
	return files
}

func main() {
	volumes := flag.Int("volumes", 50, "volumes to mount")
	dir := flag.String("dir", "", "where to mount them (default a temp dir)")
	flag.Parse()
	if err := run(*volumes, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "inodes:", err)
		os.Exit(1)
	}
}

func run(n int, dir string) error {
	if dir == "" {
		d, err := os.MkdirTemp("", "sscsi-inodes-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	lim := atomicfs.Limits{MaxFiles: atomicfs.DefaultMaxFiles, MaxDirs: atomicfs.DefaultMaxDirs, MaxDepth: atomicfs.DefaultMaxDepth}
	// The driver's mount options (driver/internal/tmpfs) with its defaults.
	size, inodes := int64(64<<20), lim.Inodes()
	opts := fmt.Sprintf("mode=0755,size=%d,nr_inodes=%d", size, inodes)
	before, err := meminfo()
	if err != nil {
		return err
	}
	var targets []string
	defer func() {
		for _, t := range targets {
			_ = unix.Unmount(t, 0)
		}
	}()
	for i := range n {
		t := filepath.Join(dir, fmt.Sprint(i))
		if err := os.MkdirAll(t, 0o750); err != nil {
			return err
		}
		if err := unix.Mount("tmpfs", t, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, opts); err != nil {
			return fmt.Errorf("mount %s: %w", t, err)
		}
		targets = append(targets, t)
		if _, err := atomicfs.Write(t, worst(lim, 0), lim); err != nil {
			return fmt.Errorf("volume %d: %w", i, err)
		}
	}
	after, err := meminfo()
	if err != nil {
		return err
	}
	per := func(k string) float64 { return float64(after[k]-before[k]) / float64(n) }
	var st unix.Statfs_t
	if err := unix.Statfs(targets[0], &st); err != nil {
		return err
	}
	used := float64(st.Files - st.Ffree)
	fmt.Printf("limits: %d files, %d directories, depth %d -> nr_inodes %d per tmpfs\n", lim.MaxFiles, lim.MaxDirs, lim.MaxDepth, inodes)
	fmt.Printf("%d worst-case volumes: per volume Slab +%.0f KiB (SUnreclaim +%.0f KiB), Shmem +%.0f KiB\n",
		n, per("Slab"), per("SUnreclaim"), per("Shmem"))
	// A rotation holds two payloads for a moment, and a legacy provider
	// writes what it likes: nr_inodes is the bound. Extrapolate the slab
	// cost per inode to a volume filled to it.
	fmt.Printf("inodes used per volume: %.0f; at nr_inodes (%d): Slab ~%.1f MiB per volume\n",
		used, inodes, per("Slab")/used*float64(inodes)/1024)
	return nil
}
