package framework

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SetFakeObject changes an object's value in the fake provider (its admin API bumps the version).
func SetFakeObject(ctx context.Context, objectName, value string) error {
	token, err := os.ReadFile(FakeAdminTokenFile)
	if err != nil {
		return fmt.Errorf("fake provider admin token: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, FakeAdminURL+"/v1/objects/"+objectName, strings.NewReader(value))
	if err != nil {
		return fmt.Errorf("building request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("PUT fake provider object %s: %w", objectName, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("PUT fake provider object %s: %s: %s", objectName, resp.Status, b)
	}
	return nil
}

// Metrics fetches the driver's Prometheus metrics text.
func Metrics(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, MetricsURL, nil)
	if err != nil {
		return "", fmt.Errorf("building request: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("GET %s: %w", MetricsURL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("reading metrics: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", MetricsURL, resp.Status)
	}
	return string(b), nil
}

// MountsUnder returns the host mount points below dir (the e2e suite runs on the node as root).
func MountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("reading mountinfo: %w", err)
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir) {
			out = append(out, fields[4])
		}
	}
	return out, s.Err()
}

// ScanLogs returns, for every log file below dir (component logs and pod logs), which of the
// needles it contains.
func ScanLogs(dir string, needles []string) (map[string][]string, error) {
	found := map[string][]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(d.Name(), ".log") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("reading %s: %w", path, err)
		}
		rel, _ := filepath.Rel(dir, path)
		for _, n := range needles {
			if n != "" && bytes.Contains(b, []byte(n)) {
				found[rel] = append(found[rel], n)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scanning logs in %s: %w", dir, err)
	}
	return found, nil
}

// DriverRegistered reports whether kubelet lists our driver in the node's CSINode.
func (f *Framework) DriverRegistered(ctx context.Context) (bool, error) {
	n, err := f.Client.StorageV1().CSINodes().Get(ctx, "localhost", metav1.GetOptions{})
	if err != nil {
		return false, fmt.Errorf("reading CSINode localhost: %w", err)
	}
	for _, d := range n.Spec.Drivers {
		if d.Name == DriverName {
			return true, nil
		}
	}
	return false, nil
}
