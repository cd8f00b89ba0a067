package publish

import (
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"github.com/sscsi/secrets-store/driver/internal/spc"
	"github.com/sscsi/secrets-store/internal/atomicfs"
	"github.com/sscsi/secrets-store/internal/pluginclient"
)

// Code maps a pipeline error to the gRPC code kubelet sees. This is the one
// place where errors become codes.
func Code(err error) codes.Code {
	switch {
	case err == nil:
		return codes.OK
	case errors.Is(err, ErrInvalidRequest), errors.Is(err, ErrBadResponse), errors.Is(err, atomicfs.ErrInvalidPayload):
		return codes.InvalidArgument
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
