package csi

import (
	"context"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"k8s.io/klog/v2"

	"github.com/sscsi/secrets-store/driver/internal/publish"
)

const redacted = "***redacted***"

// LogInterceptor logs each CSI call: at -v=5 with the request, always with
// secrets removed: the secrets map values and the service-account tokens in
// the volume context never reach a log line, at any verbosity.
func LogInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	if klog.V(5).Enabled() {
		klog.V(5).InfoS("CSI request", "method", info.FullMethod, "request", Redact(req))
	}
	resp, err := handler(ctx, req)
	if err != nil {
		klog.ErrorS(err, "CSI call failed", "method", info.FullMethod, "code", status.Code(err).String(), "duration", time.Since(start))
	} else if klog.V(5).Enabled() {
		klog.V(5).InfoS("CSI response", "method", info.FullMethod, "response", Redact(resp), "duration", time.Since(start))
	}
	return resp, err
}

// Redact returns a copy of a CSI message that is safe to log.
func Redact(m any) any {
	switch v := m.(type) {
	case *csipb.NodePublishVolumeRequest:
		c := proto.Clone(v).(*csipb.NodePublishVolumeRequest)
		for k := range c.Secrets {
			c.Secrets[k] = redacted
		}
		if _, ok := c.VolumeContext[publish.AttrTokens]; ok {
			c.VolumeContext[publish.AttrTokens] = redacted
		}
		return c
	case *csipb.NodeStageVolumeRequest:
		c := proto.Clone(v).(*csipb.NodeStageVolumeRequest)
		for k := range c.Secrets {
			c.Secrets[k] = redacted
		}
		return c
	default:
		return m
	}
}
