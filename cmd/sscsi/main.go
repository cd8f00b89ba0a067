// Command sscsi helps people who write SecretProviderClasses:
//
//	sscsi lint FILE...   check manifests offline (use - for stdin)
//	sscsi fetch -f spc.yaml --namespace N --service-account SA
//	                     a dry-run mount through the provider's socket (see fetch.go)
//	sscsi explain pod/NAME|spc/NAME [--namespace N]
//	                     why a pod's secrets volume fails or is stale (see explain.go)
//
// Installed as kubectl-sscsi too (make build links it), it works as
// `kubectl sscsi ...`. Exit codes: 0 fine; 1 lint found an error, the
// fetched mount would fail, or explain found a problem; 2 bad usage or a local error (file, kubeconfig,
// API server, /dev/shm).
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/sscsi/secrets-store/internal/spclint"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := dispatch(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// dispatch runs the subcommands that talk to a cluster or a provider;
// everything else is run's (lint).
func dispatch(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "fetch" {
		return runFetch(ctx, args[1:], stdin, stdout, stderr)
	}
	if len(args) > 0 && args[0] == "explain" {
		return runExplain(ctx, args[1:], stdout, stderr)
	}
	return run(args, stdin, stdout, stderr)
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) < 2 || args[0] != "lint" {
		fmt.Fprintln(stderr, "usage: sscsi lint FILE... (- for stdin)\n       sscsi fetch -f spc.yaml --namespace N --service-account SA [--show-values] [--output json]\n       sscsi explain pod/NAME|spc/NAME [--namespace N] [--output json]")
		return 2
	}
	failed := false
	for _, name := range args[1:] {
		var r io.Reader = stdin
		if name != "-" {
			f, err := os.Open(name)
			if err != nil {
				fmt.Fprintln(stderr, "sscsi:", err)
				return 2
			}
			defer f.Close()
			r = f
		}
		res, err := spclint.Lint(r)
		if err != nil {
			fmt.Fprintf(stderr, "sscsi: %s: %v\n", name, err)
			return 2
		}
		for _, c := range res.Classes {
			fmt.Fprintf(stdout, "%s: SecretProviderClass %s mounts: %v\n", name, c, res.Files[c])
		}
		for _, f := range res.Findings {
			fmt.Fprintf(stdout, "%s: %s\n", name, f)
		}
		failed = failed || res.Errors()
	}
	if failed {
		return 1
	}
	return 0
}
