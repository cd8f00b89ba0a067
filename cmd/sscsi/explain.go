package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/sscsi/secrets-store/internal/diagnosis"
	"github.com/sscsi/secrets-store/internal/pluginclient"
)

// runExplain is `sscsi explain pod/NAME | spc/NAME`: exit 0 when nothing is
// wrong, 1 when problems were found (one diagnosis each), 2 on usage or API
// errors.
func runExplain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sscsi explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ns := fs.String("namespace", "", "namespace (default: the kubeconfig context's)")
	kubeconfig := fs.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig")
	output := fs.String("output", "text", "text or json")
	providerDirs := fs.String("provider-dirs", "", "on the pod's node: also ask each class's provider on its socket in these directories (e.g. "+defaultProviderDs+")")
	// Flags may come after the object, as kubectl users type them.
	var target string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		target, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if target == "" && fs.NArg() == 1 {
		target = fs.Arg(0)
	}
	kind, name, ok := strings.Cut(target, "/")
	if !ok || name == "" || (*output != "text" && *output != "json") {
		fmt.Fprintln(stderr, "usage: sscsi explain pod/NAME|spc/NAME [--namespace N] [--output json]")
		return 2
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(&clientcmd.ClientConfigLoadingRules{ExplicitPath: *kubeconfig}, &clientcmd.ConfigOverrides{})
	if *ns == "" {
		n, _, err := cc.Namespace()
		if err != nil {
			fmt.Fprintln(stderr, "sscsi explain: kubeconfig:", err)
			return 2
		}
		*ns = n
	}
	rc, err := cc.ClientConfig()
	if err != nil {
		fmt.Fprintln(stderr, "sscsi explain: kubeconfig:", err)
		return 2
	}
	src := diagnosis.Source{}
	if src.Kube, err = kubernetes.NewForConfig(rc); err == nil {
		src.Dynamic, err = dynamic.NewForConfig(rc)
	}
	if err != nil {
		fmt.Fprintln(stderr, "sscsi explain:", err)
		return 2
	}
	if *providerDirs != "" {
		pc, err := pluginclient.New(pluginclient.Config{Dirs: strings.Split(*providerDirs, ",")})
		if err != nil {
			fmt.Fprintln(stderr, "sscsi explain:", err)
			return 2
		}
		defer pc.Close()
		src.Providers = pc
	}
	return explain(ctx, src, kind, *ns, name, *output, stdout, stderr)
}

func explain(ctx context.Context, src diagnosis.Source, kind, ns, name, output string, stdout, stderr io.Writer) int {
	var ds []diagnosis.Diagnosis
	var err error
	switch kind {
	case "pod", "pods", "po":
		kind = "pod"
		ds, err = src.Pod(ctx, ns, name)
	case "spc", "secretproviderclass", "secretproviderclasses":
		kind = "spc"
		ds, err = src.Class(ctx, ns, name)
	default:
		err = errors.New("explain pod/NAME or spc/NAME")
	}
	if err != nil {
		fmt.Fprintln(stderr, "sscsi explain:", err)
		return 2
	}
	if output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if ds == nil {
			ds = []diagnosis.Diagnosis{}
		}
		_ = enc.Encode(map[string]any{"object": kind + "/" + ns + "/" + name, "diagnoses": ds})
	} else {
		if len(ds) == 0 {
			fmt.Fprintf(stdout, "%s %s/%s: no problem found\n", kind, ns, name)
		} else {
			fmt.Fprintf(stdout, "%s %s/%s: %d problem(s)\n", kind, ns, name, len(ds))
		}
		for _, d := range ds {
			fmt.Fprintf(stdout, "\n[%s] %s\n", d.ID, d.Problem)
			if d.Evidence != "" {
				fmt.Fprintf(stdout, "  seen:  %s\n", d.Evidence)
			}
			fmt.Fprintf(stdout, "  fix:   %s\n", d.Fix)
		}
	}
	if len(ds) > 0 {
		return 1
	}
	return 0
}
