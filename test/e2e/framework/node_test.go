package framework

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestScanLogsFindsNeedlesInNestedLogs(t *testing.T) {
	dir := t.TempDir()
	write := func(rel, s string) {
		t.Helper()
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("driver.log", "mounted volume, no secrets here\n")
	write("pods/ns_pod_uid/driver/0.log", "oops: s3cr3t-value leaked\n")
	write("pods/ns_pod_uid/driver/notes.txt", "s3cr3t-value in a non-log file is ignored\n")
	got, err := ScanLogs(dir, []string{"s3cr3t-value", "absent", ""})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{"pods/ns_pod_uid/driver/0.log": {"s3cr3t-value"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ScanLogs = %v, want %v", got, want)
	}
}

func TestCopyDirKeepsTree(t *testing.T) {
	src, dst := t.TempDir(), filepath.Join(t.TempDir(), "out")
	if err := os.MkdirAll(filepath.Join(src, "a", "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "a", "b", "c.log"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := copyDir(src, dst); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "a", "b", "c.log")); err != nil || string(b) != "x" {
		t.Errorf("copied file: %q, %v", b, err)
	}
}
