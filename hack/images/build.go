package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// config is what the command line selects.
type config struct {
	outDir  string
	binDir  string
	tag     string
	busybox string
	repo    string
}

// projectBinaries are packaged as images when bin/<name> exists.
var projectBinaries = []string{"secrets-store-csi-driver", "secrets-store-sync-controller", "provider-fake", "provider-aws", "provider-vault"}

// epoch is the timestamp of every file and image, so identical inputs give identical digests.
var epoch = time.Unix(0, 0).UTC()

// image is one image to write: a single layer of files and the command it runs.
type image struct {
	name  string
	files []file
	entry []string
}

// file is one entry of an image layer.
type file struct {
	path  string // absolute path inside the image
	mode  int64
	data  []byte
	link  string // symlink target when non-empty
	isDir bool
}

func run(ctx context.Context, cfg config) error {
	if err := os.MkdirAll(cfg.outDir, 0o755); err != nil {
		return fmt.Errorf("creating output directory: %w", err)
	}
	pause, err := buildPause(ctx)
	if err != nil {
		return err
	}
	imgs := []image{{name: "pause", files: append(baseFiles(), file{path: "/pause", mode: 0o755, data: pause}), entry: []string{"/pause"}}}
	bb, err := busyboxFiles(ctx, cfg.busybox)
	if err != nil {
		return err
	}
	imgs = append(imgs, image{name: "busybox", files: append(baseFiles(), bb...), entry: []string{"/bin/sh"}})
	for _, b := range projectBinaries {
		data, err := os.ReadFile(filepath.Join(cfg.binDir, b))
		if errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(os.Stderr, "images: skipping %s: %s not built (make build)\n", b, filepath.Join(cfg.binDir, b))
			continue
		}
		if err != nil {
			return fmt.Errorf("reading binary %s: %w", b, err)
		}
		imgs = append(imgs, image{name: b, files: append(baseFiles(), file{path: "/" + b, mode: 0o755, data: data}), entry: []string{"/" + b}})
	}
	for _, im := range imgs {
		tag := "latest"
		if im.name != "pause" && im.name != "busybox" {
			tag = cfg.tag
		}
		ref := fmt.Sprintf("%s/%s:%s", cfg.repo, im.name, tag)
		out := filepath.Join(cfg.outDir, im.name+".tar")
		if err := writeImage(ref, out, im.files, im.entry); err != nil {
			return fmt.Errorf("image %s: %w", ref, err)
		}
		fmt.Printf("%s\t%s\n", ref, out)
	}
	return nil
}

// buildPause compiles the pause command as a static binary.
func buildPause(ctx context.Context) ([]byte, error) {
	dir, err := os.MkdirTemp("", "sscsi-pause-")
	if err != nil {
		return nil, fmt.Errorf("creating temp dir: %w", err)
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "pause")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out,
		"github.com/sscsi/secrets-store/hack/images/pause")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("building pause: %w", err)
	}
	return os.ReadFile(out)
}

// baseFiles is the minimal base every image gets: users, a writable /tmp and CA certificates.
func baseFiles() []file {
	files := []file{
		{path: "/etc", isDir: true, mode: 0o755},
		{path: "/etc/passwd", mode: 0o644, data: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")},
		{path: "/etc/group", mode: 0o644, data: []byte("root:x:0:\nnogroup:x:65534:\n")},
		{path: "/tmp", isDir: true, mode: 0o1777},
		{path: "/root", isDir: true, mode: 0o700},
	}
	// The AWS provider talks TLS to real endpoints: ship the host's CA bundle when present.
	if ca, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt"); err == nil {
		files = append(files,
			file{path: "/etc/ssl", isDir: true, mode: 0o755},
			file{path: "/etc/ssl/certs", isDir: true, mode: 0o755},
			file{path: "/etc/ssl/certs/ca-certificates.crt", mode: 0o644, data: ca})
	}
	return files
}

// busyboxFiles is /bin/busybox plus one symlink per applet it lists.
func busyboxFiles(ctx context.Context, path string) ([]file, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading busybox (apt-get install busybox-static): %w", err)
	}
	out, err := exec.CommandContext(ctx, path, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("listing busybox applets of %s (is it the static build?): %w", path, err)
	}
	files := []file{
		{path: "/bin", isDir: true, mode: 0o755},
		{path: "/bin/busybox", mode: 0o755, data: data},
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" || strings.Contains(applet, "/") {
			continue
		}
		files = append(files, file{path: "/bin/" + applet, link: "busybox"})
	}
	return files, nil
}

// writeImage writes a single-layer image with the given files as a docker-archive tarball.
func writeImage(ref, out string, files []file, entry []string) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("parsing reference: %w", err)
	}
	layerTar, err := tarLayer(files)
	if err != nil {
		return err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return fmt.Errorf("creating layer: %w", err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return fmt.Errorf("appending layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("reading config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS = "linux"
	cf.Architecture = runtime.GOARCH
	cf.Created = v1.Time{Time: epoch}
	// busybox is a shell image: `kubectl run ... -- sh -c '...'` must work, so no entrypoint.
	if len(entry) == 1 && entry[0] == "/bin/sh" {
		cf.Config.Cmd = entry
	} else {
		cf.Config.Entrypoint = entry
	}
	cf.Config.Env = []string{"PATH=/bin:/usr/bin:/sbin:/usr/sbin"}
	cf.Config.WorkingDir = "/"
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return fmt.Errorf("setting config: %w", err)
	}
	tmp := out + ".tmp"
	if err := tarball.WriteToFile(tmp, tag, img); err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("renaming %s: %w", tmp, err)
	}
	return nil
}

// tarLayer returns an uncompressed layer tar of files, parents first, with fixed timestamps.
func tarLayer(files []file) ([]byte, error) {
	sort.SliceStable(files, func(i, j int) bool { return files[i].path < files[j].path })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: strings.TrimPrefix(f.path, "/"), Mode: f.mode, ModTime: epoch, Format: tar.FormatPAX}
		switch {
		case f.isDir:
			h.Typeflag, h.Name = tar.TypeDir, h.Name+"/"
		case f.link != "":
			h.Typeflag, h.Linkname, h.Mode = tar.TypeSymlink, f.link, 0o777
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("writing tar header %s: %w", f.path, err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(f.data); err != nil {
				return nil, fmt.Errorf("writing %s: %w", f.path, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("closing layer tar: %w", err)
	}
	return buf.Bytes(), nil
}
