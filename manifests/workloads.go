package manifests

import "embed"

// Driver is driver/daemonset.yaml: the driver DaemonSet (kube-system,
// privileged, Bidirectional propagation on the kubelet pods directory,
// self-registration with kubelet, /healthz probes).
//
//go:embed driver/daemonset.yaml
var Driver []byte

// Providers holds providers/provider-*.yaml: the DaemonSets (and, for AWS,
// the ServiceAccount and read-only RBAC) of the providers this project ships.
//
//go:embed providers/provider-*.yaml
var Providers embed.FS
