// Command motoserver runs moto_server (the AWS emulator) on a fixed
// address, found and started exactly as the Go tests do (package moto),
// for test/cluster/up.sh and hack/demo.sh. It runs in the foreground until
// SIGTERM or SIGINT and takes moto_server with it; -find only prints the
// moto_server command line (exit 1 if there is none).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/sscsi/secrets-store/test/moto"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:5055", "host:port to serve the emulated AWS APIs on")
	find := flag.Bool("find", false, "print the moto_server command line and exit")
	flag.Parse()
	if err := run(*addr, *find); err != nil {
		fmt.Fprintln(os.Stderr, "motoserver:", err)
		os.Exit(1)
	}
}

func run(addr string, find bool) error {
	if find {
		argv, err := moto.Find()
		if err != nil {
			return err
		}
		fmt.Println(strings.Join(argv, " "))
		return nil
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s, err := moto.StartAt(ctx, addr, os.Stderr)
	if err != nil {
		return err
	}
	defer s.Stop()
	fmt.Fprintln(os.Stderr, "motoserver: serving on", s.URL)
	if err := s.Wait(ctx); ctx.Err() == nil {
		return err
	}
	return nil
}
