// Command provider-fake serves an in-memory secrets backend over the
// provider API, for demos and tests.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/klog/v2"

	"github.com/sscsi/secrets-store/providers/fake"
)

var version = "dev"

func main() {
	var cfg fake.Config
	klog.InitFlags(nil)
	flag.StringVar(&cfg.Socket, "endpoint", "/var/run/secrets-store-csi-providers/fake.sock", "unix socket to serve the provider API on")
	flag.StringVar(&cfg.AdminAddr, "admin-addr", "", "HTTP address of the admin API used to change values at run time (empty: off)")
	flag.StringVar(&cfg.AdminTokenFile, "admin-token-file", "", "where the admin API bearer token is written at start (default fake-admin.token next to --endpoint; mode 0600)")
	flag.BoolVar(&cfg.WriteToTarget, "write-to-target", false, "legacy mode: write files into the target path instead of returning them")
	flag.Parse()
	cfg.Version = version
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := fake.Run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "provider-fake:", err)
		os.Exit(1)
	}
}
