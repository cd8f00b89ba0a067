// Package rotation decides when a kubelet republish of a mounted volume
// re-fetches from the provider. The decision rests on the time of the last
// successful fetch, recorded with the volume, not on the mount directory's
// mtime (which changes whenever anything is written and so hides due
// rotations).
package rotation

import (
	"errors"
	"hash/fnv"
	"time"
)

// Jitter is the largest share of the interval by which a volume's rotation
// comes early. Each volume gets its own fixed share from a hash of its key,
// so volumes mounted in the same second (a node filling up, a rollout) spread
// their re-fetches over a tenth of the interval and drift further apart
// with every round instead of calling the backend together.
const Jitter = 0.1

// Policy is the rotation setting of the driver.
type Policy struct {
	// Enabled turns re-fetching on republish on (--enable-secret-rotation).
	Enabled bool
	// Interval is the most time between fetches (--rotation-poll-interval).
	Interval time.Duration
}

// Validate checks p.
func (p Policy) Validate() error {
	if p.Enabled && p.Interval <= 0 {
		return errors.New("--rotation-poll-interval must be positive when --enable-secret-rotation is set")
	}
	return nil
}

// Due reports whether a republish at now of the volume identified by key
// must re-fetch, given the time of its last successful fetch (zero when
// unknown: then it is due).
func (p Policy) Due(lastFetch, now time.Time, key string) bool {
	if !p.Enabled {
		return false
	}
	if lastFetch.IsZero() {
		return true
	}
	return now.Sub(lastFetch) >= p.Interval-p.Early(key)
}

// Early is how much earlier than Interval the volume key rotates: between 0
// and Jitter*Interval, the same for a key every time.
func (p Policy) Early(key string) time.Duration {
	h := fnv.New64a()
	_, _ = h.Write([]byte(key))
	return time.Duration(float64(p.Interval) * Jitter * float64(h.Sum64()%1024) / 1024)
}
