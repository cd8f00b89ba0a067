package podstatus_test

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	ssv1 "github.com/sscsi/secrets-store/driver/apis/v1"
	"github.com/sscsi/secrets-store/driver/internal/kubeclient"
	"github.com/sscsi/secrets-store/driver/internal/podstatus"
	"github.com/sscsi/secrets-store/driver/internal/publish"
	"github.com/sscsi/secrets-store/driver/internal/spc"
)

// hungAPIServer accepts connections and never answers (a black-holed API
// server); it reports each accepted connection.
func hungAPIServer(t *testing.T) (addr string, accepted <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	acc := make(chan struct{}, 64)
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			select {
			case acc <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return ln.Addr().String(), acc
}

// TestForgetAbortsAWriteToAHungAPIServer: an unpublish must not wait for
// the client's request timeout when the API server does not answer; the
// write in flight is aborted and never confirmed.
func TestForgetAbortsAWriteToAHungAPIServer(t *testing.T) {
	addr, accepted := hungAPIServer(t)
	kc, err := kubeclient.NewForConfig(&rest.Config{Host: "http://" + addr}, kubeclient.Config{QPS: 50, Burst: 100, Timeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	var confirmed atomic.Int32
	w, err := podstatus.New(podstatus.Config{Client: kc.CRD, NodeName: "node-a", BatchDelay: -1,
		Written: func(string, []ssv1.SecretProviderClassObject) { confirmed.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); w.Run(t.Context()) }()
	t.Cleanup(func() { <-done })

	o := publish.Outcome{
		Pod:        publish.Pod{Namespace: "ns", Name: "web", UID: "00000000-0000-0000-0000-000000000001"},
		SPC:        &spc.Spec{Namespace: "ns", Name: "app", Provider: "fake"},
		TargetPath: "/var/lib/kubelet/pods/00000000-0000-0000-0000-000000000001/volumes/kubernetes.io~csi/s/mount",
		Versions:   []ssv1.SecretProviderClassObject{{ID: "a", Version: "1"}},
	}
	w.Record(o)
	select {
	case <-accepted:
	case <-time.After(30 * time.Second):
		t.Fatal("the writer did not connect to the API server in 30s")
	}
	if n := w.Pending(); n != 1 {
		t.Fatalf("pending = %d with the write in flight, want 1", n)
	}
	start := time.Now()
	forgotten := make(chan struct{})
	go func() { w.Forget(o.TargetPath); close(forgotten) }()
	select {
	case <-forgotten:
	case <-time.After(30 * time.Second):
		t.Fatal("Forget still waits after 30s on a write to an API server that does not answer (the request timeout is 1h)")
	}
	t.Logf("Forget returned %s after it was called", time.Since(start).Round(time.Millisecond))
	if n := w.Pending(); n != 0 {
		t.Errorf("pending = %d after Forget", n)
	}
	if n := confirmed.Load(); n != 0 {
		t.Errorf("%d confirmations of an aborted write", n)
	}
}
