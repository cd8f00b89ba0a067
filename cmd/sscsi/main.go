// Command sscsi helps people who write SecretProviderClasses:
//
//	sscsi lint FILE...   check manifests offline (use - for stdin)
//
// It exits 1 when any error is found, 2 on bad usage.
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/sscsi/secrets-store/internal/spclint"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) < 2 || args[0] != "lint" {
		fmt.Fprintln(stderr, "usage: sscsi lint FILE... (- for stdin)")
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
