package publish

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"k8s.io/klog/v2"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"github.com/sscsi/secrets-store/driver/internal/spc"
	"github.com/sscsi/secrets-store/driver/internal/tmpfs"
)

// volume is what the driver knows about a mounted volume. Besides the
// driver's memory it is kept with the volume's tmpfs (tmpfs.Mounter
// SaveState): a restarted driver knows every volume's last fetch and object
// versions again without calling anything, the record disappears with the
// mount, and it never reaches a disk. Its presence also marks a first mount
// as complete: a tmpfs without one was left by a driver that died
// mid-publish.
type volume struct {
	lastFetch time.Time
	versions  []*v1alpha1.ObjectVersion
	provider  string
	// spec is the SecretProviderClass of the last fetch; memory only (not
	// in the record). Rotation falls back to it while the Kubernetes API
	// is unreachable.
	spec *spc.Spec
}

// record is the stored form of volume.
type record struct {
	Fetched  int64           `json:"fetched"` // unix nanoseconds
	Provider string          `json:"provider"`
	Versions []recordVersion `json:"versions,omitempty"`
}

type recordVersion struct {
	ID      string `json:"id"`
	Version string `json:"version"`
}

func encodeRecord(v *volume) ([]byte, error) {
	r := record{Fetched: v.lastFetch.UnixNano(), Provider: v.provider, Versions: make([]recordVersion, len(v.versions))}
	for i, o := range v.versions {
		r.Versions[i] = recordVersion{ID: o.GetId(), Version: o.GetVersion()}
	}
	b, err := json.Marshal(r)
	if err == nil && len(b) > tmpfs.MaxStateBytes {
		// Too many or too long versions to keep: the time of the fetch
		// matters more (the next rotation then sends no current versions).
		r.Versions = nil
		b, err = json.Marshal(r)
	}
	return b, err
}

// decodeRecord parses a stored record; the bytes come from the volume's
// tmpfs and are checked like any input.
func decodeRecord(b []byte) (*volume, error) {
	if len(b) > tmpfs.MaxStateBytes {
		return nil, fmt.Errorf("volume record of %d bytes exceeds %d", len(b), tmpfs.MaxStateBytes)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("parse volume record: %w", err)
	}
	if r.Fetched <= 0 {
		return nil, errors.New("volume record has no fetch time")
	}
	v := &volume{lastFetch: time.Unix(0, r.Fetched), provider: r.Provider, versions: make([]*v1alpha1.ObjectVersion, 0, len(r.Versions))}
	for i, o := range r.Versions {
		if o.ID == "" {
			return nil, fmt.Errorf("volume record: versions[%d] has an empty id", i)
		}
		v.versions = append(v.versions, &v1alpha1.ObjectVersion{Id: o.ID, Version: o.Version})
	}
	return v, nil
}

// state returns what is known about the mounted volume at target: from
// memory, else from the record kept with the volume (after a restart), else
// nil (an unreadable record counts as none: the volume is fetched again).
func (p *Publisher) state(target string) *volume {
	p.mu.Lock()
	known, ok := p.vols[target]
	p.mu.Unlock()
	if ok {
		return known
	}
	b, err := p.cfg.Mounter.LoadState(target)
	if err == nil && b == nil {
		return nil
	}
	var v *volume
	if err == nil {
		v, err = decodeRecord(b)
	}
	if err != nil {
		klog.ErrorS(err, "ignoring the volume's record; it is fetched again", "target", target)
		return nil
	}
	p.mu.Lock()
	p.vols[target] = v
	p.mu.Unlock()
	return v
}

// setState remembers v for the mounted volume at target, in memory and with
// the volume. A record that cannot be stored with the volume only costs a
// fetch after a restart.
func (p *Publisher) setState(target string, v *volume) {
	p.mu.Lock()
	p.vols[target] = v
	p.mu.Unlock()
	b, err := encodeRecord(v)
	if err == nil {
		err = p.cfg.Mounter.SaveState(target, b)
	}
	if err != nil {
		klog.ErrorS(err, "could not record the volume's fetch with the volume; after a driver restart it is fetched again", "target", target)
	}
}

// forget drops what memory holds about target (the record goes with the
// mount).
func (p *Publisher) forget(target string) {
	p.mu.Lock()
	delete(p.vols, target)
	p.mu.Unlock()
}
