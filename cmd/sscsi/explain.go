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

// Exit codes of sscsi explain (docs/sscsi.md).
const (
	explainOK       = 0 // no problem found
	explainProblems = 1 // one diagnosis per problem found
	explainError    = 2 // bad usage, kubeconfig, or the API refused a read explain needs
)

// runExplain is `sscsi explain pod/NAME | spc/NAME`.
func runExplain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sscsi explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ns := fs.String("namespace", "", "namespace (default: the kubeconfig context's)")
	kubeconfig := fs.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig")
	output := fs.String("output", "text", "text or json")
	providerDirs := fs.String("provider-dirs", "", "on the pod's node: also ask each class's provider on its socket in these directories (e.g. "+defaultProviderDs+")")
	metricsPort := fs.Int("metrics-port", diagnosis.DefaultMetricsPort, "the driver's metrics port, when its pod names none (a driver run as a host process)")
	noMetrics := fs.Bool("no-metrics", false, "do not read the driver's metrics")
	// Flags may come after the object, as kubectl users type them.
	var target string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		target, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return explainError
	}
	if target == "" && fs.NArg() == 1 {
		target = fs.Arg(0)
	}
	kind, name, ok := strings.Cut(target, "/")
	if !ok || name == "" || (*output != "text" && *output != "json") {
		fmt.Fprintln(stderr, "usage: sscsi explain pod/NAME|spc/NAME [--namespace N] [--output json]")
		return explainError
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(&clientcmd.ClientConfigLoadingRules{ExplicitPath: *kubeconfig}, &clientcmd.ConfigOverrides{})
	if *ns == "" {
		n, _, err := cc.Namespace()
		if err != nil {
			fmt.Fprintln(stderr, "sscsi explain: kubeconfig:", err)
			return explainError
		}
		*ns = n
	}
	rc, err := cc.ClientConfig()
	if err != nil {
		fmt.Fprintln(stderr, "sscsi explain: kubeconfig:", err)
		return explainError
	}
	src := diagnosis.Source{}
	if src.Kube, err = kubernetes.NewForConfig(rc); err == nil {
		src.Dynamic, err = dynamic.NewForConfig(rc)
	}
	if err != nil {
		fmt.Fprintln(stderr, "sscsi explain:", err)
		return explainError
	}
	if *providerDirs != "" {
		pc, err := pluginclient.New(pluginclient.Config{Dirs: strings.Split(*providerDirs, ",")})
		if err != nil {
			fmt.Fprintln(stderr, "sscsi explain:", err)
			return explainError
		}
		defer pc.Close()
		src.Providers = pc
	}
	if !*noMetrics {
		src.Metrics = diagnosis.KubeMetrics{Kube: src.Kube, Port: *metricsPort}
	}
	return explain(ctx, src, kind, *ns, name, *output, stdout, stderr)
}

func explain(ctx context.Context, src diagnosis.Source, kind, ns, name, output string, stdout, stderr io.Writer) int {
	var r diagnosis.Report
	var err error
	switch kind {
	case "pod", "pods", "po":
		kind = "pod"
		r, err = src.Pod(ctx, ns, name)
	case "spc", "secretproviderclass", "secretproviderclasses":
		kind = "spc"
		r, err = src.Class(ctx, ns, name)
	default:
		err = errors.New("explain pod/NAME or spc/NAME")
	}
	if err != nil {
		fmt.Fprintln(stderr, "sscsi explain:", err)
		return explainError
	}
	if output == "json" {
		writeExplainJSON(stdout, kind+"/"+ns+"/"+name, r)
	} else {
		writeExplainText(stdout, kind, ns, name, r)
	}
	if len(r.Diagnoses) > 0 {
		return explainProblems
	}
	return explainOK
}

func writeExplainJSON(w io.Writer, object string, r diagnosis.Report) {
	if r.Diagnoses == nil {
		r.Diagnoses = []diagnosis.Diagnosis{}
	}
	if r.Checks == nil {
		r.Checks = []diagnosis.Check{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(map[string]any{"object": object, "diagnoses": r.Diagnoses, "checks": r.Checks})
}

func writeExplainText(w io.Writer, kind, ns, name string, r diagnosis.Report) {
	if len(r.Diagnoses) == 0 {
		fmt.Fprintf(w, "%s %s/%s: no problem found\n", kind, ns, name)
	} else {
		fmt.Fprintf(w, "%s %s/%s: %d problem(s)\n", kind, ns, name, len(r.Diagnoses))
	}
	for _, d := range r.Diagnoses {
		fmt.Fprintf(w, "\n[%s] %s\n", d.ID, d.Problem)
		if d.Evidence != "" {
			fmt.Fprintf(w, "  seen:  %s\n", d.Evidence)
		}
		fmt.Fprintf(w, "  fix:   %s\n", d.Fix)
	}
	if len(r.Checks) > 0 {
		fmt.Fprintln(w, "\nchecked:")
	}
	for _, c := range r.Checks {
		mark := "ok"
		if !c.OK {
			mark = "??"
		}
		fmt.Fprintf(w, "  %s %s: %s\n", mark, c.Name, c.Detail)
	}
}
