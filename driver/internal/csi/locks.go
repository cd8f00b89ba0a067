package csi

import "sync"

// volumeLocks lets one operation at a time work on a volume; a second one
// gets Aborted, which kubelet retries.
type volumeLocks struct {
	mu   sync.Mutex          // guards busy
	busy map[string]struct{} // volume IDs with an operation in flight
}

func newVolumeLocks() *volumeLocks { return &volumeLocks{busy: map[string]struct{}{}} }

func (l *volumeLocks) tryLock(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.busy[id]; ok {
		return false
	}
	l.busy[id] = struct{}{}
	return true
}

func (l *volumeLocks) unlock(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.busy, id)
}
