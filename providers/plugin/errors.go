package plugin

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
)

// Error kinds a Backend wraps (with %w) so that Serve can pick the gRPC code
// and the MountResponse error.code. An error that wraps none of them is
// reported as Internal.
var (
	// ErrInvalidParameters: the SecretProviderClass parameters or volume
	// attributes are wrong; the user must fix the manifest.
	ErrInvalidParameters = errors.New("invalid parameters")
	// ErrNotFound: a requested object does not exist in the backend.
	ErrNotFound = errors.New("object not found")
	// ErrPermissionDenied: the pod's identity may not read an object.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrUnauthenticated: no usable identity (missing or rejected token).
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrThrottled: the backend throttled the request after retries.
	ErrThrottled = errors.New("throttled by backend")
	// ErrUnavailable: the backend could not be reached or failed.
	ErrUnavailable = errors.New("backend unavailable")
)

// errorKinds maps each kind to its gRPC code and the error.code string put in
// the MountResponse (the driver uses it as the metric error_type).
var errorKinds = []struct {
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
}

// Classify returns the gRPC code and error.code name for err.
func Classify(err error) (codes.Code, string) {
	for _, k := range errorKinds {
		if errors.Is(err, k.err) {
			return k.code, k.name
		}
	}
	return codes.Internal, "InternalError"
}
