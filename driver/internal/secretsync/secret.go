package secretsync

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	ssv1 "github.com/sscsi/secrets-store/driver/apis/v1"
	"github.com/sscsi/secrets-store/driver/internal/kubeclient"
	"github.com/sscsi/secrets-store/internal/atomicfs"
	"github.com/sscsi/secrets-store/internal/secretdata"
)

// creator is the CreatedByAnnotation value for a SecretProviderClass.
func creator(spcName string) string { return secretdata.Creator("SecretProviderClass", spcName) }

// volumeFiles reads mounted files by their path relative to the volume
// root, never outside it.
type volumeFiles struct {
	root *os.Root
}

// openVolume opens the current payload of a mounted volume through a
// handle rooted at it: the directory a valid ..data link names, else the
// volume root (a legacy provider that wrote plain files into the target). A
// ..data link that points anywhere else (written by a hostile provider) is
// refused, so no host file can reach a Secret.
func openVolume(target string) (*volumeFiles, error) {
	r, err := atomicfs.OpenPayload(target)
	if err != nil {
		return nil, fmt.Errorf("open mounted volume: %w", err)
	}
	return &volumeFiles{root: r}, nil
}

func (v *volumeFiles) Close() error { return v.root.Close() }

// read returns the file objectName; ErrObjectNotFound if it is absent.
func (v *volumeFiles) read(objectName string) ([]byte, error) {
	if err := atomicfs.ValidatePath(objectName); err != nil {
		return nil, err
	}
	fi, err := v.root.Stat(objectName)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, ErrObjectNotFound
	case err != nil:
		return nil, err
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("%w: it is not a regular file", ErrObjectNotFound)
	case fi.Size() > secretdata.MaxBytes:
		return nil, fmt.Errorf("the file has %d bytes; a Secret holds at most %d", fi.Size(), secretdata.MaxBytes)
	}
	return v.root.ReadFile(objectName)
}

// entryRef names one secretObjects entry in errors and events.
type entryRef struct {
	spcNamespace, spcName string
	index                 int
	secretName            string
}

func (e entryRef) String() string {
	return fmt.Sprintf("SecretProviderClass %s/%s secretObjects[%d] (secretName %q)", e.spcNamespace, e.spcName, e.index, e.secretName)
}

// desiredSecret builds the Secret an entry describes, without owners. Any
// error wraps ErrInvalidSecretObject and names the entry and the field.
func desiredSecret(ref entryRef, namespace string, so ssv1.SecretObject, files *volumeFiles) (*kubeclient.Secret, error) {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s: %s", ErrInvalidSecretObject, ref, field, fmt.Sprintf(format, args...))
	}
	if so.SecretName == "" {
		return nil, bad("secretName", "is empty")
	}
	if errs := validation.IsDNS1123Subdomain(so.SecretName); len(errs) > 0 {
		return nil, bad("secretName", "%s", strings.Join(errs, "; "))
	}
	typ, err := secretdata.Type(so.Type)
	if err != nil {
		return nil, bad("type", "%v", err)
	}
	if len(so.Data) == 0 {
		return nil, bad("data", "is empty: list at least one {objectName, key}")
	}
	data := make(map[string][]byte, len(so.Data))
	total := 0
	for j, d := range so.Data {
		if err := secretdata.Key(d.Key); err != nil {
			return nil, bad(fmt.Sprintf("data[%d].key", j), "%v", err)
		}
		if _, dup := data[d.Key]; dup {
			return nil, bad(fmt.Sprintf("data[%d].key", j), "%q appears twice", d.Key)
		}
		if d.ObjectName == "" {
			return nil, bad(fmt.Sprintf("data[%d].objectName", j), "is empty")
		}
		b, err := files.read(d.ObjectName)
		if errors.Is(err, ErrObjectNotFound) {
			return nil, fmt.Errorf("%w: %s: data[%d].objectName %q: no such file in the mounted volume (objectName is the file's path relative to the volume root, e.g. its objectAlias)",
				ErrObjectNotFound, ref, j, d.ObjectName)
		}
		if err != nil {
			return nil, bad(fmt.Sprintf("data[%d].objectName", j), "%q: %v", d.ObjectName, err)
		}
		if b, err = secretdata.Value(typ, d.Key, b); err != nil {
			return nil, bad(fmt.Sprintf("data[%d]", j), "objectName %q for key %s: %v", d.ObjectName, d.Key, err)
		}
		total += len(d.Key) + len(b)
		data[d.Key] = b
	}
	if total > secretdata.MaxBytes {
		return nil, bad("data", "%d bytes in all; a Secret holds at most %d", total, secretdata.MaxBytes)
	}
	if err := secretdata.CheckType(typ, data); err != nil {
		return nil, bad("type", "%v", err)
	}
	labels, annotations := secretdata.Marks(so.Labels, so.Annotations, creator(ref.spcName))
	return &kubeclient.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: so.SecretName, Namespace: namespace, Labels: labels, Annotations: annotations},
		Type:       string(typ),
		Data:       data,
	}, nil
}
