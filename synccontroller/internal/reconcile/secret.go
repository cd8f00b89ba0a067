package reconcile

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	ssv1 "github.com/sscsi/secrets-store/driver/apis/v1"
	"github.com/sscsi/secrets-store/internal/secretdata"
	syncv1 "github.com/sscsi/secrets-store/synccontroller/apis/v1alpha1"
)

// SecretSyncLabel is upstream's label on every Secret of a SecretSync
// (value: the SecretSync's name). The prefix is reserved in the CRD.
const SecretSyncLabel = "secrets-store.sync.x-k8s.io/secretsync"

const reservedPrefix = "secrets-store.sync.x-k8s.io"

// CreatedBy is the created-by mark of ss's Secret.
func CreatedBy(name string) string { return syncv1.Kind + "/" + name }

// desired builds ss's Secret from the provider's files, without owners.
func desired(ss *syncv1.SecretSync, files map[string][]byte) (*corev1.Secret, error) {
	so := ss.Spec.SecretObject
	bad := func(field, format string, args ...any) error {
		return fail(syncv1.ReasonUserInputValidation, "spec.secretObject.%s: %s", field, fmt.Sprintf(format, args...))
	}
	typ, err := secretdata.Type(so.Type)
	if err != nil {
		return nil, bad("type", "%v", err)
	}
	if len(so.Data) == 0 {
		return nil, bad("data", "is empty: list at least one {sourcePath, targetKey}")
	}
	data := make(map[string][]byte, len(so.Data))
	for i, d := range so.Data {
		if err := secretdata.Key(d.TargetKey); err != nil {
			return nil, bad(fmt.Sprintf("data[%d].targetKey", i), "%v", err)
		}
		if _, dup := data[d.TargetKey]; dup {
			return nil, bad(fmt.Sprintf("data[%d].targetKey", i), "%q appears twice", d.TargetKey)
		}
		b, ok := files[d.SourcePath]
		if !ok {
			return nil, bad(fmt.Sprintf("data[%d].sourcePath", i), "%q: the provider returned no such file (it returned: %s)", d.SourcePath, fileNames(files))
		}
		v, err := secretdata.Value(typ, d.TargetKey, b)
		if err != nil {
			return nil, bad(fmt.Sprintf("data[%d]", i), "sourcePath %q for key %s: %v", d.SourcePath, d.TargetKey, err)
		}
		data[d.TargetKey] = v
	}
	if n := secretdata.Size(data); n > secretdata.MaxBytes {
		return nil, bad("data", "%d bytes in all; a Secret holds at most %d", n, secretdata.MaxBytes)
	}
	if err := secretdata.CheckType(typ, data); err != nil {
		return nil, bad("type", "%v", err)
	}
	labels := make(map[string]string, len(so.Labels)+2)
	for k, v := range so.Labels {
		if strings.HasPrefix(k, reservedPrefix) {
			return nil, fail(syncv1.ReasonInvalidLabel, "spec.secretObject.labels: %q: the prefix %s is reserved for the controller", k, reservedPrefix)
		}
		labels[k] = v
	}
	labels[secretdata.ManagedLabel] = "true"
	labels[SecretSyncLabel] = ss.Name
	annotations := make(map[string]string, len(so.Annotations)+1)
	for k, v := range so.Annotations {
		if strings.HasPrefix(k, reservedPrefix) || k == secretdata.CreatedByAnnotation || k == secretdata.AllowAdoptionAnnotation {
			return nil, fail(syncv1.ReasonInvalidAnnotation, "spec.secretObject.annotations: %q is reserved for the controller", k)
		}
		annotations[k] = v
	}
	annotations[secretdata.CreatedByAnnotation] = CreatedBy(ss.Name)
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: ss.Name, Namespace: ss.Namespace, Labels: labels, Annotations: annotations},
		Type:       corev1.SecretType(typ),
		Data:       data,
	}, nil
}

// syncHash is an HMAC-SHA256 keyed by ss's UID of the Secret's content and
// of the inputs (SecretSync and SecretProviderClass generations): it shows
// a change without revealing content, and differs between SecretSyncs.
func syncHash(ss *syncv1.SecretSync, spc *ssv1.SecretProviderClass, s *corev1.Secret) string {
	h := hmac.New(sha256.New, []byte(ss.UID))
	field := func(h hash.Hash, b []byte) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	field(h, []byte(fmt.Sprintf("%d/%s/%d", ss.Generation, spc.UID, spc.Generation)))
	field(h, []byte(s.Type))
	for _, k := range slices.Sorted(maps.Keys(s.Data)) {
		field(h, []byte(k))
		field(h, s.Data[k])
	}
	for _, m := range []map[string]string{s.Labels, s.Annotations} {
		for _, k := range slices.Sorted(maps.Keys(m)) {
			field(h, []byte(k))
			field(h, []byte(m[k]))
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// ownerRef makes ss the Secret's controller, so deleting ss deletes it.
func ownerRef(ss *syncv1.SecretSync) metav1.OwnerReference {
	yes := true
	return metav1.OwnerReference{APIVersion: syncv1.SchemeGroupVersion.String(), Kind: syncv1.Kind, Name: ss.Name, UID: ss.UID, Controller: &yes}
}

// patchOp is one JSON patch (RFC 6902) operation.
type patchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

func pointer(parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		b.WriteByte('/')
		b.WriteString(strings.NewReplacer("~", "~0", "/", "~1").Replace(p))
	}
	return b.String()
}

// ownedPatch updates a Secret that carries ss's marks; the API server
// applies it only if the tests pass. Other writers' labels and annotations
// stay.
func ownedPatch(ss *syncv1.SecretSync, want *corev1.Secret) []patchOp {
	ops := []patchOp{
		{Op: "test", Path: pointer("metadata", "annotations", secretdata.CreatedByAnnotation), Value: CreatedBy(ss.Name)},
		{Op: "test", Path: pointer("metadata", "ownerReferences", "0", "uid"), Value: string(ss.UID)},
		{Op: "replace", Path: pointer("data"), Value: want.Data},
	}
	return append(ops, metaOps(want)...)
}

// adoptionPatch takes over a Secret whose owner set the allow-adoption
// annotation: ss becomes its only owner and its labels become ss's. The
// opt-in is consumed, so no other SecretSync or class can take the Secret
// over from ss in turn.
func adoptionPatch(ss *syncv1.SecretSync, want *corev1.Secret) []patchOp {
	return []patchOp{
		{Op: "test", Path: pointer("metadata", "annotations", secretdata.AllowAdoptionAnnotation), Value: "true"},
		{Op: "remove", Path: pointer("metadata", "annotations", secretdata.AllowAdoptionAnnotation)},
		{Op: "add", Path: pointer("metadata", "ownerReferences"), Value: []metav1.OwnerReference{ownerRef(ss)}},
		{Op: "add", Path: pointer("metadata", "labels"), Value: want.Labels},
		{Op: "add", Path: pointer("metadata", "annotations", secretdata.CreatedByAnnotation), Value: CreatedBy(ss.Name)},
		{Op: "replace", Path: pointer("data"), Value: want.Data},
	}
}

func metaOps(want *corev1.Secret) []patchOp {
	var ops []patchOp
	for _, k := range slices.Sorted(maps.Keys(want.Labels)) {
		ops = append(ops, patchOp{Op: "add", Path: pointer("metadata", "labels", k), Value: want.Labels[k]})
	}
	for _, k := range slices.Sorted(maps.Keys(want.Annotations)) {
		ops = append(ops, patchOp{Op: "add", Path: pointer("metadata", "annotations", k), Value: want.Annotations[k]})
	}
	return ops
}

// write creates ss's Secret or patches it if it is ss's. It reports
// whether it created the Secret and whether the patch changed it.
func (r *Reconciler) write(ctx context.Context, ss *syncv1.SecretSync, want *corev1.Secret) (created, changed bool, err error) {
	secrets := r.cfg.Core.CoreV1().Secrets(ss.Namespace)
	create := func() error {
		obj := want.DeepCopy()
		obj.OwnerReferences = []metav1.OwnerReference{ownerRef(ss)}
		_, err := secrets.Create(ctx, obj, metav1.CreateOptions{})
		return err
	}
	patch := func(ops []patchOp) (*corev1.Secret, error) {
		body, err := json.Marshal(ops)
		if err != nil {
			return nil, err
		}
		return secrets.Patch(ctx, want.Name, types.JSONPatchType, body, metav1.PatchOptions{})
	}
	if ss.Status.SyncHash == "" { // never synced: most likely absent
		err := create()
		if err == nil {
			return true, true, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return false, false, writeErr(ss, "create", err)
		}
	}
	_, err = patch(ownedPatch(ss, want))
	switch {
	case err == nil:
		return false, false, nil
	case apierrors.IsNotFound(err):
		if err := create(); err != nil {
			return false, false, writeErr(ss, "create", err)
		}
		return true, true, nil
	case !testFailed(err):
		return false, false, writeErr(ss, "update", err)
	}
	_, err = patch(adoptionPatch(ss, want))
	switch {
	case err == nil:
		return false, true, nil
	case testFailed(err):
		return false, false, fail(syncv1.ReasonSecretNotOwned,
			"Secret %s/%s exists and was not created by this SecretSync (no %s=%s mark with this SecretSync as owner); the controller never overwrites it: delete or rename it, or annotate it %s=true to hand it over",
			ss.Namespace, ss.Name, secretdata.CreatedByAnnotation, CreatedBy(ss.Name), secretdata.AllowAdoptionAnnotation)
	default:
		return false, false, writeErr(ss, "adopt", err)
	}
}

// testFailed reports whether a JSON patch was refused because one of its
// test operations failed (the Secret is not ours). The API server answers
// a patch it cannot apply with a bare 422 (no kind, no causes, seen on
// v1.37); validation of a patched Secret answers 422 naming the kind and
// the fields.
func testFailed(err error) bool {
	var st apierrors.APIStatus
	if !apierrors.IsInvalid(err) || !errors.As(err, &st) {
		return false
	}
	d := st.Status().Details
	return d == nil || (d.Kind == "" && len(d.Causes) == 0)
}

func writeErr(ss *syncv1.SecretSync, verb string, err error) error {
	switch {
	case apierrors.IsForbidden(err) && strings.Contains(err.Error(), "ValidatingAdmissionPolicy"):
		return fail(syncv1.ReasonVAPCheckFailed, "%s Secret %s/%s: refused by an admission policy: %v", verb, ss.Namespace, ss.Name, err)
	case apierrors.IsForbidden(err):
		return fail(syncv1.ReasonControllerInternal, "%s Secret %s/%s: the controller's service account is not allowed (RBAC): %v", verb, ss.Namespace, ss.Name, err)
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err), apierrors.IsRequestEntityTooLargeError(err):
		return fail(syncv1.ReasonUserInputValidation, "%s Secret %s/%s: %v", verb, ss.Namespace, ss.Name, err)
	}
	return fail(syncv1.ReasonUnknown, "%s Secret %s/%s: %v", verb, ss.Namespace, ss.Name, err)
}
