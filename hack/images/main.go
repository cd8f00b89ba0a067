// Command images writes docker-archive tarballs of the images the local test cluster and the demo
// need, with no Docker engine and no registry: a pause (sandbox) image, a busybox test image from
// Debian's busybox-static, and one image per project binary found in -bin. Import them with
// `ctr -n k8s.io images import <tar>`; pods use them with imagePullPolicy: Never.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	var cfg config
	flag.StringVar(&cfg.outDir, "out", "bin/images", "directory the image tarballs are written to")
	flag.StringVar(&cfg.binDir, "bin", "bin", "directory holding the project's static binaries")
	flag.StringVar(&cfg.tag, "tag", "latest", "tag of the project images")
	flag.StringVar(&cfg.busybox, "busybox", "/bin/busybox", "static busybox binary for the test image (Debian busybox-static)")
	flag.StringVar(&cfg.repo, "repo", "localhost/sscsi", "repository prefix of every image")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "images:", err)
		os.Exit(1)
	}
}
