package publish

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sscsi/secrets-store/driver/internal/spc"
	"github.com/sscsi/secrets-store/internal/atomicfs"
	"github.com/sscsi/secrets-store/internal/pluginclient"
	"github.com/sscsi/secrets-store/providers/plugin"
)

// TestCodeCoversEverySentinel: every sentinel the pipeline can return maps
// to its code, also when wrapped the way the pipeline wraps it.
func TestCodeCoversEverySentinel(t *testing.T) {
	cases := []struct {
		err  error
		want codes.Code
	}{
		{nil, codes.OK},
		{ErrInvalidRequest, codes.InvalidArgument},
		{ErrBadResponse, codes.Internal},
		{ErrMount, codes.Internal},
		{atomicfs.ErrInvalidPayload, codes.Internal},
		{atomicfs.ErrForeignLayout, codes.Internal},
		{spc.ErrNotFound, codes.NotFound},
		{spc.ErrInvalid, codes.FailedPrecondition},
		{spc.ErrAPI, codes.Unavailable},
		{spc.ErrUnreachable, codes.Unavailable},
		{pluginclient.ErrInvalidProviderName, codes.FailedPrecondition},
		{pluginclient.ErrProviderNotFound, codes.Unavailable},
		{pluginclient.ErrProviderUnavailable, codes.Unavailable},
		// A full tmpfs (bytes or inodes) while writing the files.
		{fmt.Errorf("%w: write files: %w", ErrMount, fmt.Errorf("write %q: %w", "a", syscall.ENOSPC)), codes.ResourceExhausted},
		{fmt.Errorf("%w: %w", ErrMount, syscall.EDQUOT), codes.ResourceExhausted},
		// A provider's own status passes through, wrapped or not.
		{status.Error(codes.PermissionDenied, "denied"), codes.PermissionDenied},
		{fmt.Errorf("provider %q failed: %w", "aws", status.Error(codes.NotFound, "x")), codes.NotFound},
		{status.Error(codes.Unknown, "?"), codes.Internal},
		{errors.New("anything else"), codes.Internal},
		{context.DeadlineExceeded, codes.DeadlineExceeded},
		{fmt.Errorf("%w: %w", ErrMount, context.Canceled), codes.Canceled},
	}
	for _, c := range cases {
		for _, err := range []error{c.err, wrap(c.err)} {
			if got := Code(err); got != c.want {
				t.Errorf("Code(%v) = %v, want %v", err, got, c.want)
			}
		}
	}
}

func wrap(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("publish ns/pod: %w", err)
}

// TestLegacyErrorCodeMapsBack: a provider that reports error.code in the
// response (no status) gets the gRPC code its name stands for; every name
// providers/plugin sends is known.
func TestLegacyErrorCodeMapsBack(t *testing.T) {
	for _, kind := range []error{
		plugin.ErrInvalidParameters, plugin.ErrNotFound, plugin.ErrPermissionDenied, plugin.ErrUnauthenticated,
		plugin.ErrThrottled, plugin.ErrUnavailable, context.DeadlineExceeded, context.Canceled, errors.New("internal"),
	} {
		want, name := plugin.Classify(kind)
		err := legacyError(name, "provider \"p\": mount request failed with provider error code "+name)
		if got := Code(fmt.Errorf("wrapped: %w", err)); got != want {
			t.Errorf("error.code %s: Code = %v, want %v", name, got, want)
		}
		if got := errorType(err); got != name {
			t.Errorf("error.code %s: metric error_type = %s", name, got)
		}
	}
	if got := Code(legacyError("SomethingNew", "x")); got != codes.Internal {
		t.Errorf("unknown error.code: %v, want Internal", got)
	}
}
