// Package awserr classifies AWS SDK errors into the plugin's error kinds
// (plugin.ErrNotFound, plugin.ErrThrottled, ...) and describes them
// without secret material, for the auth and fetch packages.
package awserr

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"

	"github.com/sscsi/secrets-store/providers/plugin"
)

// AWS error codes grouped by the plugin error kind they map to. Throttling
// codes come from the SDK's own list (retry.DefaultThrottleErrorCodes).
var (
	notFoundCodes = map[string]bool{
		"ResourceNotFoundException": true, "ParameterNotFound": true, "ParameterVersionNotFound": true,
		"ParameterVersionLabelNotFound": true,
	}
	deniedCodes = map[string]bool{
		"AccessDeniedException": true, "AccessDenied": true, "DecryptionFailure": true, "KMSAccessDeniedException": true,
		"KMSDisabledException": true, "KMSInvalidStateException": true,
	}
	unauthenticatedCodes = map[string]bool{
		"UnrecognizedClientException": true, "InvalidClientTokenId": true, "ExpiredToken": true, "ExpiredTokenException": true,
		"InvalidSignatureException": true, "IncompleteSignature": true, "SignatureDoesNotMatch": true, "MissingAuthenticationToken": true,
		"InvalidIdentityToken": true, "IDPRejectedClaim": true, "IDPCommunicationError": true,
	}
	invalidCodes = map[string]bool{
		"ValidationException": true, "InvalidParameterException": true, "InvalidRequestException": true,
		"InvalidKeyId": true, "InvalidParameterValue": true,
	}
)

// Kind returns the plugin error kind for an SDK error, or nil when none
// fits (reported as Internal).
func Kind(err error) error {
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return nil // already a kind the plugin classifies
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code := ae.ErrorCode()
		_, throttled := retry.DefaultThrottleErrorCodes[code]
		switch {
		case throttled:
			return plugin.ErrThrottled
		case notFoundCodes[code]:
			return plugin.ErrNotFound
		case deniedCodes[code]:
			return plugin.ErrPermissionDenied
		case unauthenticatedCodes[code]:
			return plugin.ErrUnauthenticated
		case invalidCodes[code]:
			return plugin.ErrInvalidParameters
		}
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		switch s := re.HTTPStatusCode(); {
		case s == 429:
			return plugin.ErrThrottled
		case s >= 500:
			return plugin.ErrUnavailable
		case s == 401:
			return plugin.ErrUnauthenticated
		case s == 403:
			return plugin.ErrPermissionDenied
		case s == 404:
			return plugin.ErrNotFound
		}
		return nil
	}
	// No HTTP response at all: the endpoint could not be reached.
	var ne net.Error
	var oe *smithy.OperationError
	if errors.As(err, &ne) || errors.As(err, &oe) {
		return plugin.ErrUnavailable
	}
	return nil
}

// CodeKind maps a per-item error code (BatchGetSecretValue's Errors) to
// a kind.
func CodeKind(code string) error {
	return Kind(&smithy.GenericAPIError{Code: code})
}

// FailoverEligible reports whether the failover region should be tried
// after err: throttling, server errors and transport failures, never a
// client error such as not found or access denied.
func FailoverEligible(err error) bool {
	return errors.Is(err, plugin.ErrThrottled) || errors.Is(err, plugin.ErrUnavailable)
}

// Wrap wraps an SDK error with its kind and the object it concerns.
// The message has the AWS error code and message, which name the object
// but never carry its value.
func Wrap(api string, what string, err error) error {
	kind := Kind(err)
	detail := describe(err)
	if kind == nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("%s %s: %w", api, what, err)
		}
		return fmt.Errorf("%s %s: %s", api, what, detail)
	}
	return fmt.Errorf("%w: %s %s: %s", kind, api, what, detail)
}

func describe(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		msg := ae.ErrorMessage()
		if len(msg) > 200 {
			msg = msg[:200] + "..."
		}
		if msg == "" {
			return ae.ErrorCode()
		}
		return ae.ErrorCode() + ": " + msg
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return fmt.Sprintf("HTTP %d", re.HTTPStatusCode())
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return "network error: " + ne.Error()
	}
	return err.Error()
}

// Code is a bounded label for an SDK result.
func Code(err error) string {
	if err == nil {
		return "OK"
	}
	var ae smithy.APIError
	switch {
	case errors.As(err, &ae):
		return ae.ErrorCode()
	case errors.Is(err, context.Canceled):
		return "Canceled"
	case errors.Is(err, context.DeadlineExceeded):
		return "DeadlineExceeded"
	}
	return "NetworkError"
}

// Truncate bounds a backend message quoted in an error.
func Truncate(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}
