package poll

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// recorder is a testing.TB whose Fatalf records the message and ends the
// goroutine, as the real one does.
type recorder struct {
	testing.TB
	msg string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) {
	r.msg = format
	if len(args) > 0 {
		r.msg = strings.TrimSpace(format + " " + args[len(args)-1].(error).Error())
	}
	panic(r)
}

func run(t *testing.T, timeout time.Duration, f func() error) (msg string) {
	r := &recorder{TB: t}
	defer func() {
		if p := recover(); p != nil && p != any(r) {
			panic(p)
		}
		msg = r.msg
	}()
	Until(r, timeout, f)
	return ""
}

func TestUntil(t *testing.T) {
	n := 0
	if msg := run(t, 5*time.Second, func() error {
		if n++; n < 3 {
			return errors.New("not yet")
		}
		return nil
	}); msg != "" || n != 3 {
		t.Fatalf("a condition true on the third call: %d calls, failure %q", n, msg)
	}
	start := time.Now()
	msg := run(t, 200*time.Millisecond, func() error { return errors.New("never") })
	if !strings.Contains(msg, "never") || time.Since(start) < 200*time.Millisecond {
		t.Fatalf("a condition never true: failure %q after %s; want the last error after the timeout", msg, time.Since(start))
	}
}
