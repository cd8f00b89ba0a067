package plugin

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
)

// TestClassifyCoversEverySentinel: every error kind a Backend may wrap maps
// to its gRPC code and error.code name, also under %w chains.
func TestClassifyCoversEverySentinel(t *testing.T) {
	cases := []struct {
		err  error
		code codes.Code
		name string
	}{
		{ErrInvalidParameters, codes.InvalidArgument, "InvalidParameters"},
		{ErrNotFound, codes.NotFound, "NotFound"},
		{ErrPermissionDenied, codes.PermissionDenied, "PermissionDenied"},
		{ErrUnauthenticated, codes.Unauthenticated, "Unauthenticated"},
		{ErrThrottled, codes.ResourceExhausted, "Throttled"},
		{ErrUnavailable, codes.Unavailable, "BackendUnavailable"},
		{context.DeadlineExceeded, codes.DeadlineExceeded, "DeadlineExceeded"},
		{context.Canceled, codes.Canceled, "Canceled"},
		{errors.New("a bug"), codes.Internal, "InternalError"},
	}
	if len(cases)-1 != len(errorKinds) {
		t.Fatalf("the table covers %d kinds, errorKinds has %d", len(cases)-1, len(errorKinds))
	}
	for _, c := range cases {
		for _, err := range []error{c.err, fmt.Errorf("%w: objects[0]: detail", c.err), fmt.Errorf("mount: %w", fmt.Errorf("%w: x", c.err))} {
			if code, name := Classify(err); code != c.code || name != c.name {
				t.Errorf("Classify(%v) = %v %s, want %v %s", err, code, name, c.code, c.name)
			}
		}
	}
}
