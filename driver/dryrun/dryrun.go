// Package dryrun is the driver's mount pipeline without a volume, for tools
// outside the driver (sscsi fetch): a SecretProviderClass is checked, its
// provider called over its socket and the answer validated by the very code
// a pod's first mount runs, so a dry run fails with the same gRPC code and
// message as the mount would. Nothing is written.
package dryrun

import (
	"context"

	"google.golang.org/grpc/codes"

	"github.com/sscsi/secrets-store/driver/internal/publish"
)

// Request is one dry run; see publish.DryRun for the fields.
type Request = publish.DryRun

// Result is the provider's validated answer.
type Result = publish.DryRunResult

// Pod stands in for the pod whose identity the provider uses.
type Pod = publish.Pod

// Providers calls provider plugins (internal/pluginclient.Client).
type Providers = publish.Providers

// Run performs r through providers.
func Run(ctx context.Context, r Request, providers Providers) (*Result, error) {
	return r.Run(ctx, providers)
}

// Code is the gRPC code kubelet would see for err.
func Code(err error) codes.Code { return publish.Code(err) }
