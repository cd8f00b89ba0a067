package registration

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// TestKubeletHandshake plays kubelet's plugin watcher over the real socket.
func TestKubeletHandshake(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "plugins_registry")
	s, err := New(Config{DriverName: "secrets-store.csi.k8s.io", Endpoint: "/var/lib/kubelet/plugins/csi-secrets-store/csi.sock", RegistryDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	want := filepath.Join(dir, "secrets-store.csi.k8s.io-reg.sock")
	var cc *grpc.ClientConn
	deadline := time.Now().Add(5 * time.Second)
	for {
		cc, err = grpc.NewClient("unix://"+want, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err == nil {
			c := registerapi.NewRegistrationClient(cc)
			info, gerr := c.GetInfo(t.Context(), &registerapi.InfoRequest{})
			if gerr == nil {
				if info.GetType() != registerapi.CSIPlugin || info.GetName() != "secrets-store.csi.k8s.io" || info.GetEndpoint() != "/var/lib/kubelet/plugins/csi-secrets-store/csi.sock" {
					t.Fatalf("GetInfo = %+v", info)
				}
				if _, err := c.NotifyRegistrationStatus(t.Context(), &registerapi.RegistrationStatus{PluginRegistered: true}); err != nil {
					t.Fatal(err)
				}
				break
			}
			_ = cc.Close()
		}
		if time.Now().After(deadline) {
			t.Fatalf("registration socket never answered: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	defer cc.Close()
	if !s.Registered() {
		t.Fatal("registration status not recorded")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// The socket goes away on shutdown so kubelet deregisters the driver.
	if _, err := os.Stat(want); !os.IsNotExist(err) {
		t.Fatalf("registration socket left behind: %v", err)
	}
}
