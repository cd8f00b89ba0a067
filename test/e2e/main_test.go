//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/sscsi/secrets-store/test/e2e/framework"
)

// fw is the suite's connection to the cluster, set up once in TestMain.
var fw *framework.Framework

// secrets records every secret value the suite hands to the cluster, so that TestMain can prove
// none of them reached a component's log.
var secrets struct {
	mu     sync.Mutex // guards values
	values []string
}

// secretValue returns a fresh secret value and records it.
func secretValue(label string) string {
	v := "e2e-secret-" + label + "-" + framework.RandomSuffix() + framework.RandomSuffix()
	secrets.mu.Lock()
	defer secrets.mu.Unlock()
	secrets.values = append(secrets.values, v)
	return v
}

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	var err error
	fw, err = framework.New(ctx, framework.Config{})
	if err == nil {
		var ok bool
		if ok, err = fw.DriverRegistered(ctx); err == nil && !ok {
			err = fmt.Errorf("driver %s is not registered on node localhost (CSINode): is it running? see %s", framework.DriverName, fw.LogsDir)
		}
	}
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	code := m.Run()
	if code == 0 {
		code = checkNoSecretsInLogs()
	}
	os.Exit(code)
}

// checkNoSecretsInLogs fails the suite if any secret value it used, or a service account token,
// appears in any component's log (driver, providers, kubelet, apiserver, ...).
func checkNoSecretsInLogs() int {
	secrets.mu.Lock()
	needles := append([]string(nil), secrets.values...)
	secrets.mu.Unlock()
	// A JWT's header: service account tokens must never be logged either.
	needles = append(needles, "eyJhbGciOi")
	found, err := framework.ScanLogs(fw.LogsDir, needles)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: scanning component logs:", err)
		return 1
	}
	if len(found) > 0 {
		for file, vals := range found {
			fmt.Fprintf(os.Stderr, "e2e: FAIL: %s contains secret material: %s\n", file, strings.Join(vals, ", "))
		}
		return 1
	}
	fmt.Printf("e2e: no secret value (%d checked) and no token in the component logs of %s\n", len(needles), fw.LogsDir)
	return 0
}

// fakeObject is one entry of the fake provider's "objects" parameter.
type fakeObject struct {
	ObjectName     string `json:"objectName"`
	Value          string `json:"value,omitempty"`
	Version        string `json:"version,omitempty"`
	FilePermission string `json:"filePermission,omitempty"`
	Source         string `json:"source,omitempty"`
	Key            string `json:"key,omitempty"`
	Path           string `json:"path,omitempty"`
	Delay          string `json:"delay,omitempty"`
}

func fakeParams(t *testing.T, objs ...fakeObject) map[string]string {
	t.Helper()
	b, err := yaml.Marshal(objs)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{"objects": string(b)}
}
