package publish

import (
	"context"
	"errors"
	"syscall"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"github.com/sscsi/secrets-store/driver/internal/spc"
	"github.com/sscsi/secrets-store/internal/atomicfs"
	"github.com/sscsi/secrets-store/internal/pluginclient"
)

// Code maps a pipeline error to the gRPC code kubelet sees. This is the one
// place where errors become codes. A provider's unusable response is the
// provider's fault (Internal, the message names the provider), never the
// caller's; a full volume (tmpfs size or inodes) is ResourceExhausted.
func Code(err error) codes.Code {
	switch {
	case err == nil:
		return codes.OK
	case errors.Is(err, ErrInvalidRequest):
		return codes.InvalidArgument
	case errors.Is(err, ErrBadResponse), errors.Is(err, atomicfs.ErrInvalidPayload), errors.Is(err, atomicfs.ErrForeignLayout):
		return codes.Internal
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return codes.ResourceExhausted
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, spc.ErrNotFound):
		return codes.NotFound
	case errors.Is(err, spc.ErrInvalid), errors.Is(err, pluginclient.ErrInvalidProviderName):
		return codes.FailedPrecondition
	case errors.Is(err, spc.ErrAPI), errors.Is(err, pluginclient.ErrProviderNotFound), errors.Is(err, pluginclient.ErrProviderUnavailable):
		return codes.Unavailable
	case errors.Is(err, ErrMount):
		return codes.Internal
	}
	if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
		return st.Code()
	}
	return codes.Internal
}

// legacyCodes maps the error.code names providers put in a MountResponse
// (the names providers/plugin sends) back to their gRPC codes, for
// providers that report an error in the response instead of a status.
var legacyCodes = map[string]codes.Code{
	"InvalidParameters":  codes.InvalidArgument,
	"NotFound":           codes.NotFound,
	"PermissionDenied":   codes.PermissionDenied,
	"Unauthenticated":    codes.Unauthenticated,
	"Throttled":          codes.ResourceExhausted,
	"BackendUnavailable": codes.Unavailable,
	"DeadlineExceeded":   codes.DeadlineExceeded,
	"Canceled":           codes.Canceled,
	"InternalError":      codes.Internal,
}

// legacyError turns a response's error.code into a status error with that
// code (Internal for a name we do not know), keeping the name in the
// details for the error_type metric label.
func legacyError(name, msg string) error {
	c, ok := legacyCodes[name]
	if !ok {
		c = codes.Internal
	}
	st := status.New(c, msg)
	if d, err := st.WithDetails(&v1alpha1.MountResponse{Error: &v1alpha1.Error{Code: name}}); err == nil {
		st = d
	}
	return st.Err()
}

// errorType is the metric label for an error: the provider's error.code
// when it sent one, else the gRPC code name.
func errorType(err error) string {
	if st, ok := status.FromError(err); ok {
		for _, d := range st.Details() {
			if r, ok := d.(*v1alpha1.MountResponse); ok && r.GetError().GetCode() != "" {
				return r.GetError().GetCode()
			}
		}
	}
	return Code(err).String()
}
