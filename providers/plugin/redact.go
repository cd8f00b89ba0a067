package plugin

import (
	"context"
	"encoding/json"
	"sort"
	"time"

	"google.golang.org/grpc"
	"k8s.io/klog/v2"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"
)

// LogInterceptor logs every call at -v=5 with secret material removed: the
// token attribute, the whole secrets map and file contents are never
// logged, at any verbosity.
func LogInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	if klog.V(5).Enabled() {
		klog.V(5).InfoS("provider call", "method", info.FullMethod, "request", Redact(req), "response", Redact(resp), "code", codeOf(err).String(), "duration", time.Since(start))
	}
	return resp, err
}

// RedactedMount is the loggable form of a mount request or response.
type RedactedMount struct {
	AttributeKeys  []string          `json:"attributeKeys,omitempty"`
	Parameters     map[string]string `json:"parameters,omitempty"`
	SecretKeys     []string          `json:"secretKeys,omitempty"`
	TargetPath     string            `json:"targetPath,omitempty"`
	Permission     string            `json:"permission,omitempty"`
	Versions       map[string]string `json:"versions,omitempty"`
	Files          map[string]int    `json:"fileSizes,omitempty"`
	ErrorCode      string            `json:"errorCode,omitempty"`
	RedactedFields []string          `json:"redacted,omitempty"`
}

// loggableAttributes are attribute keys whose values are safe to log.
var loggableAttributes = map[string]bool{
	AttrPodName: true, AttrPodNamespace: true, AttrPodUID: true, AttrServiceAccount: true,
	AttrSecretSyncName: true, AttrSecretSyncUID: true,
	AttrSPCName: true, "csi.storage.k8s.io/ephemeral": true, "region": true, "failoverRegion": true,
	"provider": true,
}

// Redact returns a value safe to log for a provider API message.
func Redact(m any) any {
	switch v := m.(type) {
	case *v1alpha1.MountRequest:
		out := RedactedMount{TargetPath: v.GetTargetPath(), Permission: v.GetPermission(), Parameters: map[string]string{}}
		attrs := map[string]string{}
		_ = json.Unmarshal([]byte(v.GetAttributes()), &attrs)
		for k, val := range attrs {
			out.AttributeKeys = append(out.AttributeKeys, k)
			if loggableAttributes[k] {
				out.Parameters[k] = val
			}
		}
		sort.Strings(out.AttributeKeys)
		secrets := map[string]string{}
		_ = json.Unmarshal([]byte(v.GetSecrets()), &secrets)
		for k := range secrets {
			out.SecretKeys = append(out.SecretKeys, k)
		}
		sort.Strings(out.SecretKeys)
		out.RedactedFields = []string{"secrets", AttrTokens, "attribute values"}
		if len(v.GetCurrentObjectVersion()) > 0 {
			out.Versions = map[string]string{}
			for _, o := range v.GetCurrentObjectVersion() {
				out.Versions[o.GetId()] = o.GetVersion()
			}
		}
		return out
	case *v1alpha1.MountResponse:
		out := RedactedMount{Files: map[string]int{}, Versions: map[string]string{}}
		for _, f := range v.GetFiles() {
			out.Files[f.GetPath()] = len(f.GetContents())
		}
		for _, o := range v.GetObjectVersion() {
			out.Versions[o.GetId()] = o.GetVersion()
		}
		out.ErrorCode = v.GetError().GetCode()
		out.RedactedFields = []string{"contents"}
		return out
	case nil:
		return nil
	default:
		return m
	}
}
