package awserr

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"testing"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/sscsi/secrets-store/providers/plugin"
)

func TestKindOf(t *testing.T) {
	api := func(code string) error {
		return &smithy.OperationError{ServiceID: "Secrets Manager", OperationName: "GetSecretValue", Err: &smithy.GenericAPIError{Code: code}}
	}
	status := func(s int) error {
		return &smithy.OperationError{Err: &awshttp.ResponseError{ResponseError: &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: s}}, Err: errors.New("x")}}}
	}
	tests := []struct {
		err  error
		want error
	}{
		{api("ThrottlingException"), plugin.ErrThrottled},
		{api("TooManyRequestsException"), plugin.ErrThrottled},
		{api("ResourceNotFoundException"), plugin.ErrNotFound},
		{api("ParameterVersionNotFound"), plugin.ErrNotFound},
		{api("AccessDeniedException"), plugin.ErrPermissionDenied},
		{api("DecryptionFailure"), plugin.ErrPermissionDenied},
		{api("ExpiredTokenException"), plugin.ErrUnauthenticated},
		{api("UnrecognizedClientException"), plugin.ErrUnauthenticated},
		{api("ValidationException"), plugin.ErrInvalidParameters},
		{status(503), plugin.ErrUnavailable},
		{status(429), plugin.ErrThrottled},
		{&smithy.OperationError{Err: &net.OpError{Op: "dial", Err: errors.New("refused")}}, plugin.ErrUnavailable},
		{context.Canceled, nil},
		{errors.New("other"), nil},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.err), func(t *testing.T) {
			if got := Kind(tc.err); !errors.Is(got, tc.want) || (got == nil) != (tc.want == nil) {
				t.Errorf("Kind = %v, want %v", got, tc.want)
			}
		})
	}
	if !FailoverEligible(Wrap("x", "y", status(500))) || FailoverEligible(Wrap("x", "y", api("AccessDeniedException"))) {
		t.Error("failover must follow 5xx and not 4xx")
	}
}
