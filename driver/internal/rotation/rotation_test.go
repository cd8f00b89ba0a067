package rotation

import (
	"fmt"
	"testing"
	"time"
)

func TestDue(t *testing.T) {
	now := time.Unix(1000, 0)
	cases := []struct {
		name string
		p    Policy
		last time.Time
		want bool
	}{
		{"disabled", Policy{Enabled: false, Interval: time.Second}, time.Time{}, false},
		{"unknown last fetch", Policy{Enabled: true, Interval: time.Minute}, time.Time{}, true},
		{"recent", Policy{Enabled: true, Interval: time.Minute}, now.Add(-50 * time.Second), false},
		{"exactly interval", Policy{Enabled: true, Interval: time.Minute}, now.Add(-time.Minute), true},
		{"old", Policy{Enabled: true, Interval: time.Minute}, now.Add(-time.Hour), true},
	}
	for _, c := range cases {
		if got := c.p.Due(c.last, now, "vol"); got != c.want {
			t.Errorf("%s: Due = %v, want %v", c.name, got, c.want)
		}
	}
	if (Policy{Enabled: true}).Validate() == nil {
		t.Error("zero interval accepted")
	}
}

// TestJitterSpreadsVolumes: volumes fetched in the same instant become due
// at different times within the last tenth of the interval, each volume at
// the same time on every call.
func TestJitterSpreadsVolumes(t *testing.T) {
	p := Policy{Enabled: true, Interval: 100 * time.Second}
	seconds := map[int]int{}
	for i := 0; i < 1000; i++ {
		key := fmt.Sprintf("/var/lib/kubelet/pods/%d/volumes/kubernetes.io~csi/secrets/mount", i)
		e := p.Early(key)
		if e < 0 || e >= 10*time.Second {
			t.Fatalf("Early(%s) = %v, outside [0, 10s)", key, e)
		}
		if e != p.Early(key) {
			t.Fatal("Early is not stable for a key")
		}
		seconds[int(e/time.Second)]++
	}
	if len(seconds) != 10 {
		t.Fatalf("1000 volumes fall into %d distinct seconds, want all 10: %v", len(seconds), seconds)
	}
	for s, n := range seconds {
		if n > 200 {
			t.Errorf("second %d holds %d of 1000 volumes: not spread", s, n)
		}
	}
	last := time.Unix(0, 0)
	key := "k"
	if p.Due(last, last.Add(p.Interval-p.Early(key)-time.Millisecond), key) || !p.Due(last, last.Add(p.Interval-p.Early(key)), key) {
		t.Error("Due does not switch exactly at Interval-Early")
	}
}
