package rotation

import (
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
		{"recent", Policy{Enabled: true, Interval: time.Minute}, now.Add(-59 * time.Second), false},
		{"exactly interval", Policy{Enabled: true, Interval: time.Minute}, now.Add(-time.Minute), true},
		{"old", Policy{Enabled: true, Interval: time.Minute}, now.Add(-time.Hour), true},
	}
	for _, c := range cases {
		if got := c.p.Due(c.last, now); got != c.want {
			t.Errorf("%s: Due = %v, want %v", c.name, got, c.want)
		}
	}
	if (Policy{Enabled: true}).Validate() == nil {
		t.Error("zero interval accepted")
	}
}
