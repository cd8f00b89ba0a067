package publish

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"k8s.io/klog/v2"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	ssv1 "github.com/sscsi/secrets-store/driver/apis/v1"
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
	// unconfirmed is set while the SecretProviderClassPodStatus for these
	// versions is not known to be written: from the fetch that changed
	// them until the status writer confirms the write (StatusWritten). A
	// restarted driver writes the status of such volumes again
	// (ResumeStatus) and of no others.
	unconfirmed *statusOwner
}

// statusOwner is what a status object needs besides the versions.
type statusOwner struct {
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	UID       string `json:"uid,omitempty"`
	SPC       string `json:"spc"`
}

// record is the stored form of volume.
type record struct {
	Fetched  int64           `json:"fetched"` // unix nanoseconds
	Provider string          `json:"provider"`
	Versions []recordVersion `json:"versions,omitempty"`
	// Unconfirmed is present while the status is not confirmed written
	// (records of drivers before it count as confirmed).
	Unconfirmed *statusOwner `json:"unconfirmedStatus,omitempty"`
}

type recordVersion struct {
	ID      string `json:"id"`
	Version string `json:"version"`
}

func encodeRecord(v *volume) ([]byte, error) {
	r := record{Fetched: v.lastFetch.UnixNano(), Provider: v.provider, Versions: make([]recordVersion, len(v.versions)), Unconfirmed: v.unconfirmed}
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
	if u := r.Unconfirmed; u != nil && (u.Namespace == "" || u.Pod == "" || u.SPC == "") {
		return nil, errors.New("volume record: unconfirmedStatus lacks the namespace, pod or spc")
	}
	v := &volume{lastFetch: time.Unix(0, r.Fetched), provider: r.Provider, versions: make([]*v1alpha1.ObjectVersion, 0, len(r.Versions)), unconfirmed: r.Unconfirmed}
	for i, o := range r.Versions {
		if o.ID == "" {
			return nil, fmt.Errorf("volume record: versions[%d] has an empty id", i)
		}
		v.versions = append(v.versions, &v1alpha1.ObjectVersion{Id: o.ID, Version: o.Version})
	}
	return v, nil
}

// slot is the driver's entry for one mounted volume. mu orders the writes
// of the volume's record: the pipeline's (serialised per volume by the CSI
// server) and the status writer's confirmations (StatusWritten, from the
// writer's goroutines).
type slot struct {
	mu   sync.Mutex // guards v, gone; held while the record is written
	v    *volume
	gone bool // unpublished (or remounted): its record is never written again
}

func (p *Publisher) slot(target string) *slot {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.vols[target]
}

// state returns what is known about the mounted volume at target: from
// memory, else from the record kept with the volume (after a restart), else
// nil (an unreadable record counts as none: the volume is fetched again).
func (p *Publisher) state(target string) *volume {
	if s := p.slot(target); s != nil {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.v
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
	p.vols[target] = &slot{v: v}
	p.mu.Unlock()
	return v
}

// next is the state after a fetch of versions for pod's volume whose state
// was prev (nil for a first mount): its status is unconfirmed if it was, or
// if the versions changed (the status is a function of the pod, class,
// target and versions, and only the versions change).
func (p *Publisher) next(prev *volume, s *spc.Spec, pod Pod, versions []*v1alpha1.ObjectVersion) *volume {
	v := &volume{lastFetch: p.cfg.Now(), versions: versions, provider: s.Provider, spec: s}
	if p.cfg.Status != nil && (prev == nil || prev.unconfirmed != nil || !sameVersions(prev.versions, versions)) {
		v.unconfirmed = &statusOwner{Namespace: pod.Namespace, Pod: pod.Name, UID: pod.UID, SPC: s.Name}
	}
	return v
}

func sameVersions(a, b []*v1alpha1.ObjectVersion) bool {
	return slices.Equal(toStatus(a), toStatus(b))
}

// setState remembers v for the mounted volume at target, in memory and with
// the volume. A record that cannot be stored with the volume only costs a
// fetch after a restart.
func (p *Publisher) setState(target string, v *volume) {
	p.mu.Lock()
	s := p.vols[target]
	if s == nil {
		s = &slot{}
		p.vols[target] = s
	}
	p.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.v = v
	p.save(target, v)
}

// save writes v's record on target; the caller holds the volume's slot.
func (p *Publisher) save(target string, v *volume) {
	b, err := encodeRecord(v)
	if err == nil {
		err = p.cfg.Mounter.SaveState(target, b)
	}
	if err != nil {
		klog.ErrorS(err, "could not record the volume's fetch with the volume; after a driver restart it is fetched again", "target", target)
	}
}

// forget drops what memory holds about target (the record goes with the
// mount). Called before the tmpfs is unmounted: no confirmation writes the
// record afterwards, so none lands on the directory below.
func (p *Publisher) forget(target string) {
	p.mu.Lock()
	s := p.vols[target]
	delete(p.vols, target)
	p.mu.Unlock()
	if s != nil {
		s.mu.Lock()
		s.gone = true
		s.mu.Unlock()
	}
}

// StatusWritten is the status writer's confirmation (podstatus.Config
// Written) that the API server holds the status with objects for the volume
// at target. If that is the volume's current state, its record stops
// marking the status unconfirmed, so a restarted driver does not write it
// again.
func (p *Publisher) StatusWritten(target string, objects []ssv1.SecretProviderClassObject) {
	s := p.slot(target)
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gone || s.v.unconfirmed == nil || !slices.Equal(toStatus(s.v.versions), objects) {
		return
	}
	// Our tmpfs only: never an attribute on the directory below it.
	if mounted, err := p.cfg.Mounter.IsMountPoint(target); err != nil || !mounted {
		return
	}
	v := *s.v
	v.unconfirmed = nil
	s.v = &v
	p.save(target, &v)
}

// ResumeStatus gives the status writer the volumes among targets (the
// driver's tmpfs mounts found at start, before it serves) whose record says
// their status was never confirmed written: a driver killed inside the
// writer's batching window or while the API server was away lost it. It
// reads only the records (no API call for any other volume) and returns how
// many it handed over. Their records are then in memory, as a republish
// would have loaded them.
func (p *Publisher) ResumeStatus(targets []string) int {
	if p.cfg.Status == nil {
		return 0
	}
	n := 0
	for _, t := range targets {
		v := p.state(t)
		if v == nil || v.unconfirmed == nil {
			continue
		}
		if len(v.versions) == 0 {
			// The versions did not fit the record: the next fetch writes it.
			klog.InfoS("volume status unconfirmed but its record holds no versions; it is written on the next fetch", "target", t)
			continue
		}
		u := v.unconfirmed
		p.cfg.Status.Record(Outcome{
			Pod:        Pod{Namespace: u.Namespace, Name: u.Pod, UID: u.UID},
			SPC:        &spc.Spec{Namespace: u.Namespace, Name: u.SPC, Provider: v.provider},
			TargetPath: t,
			Versions:   toStatus(v.versions),
			Rotation:   true,
		})
		n++
	}
	return n
}
