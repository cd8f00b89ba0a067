package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	authv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	// Linked for its klog filter: client-go never logs request/response bodies (TokenRequest answers carry tokens).
	_ "github.com/sscsi/secrets-store/internal/kubeapi"
	"sigs.k8s.io/yaml"

	ssv1 "github.com/sscsi/secrets-store/driver/apis/v1"
	"github.com/sscsi/secrets-store/driver/dryrun"
	"github.com/sscsi/secrets-store/internal/atomicfs"
	"github.com/sscsi/secrets-store/internal/pluginclient"
)

const (
	driverName        = "secrets-store.csi.k8s.io"
	defaultProviderDs = "/var/run/secrets-store-csi-providers,/etc/kubernetes/secrets-store-csi-providers"
	tokenLifetime     = 10 * time.Minute
)

// fetchConfig is `sscsi fetch`'s flags.
type fetchConfig struct {
	file, namespace, serviceAccount, kubeconfig, output string
	providerDirs                                        string
	audiences                                           []string // nil: the CSIDriver's tokenRequests
	showValues                                          bool
	timeout                                             time.Duration
}

// fetchedFile is one line of fetch's output.
type fetchedFile struct {
	Path     string `json:"path"`
	Size     int    `json:"size"`
	Mode     string `json:"mode"`
	Version  string `json:"version,omitempty"`
	Contents string `json:"contents,omitempty"`
}

type fetchOutput struct {
	Class    string            `json:"secretProviderClass"`
	Provider string            `json:"provider"`
	Files    []fetchedFile     `json:"files"`
	Objects  map[string]string `json:"objects"`
	Legacy   bool              `json:"legacy,omitempty"`
}

func parseFetch(args []string, stderr io.Writer) (*fetchConfig, error) {
	fs := flag.NewFlagSet("sscsi fetch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &fetchConfig{}
	fs.StringVar(&c.file, "f", "", "SecretProviderClass manifest (- for stdin)")
	fs.StringVar(&c.namespace, "namespace", "", "namespace of the pod that would mount it")
	fs.StringVar(&c.serviceAccount, "service-account", "", "service account of that pod")
	fs.StringVar(&c.kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig (TokenRequest and the CSIDriver's tokenRequests)")
	fs.StringVar(&c.providerDirs, "provider-dirs", defaultProviderDs, "directories searched for <provider>.sock, in order")
	fs.StringVar(&c.output, "output", "text", "text or json")
	fs.BoolVar(&c.showValues, "show-values", false, "print the secret values too")
	fs.DurationVar(&c.timeout, "timeout", time.Minute, "how long the provider may take")
	aud := fs.String("audience", "", "token audiences, comma-separated (default: the CSIDriver's tokenRequests; \"none\": no token)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if c.file == "" || c.namespace == "" || c.serviceAccount == "" {
		return nil, errors.New("-f, --namespace and --service-account are required")
	}
	if c.output != "text" && c.output != "json" {
		return nil, fmt.Errorf("--output %q: want text or json", c.output)
	}
	switch *aud {
	case "":
	case "none":
		c.audiences = []string{}
	default:
		c.audiences = strings.Split(*aud, ",")
	}
	return c, nil
}

// runFetch is `sscsi fetch`: exit 0 when the mount would succeed, 1 when it
// would fail (the message is the mount's), 2 on usage or local errors.
func runFetch(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	c, err := parseFetch(args, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "sscsi fetch:", err)
		return 2
	}
	class, err := readClass(c.file, stdin)
	if err != nil {
		fmt.Fprintln(stderr, "sscsi fetch:", err)
		return 2
	}
	tokens, err := c.tokens(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "sscsi fetch:", err)
		return 2
	}
	target, err := memDir()
	if err != nil {
		fmt.Fprintln(stderr, "sscsi fetch:", err)
		return 2
	}
	defer os.RemoveAll(target)
	client, err := pluginclient.New(pluginclient.Config{Dirs: strings.Split(c.providerDirs, ",")})
	if err != nil {
		fmt.Fprintln(stderr, "sscsi fetch:", err)
		return 2
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	res, err := dryrun.Run(ctx, dryrun.Request{
		Class: class, Tokens: tokens, TargetPath: target,
		Pod: dryrun.Pod{Namespace: c.namespace, Name: "sscsi-fetch", ServiceAccount: c.serviceAccount},
	}, client)
	if err != nil {
		fmt.Fprintf(stderr, "sscsi fetch: the mount would fail: rpc error: code = %s desc = %v\n", dryrun.Code(err), err)
		return 1
	}
	out, err := describe(class.Name, res, target, c.showValues)
	if err != nil {
		fmt.Fprintln(stderr, "sscsi fetch:", err)
		return 2
	}
	if c.output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(out)
		return 0
	}
	fmt.Fprintf(stdout, "SecretProviderClass %s/%s, provider %q: %d files\n", c.namespace, class.Name, out.Provider, len(out.Files))
	for _, f := range out.Files {
		fmt.Fprintf(stdout, "  %-40s %8d  %s  %s\n", f.Path, f.Size, f.Mode, f.Version)
		if c.showValues {
			fmt.Fprintf(stdout, "    %q\n", f.Contents)
		}
	}
	return 0
}

func readClass(name string, stdin io.Reader) (*ssv1.SecretProviderClass, error) {
	var r io.Reader = stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return nil, err
	}
	var c ssv1.SecretProviderClass
	if err := yaml.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if c.Kind != "SecretProviderClass" || c.Name == "" {
		return nil, fmt.Errorf("%s: not a SecretProviderClass with a name", name)
	}
	return &c, nil
}

// tokens asks the API server for the service account's tokens, one per
// audience, in kubelet's csi.storage.k8s.io/serviceAccount.tokens format.
func (c *fetchConfig) tokens(ctx context.Context) (string, error) {
	if c.audiences != nil && len(c.audiences) == 0 {
		return "", nil
	}
	rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: c.kubeconfig}, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return "", fmt.Errorf("kubeconfig: %w", err)
	}
	kc, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return "", err
	}
	auds := c.audiences
	if auds == nil {
		d, err := kc.StorageV1().CSIDrivers().Get(ctx, driverName, metav1.GetOptions{})
		if err != nil {
			return "", fmt.Errorf("reading CSIDriver %s for its tokenRequests (or pass --audience): %w", driverName, err)
		}
		for _, t := range d.Spec.TokenRequests {
			auds = append(auds, t.Audience)
		}
	}
	type token struct {
		Token               string    `json:"token"`
		ExpirationTimestamp time.Time `json:"expirationTimestamp"`
	}
	out := map[string]token{}
	secs := int64(tokenLifetime.Seconds())
	for _, a := range auds {
		tr, err := kc.CoreV1().ServiceAccounts(c.namespace).CreateToken(ctx, c.serviceAccount,
			&authv1.TokenRequest{Spec: authv1.TokenRequestSpec{Audiences: []string{a}, ExpirationSeconds: &secs}}, metav1.CreateOptions{})
		if err != nil {
			return "", fmt.Errorf("TokenRequest for service account %s/%s, audience %q: %w", c.namespace, c.serviceAccount, a, err)
		}
		out[a] = token{Token: tr.Status.Token, ExpirationTimestamp: tr.Status.ExpirationTimestamp.Time}
	}
	if len(out) == 0 {
		return "", nil
	}
	b, err := json.Marshal(out)
	return string(b), err
}

// memDir makes the target directory a legacy provider writes into, on a
// memory filesystem: secrets never reach a disk.
func memDir() (string, error) {
	var st unix.Statfs_t
	if err := unix.Statfs("/dev/shm", &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		return "", errors.New("/dev/shm is not a tmpfs: nowhere to receive files without writing them to disk")
	}
	return os.MkdirTemp("/dev/shm", "sscsi-fetch-")
}

func describe(class string, res *dryrun.Result, target string, values bool) (*fetchOutput, error) {
	out := &fetchOutput{Class: class, Provider: res.Provider, Objects: map[string]string{}, Legacy: res.Legacy}
	for _, v := range res.Versions {
		out.Objects[v.GetId()] = v.GetVersion()
	}
	files := res.Files
	if res.Legacy {
		var err error
		if files, err = readLegacy(target); err != nil {
			return nil, fmt.Errorf("reading what the provider wrote: %w", err)
		}
	}
	for _, f := range files {
		ff := fetchedFile{Path: f.Path, Size: len(f.Contents), Mode: fmt.Sprintf("%04o", f.Mode), Version: out.Objects[f.Path]}
		if values {
			ff.Contents = string(f.Contents)
		}
		out.Files = append(out.Files, ff)
	}
	sort.Slice(out.Files, func(i, j int) bool { return out.Files[i].Path < out.Files[j].Path })
	return out, nil
}

func readLegacy(dir string) ([]atomicfs.File, error) { return atomicfs.Read(dir) }
