package main

import (
	"archive/tar"
	"errors"
	"io"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func TestWriteImageIsALoadableDockerArchive(t *testing.T) {
	out := filepath.Join(t.TempDir(), "x.tar")
	files := append(baseFiles(),
		file{path: "/bin", isDir: true, mode: 0o755},
		file{path: "/bin/tool", mode: 0o755, data: []byte("#!binary")},
		file{path: "/bin/alias", link: "tool"})
	if err := writeImage("localhost/sscsi/x:test", out, files, []string{"/bin/tool"}); err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag("localhost/sscsi/x:test")
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(out, &tag)
	if err != nil {
		t.Fatalf("reading back the archive: %v", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != "/bin/tool" {
		t.Errorf("config: os %q entrypoint %v", cf.OS, cf.Config.Entrypoint)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %d, %v", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got := map[string]*tar.Header{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[h.Name] = h
	}
	if h := got["bin/tool"]; h == nil || h.Mode != 0o755 || h.Size != int64(len("#!binary")) {
		t.Errorf("bin/tool: %+v", h)
	}
	if h := got["bin/alias"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "tool" {
		t.Errorf("bin/alias: %+v", h)
	}
	if h := got["tmp/"]; h == nil || h.Mode != 0o1777 {
		t.Errorf("tmp/: %+v", h)
	}
}

func TestBusyboxImageHasNoEntrypoint(t *testing.T) {
	out := filepath.Join(t.TempDir(), "bb.tar")
	if err := writeImage("localhost/sscsi/bb:test", out, baseFiles(), []string{"/bin/sh"}); err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(out, nil)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if len(cf.Config.Entrypoint) != 0 || len(cf.Config.Cmd) != 1 || cf.Config.Cmd[0] != "/bin/sh" {
		t.Errorf("entrypoint %v cmd %v; want no entrypoint and cmd [/bin/sh] so `kubectl run -- sh -c` works", cf.Config.Entrypoint, cf.Config.Cmd)
	}
}
