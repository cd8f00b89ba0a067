// Package publish is the mount pipeline shared by first mounts and rotation
// republishes: resolve the SecretProviderClass, mount a tmpfs, call the
// provider, write the files atomically, and hand the outcome to the pod
// status writer, the Secret syncer and the metrics.
package publish

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	ssv1 "github.com/sscsi/secrets-store/driver/apis/v1"
	"github.com/sscsi/secrets-store/driver/internal/metrics"
	"github.com/sscsi/secrets-store/driver/internal/rotation"
	"github.com/sscsi/secrets-store/driver/internal/spc"
	"github.com/sscsi/secrets-store/driver/internal/tmpfs"
	"github.com/sscsi/secrets-store/internal/atomicfs"
	"github.com/sscsi/secrets-store/internal/pluginclient"
)

// Volume context keys.
const (
	AttrSPC            = "secretProviderClass"
	AttrPodName        = "csi.storage.k8s.io/pod.name"
	AttrPodNamespace   = "csi.storage.k8s.io/pod.namespace"
	AttrPodUID         = "csi.storage.k8s.io/pod.uid"
	AttrServiceAccount = "csi.storage.k8s.io/serviceAccount.name"
	AttrTokens         = "csi.storage.k8s.io/serviceAccount.tokens" //nolint:gosec // G101: an attribute name, not a credential
)

// Errors of the pipeline (besides spc's and pluginclient's). The CSI layer
// maps them to gRPC codes.
var (
	// ErrInvalidRequest: the volume context lacks something it needs.
	ErrInvalidRequest = errors.New("invalid volume request")
	// ErrBadResponse: the provider's response is unusable (bad paths,
	// modes, sizes, no object versions, or an error code).
	ErrBadResponse = errors.New("invalid provider response")
	// ErrMount: the tmpfs could not be mounted or the files written.
	ErrMount = errors.New("mount failed")
)

// Providers calls provider plugins.
type Providers interface {
	Mount(ctx context.Context, provider string, req *v1alpha1.MountRequest) (*v1alpha1.MountResponse, error)
}

// Pod identifies the pod a volume belongs to.
type Pod struct {
	Namespace, Name, UID, ServiceAccount string
}

// Outcome is what a successful fetch produced, for the status writer and
// the Secret syncer.
type Outcome struct {
	Pod           Pod
	SPC           *spc.Spec
	TargetPath    string
	Versions      []ssv1.SecretProviderClassObject // sorted by ID
	Changed       bool                             // files changed on disk
	Rotation      bool                             // a republish, not a first mount
	SecretObjects []ssv1.SecretObject
}

// StatusRecorder records SecretProviderClassPodStatus; it must not block.
type StatusRecorder interface {
	Record(o Outcome)
	Forget(targetPath string)
}

// SecretSyncer mirrors secretObjects into Kubernetes Secrets; it must not
// block the publish for long and reports its own failures as events.
type SecretSyncer interface {
	Sync(ctx context.Context, o Outcome)
}

// Events emits pod events.
type Events interface {
	Event(pod Pod, warning bool, reason, message string)
}

// Config wires a Publisher.
type Config struct {
	Mounter   tmpfs.Mounter
	SPCs      spc.Getter
	Providers Providers
	Rotation  rotation.Policy
	// TmpfsSize caps each volume's tmpfs (bytes; 0 = kernel default).
	TmpfsSize int64
	// Limits bound each payload; the tmpfs's inode cap is derived from
	// them (atomicfs.Limits.Inodes).
	Limits  atomicfs.Limits
	Status  StatusRecorder // optional
	Secrets SecretSyncer   // optional
	Events  Events         // optional
	Metrics *metrics.Recorder
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Publisher runs the pipeline. Callers serialise calls per target path.
type Publisher struct {
	cfg Config

	mu   sync.Mutex       // guards vols
	vols map[string]*slot // by target path
}

// New validates cfg.
func New(cfg Config) (*Publisher, error) {
	if cfg.Mounter == nil || cfg.SPCs == nil || cfg.Providers == nil || cfg.Metrics == nil {
		return nil, errors.New("publish: Mounter, SPCs, Providers and Metrics are required")
	}
	if err := cfg.Rotation.Validate(); err != nil {
		return nil, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Publisher{cfg: cfg, vols: map[string]*slot{}}, nil
}

// Request is a validated NodePublishVolume.
type Request struct {
	VolumeID      string
	TargetPath    string
	VolumeContext map[string]string
	Secrets       map[string]string
	// Group is the pod's fsGroup (CSI volume_mount_group), nil without one.
	// With a group the volume's files and directories are owned by it,
	// group-readable and closed to others; without, modes are the
	// provider's and the owner root, as with upstream.
	Group *uint32
}

func (r Request) writeOptions() []atomicfs.Option {
	if r.Group == nil {
		return nil
	}
	return []atomicfs.Option{atomicfs.WithGroup(*r.Group)}
}

// Volumes returns how many volumes are remembered (metrics, tests).
func (p *Publisher) Volumes() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.vols)
}

// Publish mounts or republishes a volume.
func (p *Publisher) Publish(ctx context.Context, req Request) error {
	podNS, spcName := req.VolumeContext[AttrPodNamespace], req.VolumeContext[AttrSPC]
	if spcName == "" {
		return fmt.Errorf("%w: secretProviderClass is not set: volumeAttributes.secretProviderClass is missing: name the SecretProviderClass in the pod's volume", ErrInvalidRequest)
	}
	if podNS == "" {
		return fmt.Errorf("%w: volume context has no %s: the CSIDriver object must set podInfoOnMount: true", ErrInvalidRequest, AttrPodNamespace)
	}
	mounted, err := p.cfg.Mounter.IsMountPoint(req.TargetPath)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrMount, err)
	}
	if mounted {
		st := p.state(req.TargetPath)
		if st == nil {
			return p.complete(ctx, req)
		}
		if !p.cfg.Rotation.Due(st.lastFetch, p.cfg.Now(), req.TargetPath) {
			return nil
		}
		p.rotate(ctx, req, st)
		return nil
	}
	return p.first(ctx, req)
}

// complete handles a mounted volume without a record. Either a driver died
// during the first mount (after mount(2), before the record): kubelet never
// saw success, so the pod is not running; the tmpfs is unmounted and the
// mount starts over, which discards a half-written payload. Or the volume
// holds a payload but no record (a driver died between writing and
// recording, or a driver without records mounted it before an in-place
// upgrade): it is re-fetched once like a rotation, keeping the files on
// failure, which also completes a payload whose top-level links were not
// all made.
func (p *Publisher) complete(ctx context.Context, req Request) error {
	has, err := atomicfs.HasPayload(req.TargetPath)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrMount, err)
	}
	if has {
		klog.InfoS("mounted volume has no record; fetching it again", "target", req.TargetPath)
		p.rotate(ctx, req, &volume{})
		return nil
	}
	klog.InfoS("unmounting an interrupted first mount before mounting again", "target", req.TargetPath)
	if err := p.cfg.Mounter.Unmount(req.TargetPath); err != nil {
		return fmt.Errorf("%w: %w", ErrMount, err)
	}
	return p.first(ctx, req)
}

func podOf(vc map[string]string) Pod {
	return Pod{Namespace: vc[AttrPodNamespace], Name: vc[AttrPodName], UID: vc[AttrPodUID], ServiceAccount: vc[AttrServiceAccount]}
}

// first is a first mount: on any failure the tmpfs is removed again so that
// kubelet's retry starts clean.
func (p *Publisher) first(ctx context.Context, req Request) (err error) {
	start := p.cfg.Now()
	pod := podOf(req.VolumeContext)
	provider := ""
	defer func() {
		if err != nil {
			p.cfg.Metrics.Publish(provider, errorType(err), 0, true)
		}
	}()
	// A volume unmounted behind the driver's back leaves nothing to know.
	p.forget(req.TargetPath)
	s, err := spc.Resolve(ctx, p.cfg.SPCs, pod.Namespace, req.VolumeContext[AttrSPC])
	if err != nil {
		return withUpstreamSPCPhrase(pod.Namespace, req.VolumeContext[AttrSPC], err)
	}
	provider = s.Provider
	mreq, err := buildMountRequest(s, req, nil)
	if err != nil {
		return err
	}
	if err := p.cfg.Mounter.Mount(req.TargetPath, tmpfs.Limits{SizeBytes: p.cfg.TmpfsSize, Inodes: p.cfg.Limits.Inodes()}); err != nil {
		return fmt.Errorf("%w: %w", ErrMount, err)
	}
	defer func() {
		if err != nil {
			if uerr := p.cfg.Mounter.Unmount(req.TargetPath); uerr != nil {
				klog.ErrorS(uerr, "cleanup after failed mount", "target", req.TargetPath)
			}
		}
	}()
	if req.Group != nil {
		// The tmpfs root too, before the provider sees the volume.
		if err := atomicfs.ApplyGroup(req.TargetPath, *req.Group); err != nil {
			return fmt.Errorf("%w: %w", ErrMount, err)
		}
	}
	versions, changed, err := p.fetch(ctx, s, mreq, req)
	if err != nil {
		// Upstream's words first: alerts written for it match on them.
		return fmt.Errorf("failed to mount secrets store objects for pod %s/%s, err: %w", pod.Namespace, pod.Name, err)
	}
	v := p.next(nil, s, pod, versions)
	p.setState(req.TargetPath, v)
	p.cfg.Metrics.Publish(s.Provider, "", p.cfg.Now().Sub(start), true)
	klog.V(2).InfoS("volume mounted", "pod", klog.KRef(pod.Namespace, pod.Name), "spc", s.Name, "provider", s.Provider, "objects", len(versions), "duration", p.cfg.Now().Sub(start))
	p.after(ctx, v, Outcome{Pod: pod, SPC: s, TargetPath: req.TargetPath, Versions: toStatus(versions), Changed: changed, SecretObjects: s.SecretObjects})
	return nil
}

// rotate re-fetches a mounted volume. A failure keeps the last good files,
// is counted and reported on the pod, and is not returned: older kubelets
// tear a volume down when a republish fails.
func (p *Publisher) rotate(ctx context.Context, req Request, st *volume) {
	start := p.cfg.Now()
	pod := podOf(req.VolumeContext)
	provider := st.provider
	fail := func(err error) {
		p.cfg.Metrics.Rotation(provider, errorType(err), false, p.cfg.Now().Sub(start))
		klog.ErrorS(err, "rotation failed; keeping the mounted files", "pod", klog.KRef(pod.Namespace, pod.Name), "target", req.TargetPath)
		if p.cfg.Events != nil {
			p.cfg.Events.Event(pod, true, "SecretRotationFailed", "failed to rotate secrets, keeping the mounted files: "+err.Error())
		}
	}
	s, err := spc.Resolve(ctx, p.cfg.SPCs, pod.Namespace, req.VolumeContext[AttrSPC])
	switch {
	case errors.Is(err, spc.ErrUnreachable) && st.spec != nil && st.spec.Name == req.VolumeContext[AttrSPC]:
		// The API server is away: keep rotating with the class of the last
		// fetch, as an informer cache would. The pod status and synced
		// Secrets catch up through their own retries when it is back.
		klog.InfoS("Kubernetes API unreachable; rotating with the last SecretProviderClass read", "pod", klog.KRef(pod.Namespace, pod.Name), "spc", st.spec.Name, "err", err)
		s = st.spec
	case err != nil:
		fail(err)
		return
	}
	provider = s.Provider
	mreq, err := buildMountRequest(s, req, st.versions)
	if err != nil {
		fail(err)
		return
	}
	versions, changed, err := p.fetch(ctx, s, mreq, req)
	if err != nil {
		// Upstream's words for a failed re-fetch: alerts written for it match on them.
		fail(fmt.Errorf("provider mount err: %w", err))
		return
	}
	v := p.next(st, s, pod, versions)
	p.setState(req.TargetPath, v)
	p.cfg.Metrics.Rotation(s.Provider, "", changed, p.cfg.Now().Sub(start))
	if changed {
		klog.InfoS("secrets rotated", "pod", klog.KRef(pod.Namespace, pod.Name), "spc", s.Name, "provider", s.Provider)
		if p.cfg.Events != nil {
			p.cfg.Events.Event(pod, false, "SecretRotationComplete", fmt.Sprintf("successfully rotated mounted contents for SecretProviderClass %s", s.Name))
		}
	}
	p.after(ctx, v, Outcome{Pod: pod, SPC: s, TargetPath: req.TargetPath, Versions: toStatus(versions), Changed: changed, Rotation: true, SecretObjects: s.SecretObjects})
}

// after hands the outcome of a fetch that left the volume in state v to the
// status writer (only when the status is not confirmed: an unchanged
// rotation, also the first one after a restart, costs no API call) and the
// Secret syncer.
func (p *Publisher) after(ctx context.Context, v *volume, o Outcome) {
	if p.cfg.Status != nil && v.unconfirmed != nil {
		p.cfg.Status.Record(o)
	}
	if p.cfg.Secrets != nil && len(o.SecretObjects) > 0 && (o.Changed || !o.Rotation) {
		p.cfg.Secrets.Sync(ctx, o)
	}
}

// fetch calls the provider and writes what it returns.
func (p *Publisher) fetch(ctx context.Context, s *spc.Spec, mreq *v1alpha1.MountRequest, req Request) ([]*v1alpha1.ObjectVersion, bool, error) {
	callStart := time.Now()
	a, err := ask(ctx, p.cfg.Providers, s, mreq, p.cfg.Limits)
	p.cfg.Metrics.ProviderCall(s.Provider, a.callCode, time.Since(callStart))
	if err != nil {
		return nil, false, err
	}
	if a.legacy {
		// Legacy provider: it wrote into the target path itself.
		if req.Group != nil {
			if err := atomicfs.ApplyGroup(mreq.TargetPath, *req.Group); err != nil {
				return nil, false, fmt.Errorf("%w: %w", ErrMount, err)
			}
		}
		return a.versions, true, nil
	}
	changed, err := atomicfs.Write(mreq.TargetPath, a.files, p.cfg.Limits, req.writeOptions()...)
	if err != nil {
		return nil, false, fmt.Errorf("%w: write files: %w", ErrMount, err)
	}
	return a.versions, changed, nil
}

// answer is a provider's validated response.
type answer struct {
	callCode string // the gRPC code of the call, for metrics
	versions []*v1alpha1.ObjectVersion
	files    []atomicfs.File
	legacy   bool // no files: the provider wrote into the target path itself
}

// ask calls the provider and validates its response; nothing is written.
// Mounts and dry runs (sscsi fetch) share it, so both fail the same way.
func ask(ctx context.Context, providers Providers, s *spc.Spec, mreq *v1alpha1.MountRequest, lim atomicfs.Limits) (answer, error) {
	resp, err := providers.Mount(ctx, s.Provider, mreq)
	a := answer{callCode: status.Code(err).String()}
	if errors.Is(err, pluginclient.ErrProviderNotFound) || errors.Is(err, pluginclient.ErrProviderUnavailable) {
		return a, fmt.Errorf("error connecting to provider %q: %w", s.Provider, err)
	}
	if err != nil {
		return a, fmt.Errorf("provider %q failed for SecretProviderClass %s/%s: %w", s.Provider, s.Namespace, s.Name, err)
	}
	if c := resp.GetError().GetCode(); c != "" {
		return a, legacyError(c, fmt.Sprintf("provider %q for SecretProviderClass %s/%s: mount request failed with provider error code %s", s.Provider, s.Namespace, s.Name, c))
	}
	versions := resp.GetObjectVersion()
	if len(versions) == 0 {
		return a, fmt.Errorf("%w: missing object versions: provider %q returned none for SecretProviderClass %s/%s", ErrBadResponse, s.Provider, s.Namespace, s.Name)
	}
	for i, v := range versions {
		if v.GetId() == "" {
			return a, fmt.Errorf("%w: provider %q: object_version[%d] has an empty id", ErrBadResponse, s.Provider, i)
		}
	}
	a.versions = versions
	if len(resp.GetFiles()) == 0 {
		a.legacy = true
		return a, nil
	}
	files := make([]atomicfs.File, len(resp.GetFiles()))
	for i, f := range resp.GetFiles() {
		if f.GetMode() < 0 {
			return a, fmt.Errorf("%w: provider %q: file %q has negative mode %d", ErrBadResponse, s.Provider, f.GetPath(), f.GetMode())
		}
		//nolint:gosec // G115: the mode was checked non-negative above; atomicfs.Validate bounds it to 0777
		files[i] = atomicfs.File{Path: f.GetPath(), Mode: os.FileMode(f.GetMode()), Contents: f.GetContents()}
	}
	if err := atomicfs.Validate(files, lim); err != nil {
		return a, fmt.Errorf("%w: provider %q for SecretProviderClass %s/%s: %w", ErrBadResponse, s.Provider, s.Namespace, s.Name, err)
	}
	a.files = files
	return a, nil
}

// Unpublish removes a volume: contents, mount and directory. Unknown or
// unmounted paths are success.
func (p *Publisher) Unpublish(_ context.Context, target string) error {
	// First: once the tmpfs is gone nothing may write its record.
	p.forget(target)
	// Unmount checks the mount point itself (and is a no-op when unmounted).
	if err := p.cfg.Mounter.Unmount(target); err != nil {
		return fmt.Errorf("%w: %w", ErrMount, err)
	}
	if err := removeTarget(target); err != nil {
		return fmt.Errorf("%w: remove target directory: %w", ErrMount, err)
	}
	if p.cfg.Status != nil {
		p.cfg.Status.Forget(target)
	}
	return nil
}

// removeTarget removes the target directory: one rmdir(2) for the usual
// empty directory left by the unmount, everything below it otherwise.
func removeTarget(target string) error {
	err := syscall.Rmdir(target)
	if err == nil || errors.Is(err, syscall.ENOENT) {
		return nil
	}
	return os.RemoveAll(target)
}

// buildMountRequest fills the provider request exactly as the upstream
// driver does: parameters overlaid by every volume attribute, tokens taken
// from the CSI secrets first, secrets JSON ("null" when empty), permission
// "420".
func buildMountRequest(s *spc.Spec, req Request, current []*v1alpha1.ObjectVersion) (*v1alpha1.MountRequest, error) {
	attrs := make(map[string]string, len(s.Parameters)+len(req.VolumeContext)+1)
	for k, v := range s.Parameters {
		attrs[k] = v
	}
	for k, v := range req.VolumeContext {
		attrs[k] = v
	}
	secrets := make(map[string]string, len(req.Secrets))
	for k, v := range req.Secrets {
		if k == AttrTokens {
			attrs[AttrTokens] = v
			continue
		}
		secrets[k] = v
	}
	a, err := json.Marshal(attrs)
	if err != nil {
		return nil, fmt.Errorf("%w: encode attributes: %v", ErrInvalidRequest, err)
	}
	sec := []byte("null")
	if len(secrets) > 0 {
		if sec, err = json.Marshal(secrets); err != nil {
			return nil, fmt.Errorf("%w: encode secrets: %v", ErrInvalidRequest, err)
		}
	}
	return &v1alpha1.MountRequest{
		Attributes:           string(a),
		Secrets:              string(sec),
		TargetPath:           req.TargetPath,
		Permission:           strconv.Itoa(0o644),
		CurrentObjectVersion: current,
	}, nil
}

// withUpstreamSPCPhrase puts the upstream driver's words for a class it could
// not read in front of ours (which name the fix): scripts and alerts written
// for upstream match FailedMount events on "failed to get secretproviderclass
// <namespace>/<name>".
func withUpstreamSPCPhrase(namespace, name string, err error) error {
	if errors.Is(err, spc.ErrNotFound) || errors.Is(err, spc.ErrAPI) {
		return fmt.Errorf("failed to get secretproviderclass %s/%s, error: %w", namespace, name, err)
	}
	return err
}

func toStatus(vs []*v1alpha1.ObjectVersion) []ssv1.SecretProviderClassObject {
	out := make([]ssv1.SecretProviderClassObject, len(vs))
	for i, v := range vs {
		out[i] = ssv1.SecretProviderClassObject{ID: v.GetId(), Version: v.GetVersion()}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
