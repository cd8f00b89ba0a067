// Package rotation decides when a kubelet republish of a mounted volume
// re-fetches from the provider. The decision rests on the time of the last
// successful fetch, kept in memory, not on the mount directory's mtime
// (which changes whenever anything is written and so hides due rotations).
package rotation

import (
	"errors"
	"time"
)

// Policy is the rotation setting of the driver.
type Policy struct {
	// Enabled turns re-fetching on republish on (--enable-secret-rotation).
	Enabled bool
	// Interval is the least time between fetches (--rotation-poll-interval).
	Interval time.Duration
}

// Validate checks p.
func (p Policy) Validate() error {
	if p.Enabled && p.Interval <= 0 {
		return errors.New("--rotation-poll-interval must be positive when --enable-secret-rotation is set")
	}
	return nil
}

// Due reports whether a republish at now must re-fetch, given the time of
// the last successful fetch (zero when unknown, e.g. after a driver restart:
// then it is due, which also refreshes the recorded versions).
func (p Policy) Due(lastFetch, now time.Time) bool {
	if !p.Enabled {
		return false
	}
	if lastFetch.IsZero() {
		return true
	}
	return now.Sub(lastFetch) >= p.Interval
}
