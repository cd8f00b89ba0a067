// Package sysmon coarsens the timer of the Go runtime's system monitor
// thread (sysmon) in a mostly idle process.
//
// sysmon sleeps while every P is idle and is woken by the first system call
// after the process wakes from idle (an incoming request, a provider's
// answer, an API server's answer). It then polls every 20 us until it finds
// every P idle again, each poll a nanosleep, a timer interrupt and two
// context switches: in a node agent that handles a burst of work every few
// tens of milliseconds, most of its polls find nothing to do. Linux's timer
// slack lets the kernel fire that thread's sleeps up to the slack later (and
// together with other timers); the runtime has no setting for it, so the
// slack is set on the thread from outside, through
// /proc/<tid>/timerslack_ns (which needs CAP_SYS_NICE for another thread).
//
// What sysmon does is unchanged, only later by at most the slack: taking the
// P back from a goroutine blocked in a system call, preempting a goroutine
// that runs for more than 10 ms, polling the network when every P has been
// busy for 10 ms, forcing a GC every 2 minutes. Once the process has been
// busy for a millisecond, sysmon itself backs off to sleeps of up to 10 ms.
package sysmon

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrNotFound: no thread of this process could be identified as sysmon.
var ErrNotFound = errors.New("sysmon thread not identified")

// SetTimerSlack sets the timer slack of the calling process's sysmon thread
// and returns its thread ID. Call it early in main, before the process has
// started many threads.
//
// sysmon is the first thread the runtime creates after the main thread
// (runtime.main starts it before any package is initialised); thread IDs
// are handed out in increasing order (wrapping at pid_max), so it is the
// thread whose ID follows the process ID most closely. It is only taken as
// sysmon if it is seen blocked the way sysmon blocks: in nanosleep, or in a
// futex wait with a timeout (its deep sleep while the process is idle).
func SetTimerSlack(slack time.Duration) (int, error) {
	if slack <= 0 {
		return 0, fmt.Errorf("sysmon: timer slack %s must be positive", slack)
	}
	tid, err := find()
	if err != nil {
		return 0, err
	}
	//nolint:gosec // G304: a path under /proc built from a thread ID read from /proc
	f, err := os.OpenFile(fmt.Sprintf("/proc/%d/timerslack_ns", tid), os.O_WRONLY, 0)
	if err != nil {
		return tid, fmt.Errorf("sysmon: set timer slack of thread %d: %w", tid, err)
	}
	_, werr := f.WriteString(strconv.FormatInt(slack.Nanoseconds(), 10))
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return tid, fmt.Errorf("sysmon: set timer slack of thread %d: %w", tid, werr)
	}
	return tid, nil
}

// TimerSlack reads the timer slack of thread tid.
func TimerSlack(tid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/timerslack_ns", tid))
	if err != nil {
		return 0, err
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse /proc/%d/timerslack_ns: %w", tid, err)
	}
	return time.Duration(ns), nil
}

// find returns sysmon's thread ID.
func find() (int, error) {
	pid := os.Getpid()
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return 0, fmt.Errorf("sysmon: list threads: %w", err)
	}
	pidMax := 1 << 22 // the kernel's upper limit, if pid_max cannot be read
	if b, err := os.ReadFile("/proc/sys/kernel/pid_max"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n > 0 {
			pidMax = n
		}
	}
	cand, best := 0, pidMax
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		if err != nil || tid == pid {
			continue
		}
		if d := ((tid-pid)%pidMax + pidMax) % pidMax; d < best {
			cand, best = tid, d
		}
	}
	if cand == 0 {
		return 0, fmt.Errorf("%w: the process has one thread", ErrNotFound)
	}
	// sysmon is almost always asleep, and goes into its deep sleep while
	// this goroutine sleeps between looks; on a loaded machine it may wait
	// for a CPU ("running") for a while.
	path := fmt.Sprintf("/proc/self/task/%d/syscall", cand)
	last := ""
	for range 100 {
		b, err := os.ReadFile(path) //nolint:gosec // G304: a path under /proc
		if err != nil {
			return 0, fmt.Errorf("sysmon: read %s: %w", path, err)
		}
		last = strings.TrimSpace(string(b))
		if sleeping(last) {
			return cand, nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return 0, fmt.Errorf("%w: thread %d (the first after the main thread) is not blocked like sysmon (%s: %q)", ErrNotFound, cand, path, last)
}

// sleeping reports whether a /proc/<tid>/syscall line ("nr arg1 ... arg6 sp
// pc") shows a nanosleep, or a futex wait with a timeout.
func sleeping(line string) bool {
	f := strings.Fields(line)
	if len(f) < 5 {
		return false // "running", or blocked outside a system call
	}
	nr, err := strconv.Atoi(f[0])
	if err != nil {
		return false
	}
	switch nr {
	case syscall.SYS_NANOSLEEP:
		return true
	case syscall.SYS_FUTEX:
		return f[4] != "0x0" // the timeout argument
	}
	return false
}
