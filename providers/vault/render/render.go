// Package render turns Vault answers into files and object versions, the
// way vault-csi-provider lays them out: secretKey selects one key of the
// data (inside KV v2's data.data), an empty secretKey writes the whole
// answer as JSON, encoding decodes base64 or hex values. allKeys writes
// every key as its own file. Versions are KV v2's metadata version where
// there is one, otherwise a keyed hash of the file's contents.
package render

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strconv"

	"github.com/sscsi/secrets-store/internal/atomicfs"
	"github.com/sscsi/secrets-store/providers/plugin"
	"github.com/sscsi/secrets-store/providers/vault/client"
	"github.com/sscsi/secrets-store/providers/vault/params"
)

// MaxKeys bounds the files one allKeys object produces.
const MaxKeys = 256

// Versioner computes object versions. Its key makes hashes of secret
// contents unguessable: versions are readable by anyone who may read
// SecretProviderClassPodStatus objects.
type Versioner struct {
	key []byte
}

// NewVersioner returns a Versioner with key, or a random per-process key
// when key is empty.
func NewVersioner(key []byte) (*Versioner, error) {
	if len(key) == 0 {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("generate version hash key: %w", err)
		}
	}
	if len(key) < 16 {
		return nil, errors.New("the version hash key must be at least 16 bytes")
	}
	return &Versioner{key: append([]byte(nil), key...)}, nil
}

// LoadKey reads a version hash key file (at least 16 bytes; surrounding
// whitespace is ignored).
func LoadKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read version hash key: %w", err)
	}
	b = bytes.TrimSpace(b)
	if len(b) < 16 {
		return nil, fmt.Errorf("version hash key file %s holds fewer than 16 bytes", path)
	}
	return b, nil
}

func (v *Versioner) hash(contents []byte) string {
	m := hmac.New(sha256.New, v.key)
	m.Write(contents)
	return "hmac-" + base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:18])
}

// Files renders one object from its Vault answer. def is the mount's
// default file mode.
func (v *Versioner) Files(o params.ObjectSpec, s *client.Secret, def fs.FileMode) ([]plugin.File, []plugin.ObjectVersion, error) {
	mode := o.Mode
	if mode == 0 {
		mode = def
	}
	kvVersion := kvV2Version(s)
	var files []plugin.File
	var versions []plugin.ObjectVersion
	add := func(path string, contents []byte) {
		files = append(files, plugin.File{Path: path, Mode: mode, Contents: contents})
		ver := kvVersion
		if ver == "" {
			ver = v.hash(contents)
		}
		versions = append(versions, plugin.ObjectVersion{ID: path, Version: ver})
	}
	switch {
	case o.AllKeys:
		data := innerData(s)
		if len(data) == 0 {
			return nil, nil, fmt.Errorf("%w: object %s: allKeys: the secret has no data", plugin.ErrNotFound, o.Name)
		}
		if len(data) > MaxKeys {
			return nil, nil, fmt.Errorf("%w: object %s: allKeys: the secret has %d keys; at most %d are written", plugin.ErrInvalidParameters, o.Name, len(data), MaxKeys)
		}
		keys := make([]string, 0, len(data))
		for k := range data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			path := o.Name + "/" + k
			if err := atomicfs.ValidatePath(path); err != nil || len(k) > 255 {
				return nil, nil, fmt.Errorf("%w: object %s: allKeys: a key of the secret is not a safe file name (keys %d..%d)", plugin.ErrInvalidParameters, o.Name, 0, len(keys)-1)
			}
			raw, err := valueBytes(data[k])
			if err != nil {
				return nil, nil, fmt.Errorf("%w: object %s: allKeys: %v", plugin.ErrInvalidParameters, o.Name, err)
			}
			dec, err := decode(raw, o.Encoding)
			if err != nil {
				return nil, nil, fmt.Errorf("%w: object %s: key %s: %v", plugin.ErrInvalidParameters, o.Name, safeName(k), err)
			}
			add(path, dec)
		}
	case o.Key == "":
		b, err := json.Marshal(s)
		if err != nil {
			return nil, nil, fmt.Errorf("object %s: the Vault answer cannot be written as JSON", o.Name)
		}
		add(o.Name, b)
	default:
		data := innerData(s)
		val, ok := data[o.Key]
		if !ok {
			return nil, nil, fmt.Errorf("%w: object %s: secretKey %s does not exist at secretPath %s", plugin.ErrNotFound, o.Name, safeName(o.Key), o.Request.Path)
		}
		raw, err := valueBytes(val)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: object %s: secretKey %s: %v", plugin.ErrInvalidParameters, o.Name, safeName(o.Key), err)
		}
		dec, err := decode(raw, o.Encoding)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: object %s: field encoding: %v", plugin.ErrInvalidParameters, o.Name, err)
		}
		add(o.Name, dec)
	}
	return files, versions, nil
}

// innerData returns the map secretKey looks in: data.data when data has a
// map under "data" (KV v2), else data itself, as vault-csi-provider does.
func innerData(s *client.Secret) map[string]any {
	if inner, ok := s.Data["data"].(map[string]any); ok {
		return inner
	}
	return s.Data
}

// kvV2Version returns data.metadata.version of a KV v2 read, or "".
func kvV2Version(s *client.Secret) string {
	if _, ok := s.Data["data"].(map[string]any); !ok {
		return ""
	}
	md, ok := s.Data["metadata"].(map[string]any)
	if !ok {
		return ""
	}
	switch n := md["version"].(type) {
	case json.Number:
		if i, err := n.Int64(); err == nil && i > 0 {
			return strconv.FormatInt(i, 10)
		}
	case float64:
		if n > 0 {
			return strconv.FormatInt(int64(n), 10)
		}
	}
	return ""
}

// valueBytes writes strings as they are and anything else as JSON, as
// vault-csi-provider does.
func valueBytes(v any) ([]byte, error) {
	if s, ok := v.(string); ok {
		return []byte(s), nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, errors.New("the value cannot be written as JSON")
	}
	return b, nil
}

func decode(b []byte, e params.Encoding) ([]byte, error) {
	switch e {
	case params.EncodingBase64:
		out := make([]byte, base64.StdEncoding.DecodedLen(len(b)))
		n, err := base64.StdEncoding.Decode(out, bytes.TrimSpace(b))
		if err != nil {
			return nil, errors.New("the value is not valid base64 (encoding: base64)")
		}
		return out[:n], nil
	case params.EncodingHex:
		out := make([]byte, hex.DecodedLen(len(bytes.TrimSpace(b))))
		n, err := hex.Decode(out, bytes.TrimSpace(b))
		if err != nil {
			return nil, errors.New("the value is not valid hex (encoding: hex)")
		}
		return out[:n], nil
	default:
		return b, nil
	}
}

// safeName quotes a key name for an error when it is short and printable.
func safeName(k string) string {
	if len(k) > 64 {
		return strconv.Quote(k[:64] + "...")
	}
	return strconv.Quote(k)
}
