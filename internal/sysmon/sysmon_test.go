package sysmon

import (
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"
)

func TestSetTimerSlack(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("setting another thread's timer slack needs CAP_SYS_NICE: run as root")
	}
	tid, err := SetTimerSlack(3 * time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if tid == os.Getpid() {
		t.Fatalf("thread %d is the main thread", tid)
	}
	got, err := TimerSlack(tid)
	if err != nil {
		t.Fatal(err)
	}
	if got != 3*time.Millisecond {
		t.Fatalf("thread %d has timer slack %s, want 3ms", tid, got)
	}
	// Only that thread: the main thread keeps the default.
	if own, err := TimerSlack(os.Getpid()); err != nil || own == got {
		t.Fatalf("main thread slack %s (err %v): changed with sysmon's", own, err)
	}
	// Found again the same way (the driver calls it once, but it must
	// not pick another thread once more threads exist).
	again, err := SetTimerSlack(3 * time.Millisecond)
	if err != nil || again != tid {
		t.Fatalf("second call: thread %d, %v; want %d", again, err, tid)
	}
}

func TestSetTimerSlackRejectsNonPositive(t *testing.T) {
	if _, err := SetTimerSlack(0); err == nil {
		t.Fatal("0 accepted")
	}
}

func TestSleeping(t *testing.T) {
	for _, c := range []struct {
		line string
		want bool
	}{
		{fmt.Sprintf("%d 0xc000123f30 0x0 0x0 0x0 0x0 0x0 0x7ffc 0x46f0a3", syscall.SYS_NANOSLEEP), true},
		{fmt.Sprintf("%d 0x143a040 0x80 0x0 0xc00004bf18 0x0 0x0 0xc00004bef0 0x46f0a3", syscall.SYS_FUTEX), true}, // with a timeout
		{fmt.Sprintf("%d 0xc000080148 0x80 0x0 0x0 0x0 0x0 0x7ffc 0x46f0a3", syscall.SYS_FUTEX), false},            // without
		{fmt.Sprintf("%d 0x4 0xc00004b8b0 0x80 0xffffffffffffffff 0x0 0x0 0xc00004b890 0x46f0a3", syscall.SYS_EPOLL_PWAIT), false},
		{"running", false},
		{"-1 0x7ffc 0x46f0a3", false},
		{"", false},
	} {
		if got := sleeping(c.line); got != c.want {
			t.Errorf("sleeping(%q) = %v, want %v", c.line, got, c.want)
		}
	}
}
