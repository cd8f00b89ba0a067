package diagnosis

import (
	"regexp"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// rule maps a FailedMount / SecretRotationFailed / FailedToCreateSecret
// message to a diagnosis: one rule per row of docs/troubleshooting.md.
type rule struct {
	id, problem, fix string
	match            *regexp.Regexp
}

// Fixes shared by several rows.
const (
	fixProviderLogs = "`kubectl logs` of the provider pod on this node; restart it. The driver fails fast instead of waiting for kubelet's two-minute timeout."
	fixMalformed    = "Upgrade the provider; report it to its maintainers."
)

// rules are tried in order (specific before general); the first match names
// an event's problem.
var rules = []rule{
	{"driver-not-registered", "the driver is not registered with kubelet on the pod's node",
		"`kubectl -n kube-system get pods -o wide -l app=secrets-store-csi-driver`; check the pod's logs for `registered with kubelet`. If `linux.kubeletRootDir` does not match kubelet's `--root-dir`, kubelet never sees the registration socket.",
		regexp.MustCompile(`not found in the list of registered CSI drivers`)},
	{"readonly", "the pod's csi volume lacks readOnly: true",
		"Add `readOnly: true` under `volumes[].csi` (not only on the volumeMount).",
		regexp.MustCompile(`Readonly is not true in request`)},
	{"class-attribute-missing", "the pod's volume names no SecretProviderClass",
		"`volumeAttributes: {secretProviderClass: <name>}`.",
		regexp.MustCompile(`secretProviderClass is not set`)},
	{"pod-info-off", "the CSIDriver does not pass pod info",
		"Reinstall the chart's CSIDriver (`podInfoOnMount: true`).",
		regexp.MustCompile(`podInfoOnMount: true`)},
	{"block-volume", "the volume asks for block access",
		"Use an inline `csi` volume, not a block PVC.",
		regexp.MustCompile(`block access is not supported`)},
	{"class-forbidden", "the driver may not read SecretProviderClasses",
		"Install with `rbac.install: true`, or bind `secretproviderclasses-role` to the driver's ServiceAccount in its namespace.",
		regexp.MustCompile(`is forbidden: check the driver's RBAC`)},
	{"class-not-found", "the SecretProviderClass does not exist in the pod's namespace",
		"Create it there (`kubectl -n <ns> get secretproviderclasses`); a class in another namespace is never used.",
		regexp.MustCompile(`SecretProviderClass not found|failed to get secretproviderclass .*not found`)},
	{"api-unavailable", "the driver could not reach the Kubernetes API",
		"Transient: kubelet retries. If it persists, check the node's connectivity to the API server (`kubectl -n kube-system logs` of the driver).",
		regexp.MustCompile(`the Kubernetes API is unavailable`)},
	{"provider-unset", "the SecretProviderClass names no provider",
		"Set `spec.provider`.",
		regexp.MustCompile(`provider not set in|spec\.provider is empty`)},
	{"provider-name-invalid", "the SecretProviderClass's provider name cannot be a socket name",
		"Use the provider's name as its docs give it (`aws`, `azure`, `gcp`, `vault`, `fake`).",
		regexp.MustCompile(`invalid provider name`)},
	{"provider-not-found", "no provider of that name listens on the pod's node",
		"Install the provider (`providers.aws.enabled`, or the third-party provider's chart) and check its DaemonSet runs on this node (tolerations, nodeSelector). Its socket directory must be one of the driver's: `linux.providersDir` or `linux.additionalProvidersDirs`.",
		regexp.MustCompile(`provider not found`)},
	{"provider-unavailable", "the provider's socket exists but nobody answers",
		fixProviderLogs,
		regexp.MustCompile(`provider unavailable`)},
	{"token-audience", "the provider needs a service account token kubelet did not send",
		"Add `{audience: <aud>}` to `tokenRequests` (provider-aws's IRSA audience is added by the chart).",
		regexp.MustCompile(`no service account token for audience`)},
	{"provider-timeout", "the provider took longer than --provider-timeout",
		"Usually a backend that does not answer: check the provider's logs; raise `--provider-timeout` with `linux.driver.extraArgs` only if the backend is legitimately slow.",
		regexp.MustCompile(`context deadline exceeded|DeadlineExceeded`)},
	{"provider-throttled", "the provider's backend throttled the requests",
		"kubelet retries with backoff; longer `rotationPollInterval` and provider-aws's shared reads reduce calls.",
		regexp.MustCompile(`(?i)throttl`)},
	{"provider-error-code", "the provider reported an error code inside its response",
		"The provider's logs say why; the code is also the metric `error_type`.",
		regexp.MustCompile(`mount request failed with provider error code`)},
	{"provider-response-invalid", "the provider's response breaks the provider API",
		fixMalformed,
		regexp.MustCompile(`invalid provider response: (missing object versions|provider "[^"]*": object_version|provider "[^"]*": file )`)},
	{"payload-path-duplicate", "two of the class's objects write the same file",
		"Give them different `objectAlias`es.",
		regexp.MustCompile(`invalid payload: path ".*" appears more than once`)},
	{"payload-path-conflict", "one of the class's files is also the directory of another",
		"Rename one.",
		regexp.MustCompile(`invalid payload: path ".*" is a file and also a parent directory`)},
	{"payload-mode", "a file mode has more than permission bits",
		"Use an octal mode like `\"0440\"`; if the class sets none, report it to the provider's maintainers.",
		regexp.MustCompile(`invalid payload: file ".*" has mode`)},
	{"payload-too-large", "the volume is too large for the driver's limits",
		"Mount fewer objects per volume, or raise `--max-files` / `--max-payload-bytes` / `--max-dirs` / `--max-path-depth` (and `--tmpfs-size-bytes`) through `linux.driver.extraArgs`.",
		regexp.MustCompile(`invalid payload: (\d+ files exceed|total size exceeds|path .* (has \d+ components|creates more than))`)},
	{"payload-path", "a file name of the class escapes or breaks the volume layout",
		"Fix the alias in the class: a plain relative path like `db/password`.",
		regexp.MustCompile(`invalid payload`)},
	{"provider-refused", "the provider refused the mount",
		"Read the provider's message: for provider-aws, [providers/aws.md](providers/aws.md) \"Errors\"",
		regexp.MustCompile(`provider ".*" failed for SecretProviderClass`)},
	{"tmpfs-mount-failed", "the driver could not mount its tmpfs",
		"The driver container must be privileged with `<kubelet-root>/pods` mounted Bidirectional (the chart does both); on nodes where `/var/lib/kubelet` is not a shared mount, kubelet's own setup is broken.",
		regexp.MustCompile(`mount failed: mount tmpfs`)},
	{"write-failed", "writing the files into the volume's tmpfs failed",
		"Raise `--tmpfs-size-bytes` if the volume is large; otherwise see the driver's logs.",
		regexp.MustCompile(`mount failed: (write files|remove target directory)`)},
	{"operation-in-progress", "kubelet retried while an earlier call for the same volume still runs",
		"None: kubelet retries; the mount completes when the first call does.",
		regexp.MustCompile(`operation on volume .* is already in progress`)},
	{"sync-forbidden", "the class has secretObjects but the driver may not write Secrets",
		"`syncSecret.enabled: true` (or bind the role from `manifests/rbac/secret-sync.yaml`).",
		regexp.MustCompile(`secretprovidersyncing-role`)},
}

// Diagnoses that come from objects or checks, not from an event message:
// their fixes are rows of docs/troubleshooting.md too.
var checkFixes = map[string]string{
	"csidriver-missing":   "Install the chart (it owns it) or `kubectl apply -f manifests/csidriver.yaml`.",
	"status-missing":      "`kubectl get secretproviderclasspodstatuses -n <ns>` shows which pods mounted which object versions.",
	"sync-failed":         "See [sync.md](sync.md).",
	"provider-not-ready":  fixProviderLogs,
	"driver-mount-errors": "The `error_type` is the provider's error code or the gRPC code of the tables above ([metrics.md](metrics.md)); the driver's log on that node has each message (`kubectl -n kube-system logs` of the driver pod).",
}

// fromEvent names the problem a Warning event of the pod shows.
func fromEvent(e corev1.Event) (Diagnosis, bool) {
	if e.Type != corev1.EventTypeWarning || !relevant(e) {
		return Diagnosis{}, false
	}
	d, ok := fromMessage(e.Message)
	if !ok && e.Reason == "FailedToCreateSecret" {
		d, ok = byID("sync-failed", "a secretObjects entry of the class could not be synced to a Secret", ""), true
	}
	if !ok {
		return Diagnosis{}, false
	}
	d.Evidence = e.Reason + ": " + e.Message
	if e.Reason == "SecretRotationFailed" {
		d.Problem += " (rotation: the pod keeps its previous files, which may be stale)"
	}
	return d, true
}

func relevant(e corev1.Event) bool {
	switch e.Reason {
	case "FailedToCreateSecret", "SecretRotationFailed":
		return true
	case "FailedMount":
		return strings.Contains(e.Message, DriverName) || strings.Contains(e.Message, "secret")
	}
	return false
}

// fromMessage names the problem an event message shows.
func fromMessage(msg string) (Diagnosis, bool) {
	for _, r := range rules {
		if r.match.MatchString(msg) {
			return Diagnosis{ID: r.id, Problem: r.problem, Fix: r.fix}, true
		}
	}
	return Diagnosis{}, false
}

// byID is the diagnosis id with this problem and evidence, and its fix.
func byID(id, problem, evidence string) Diagnosis {
	for _, r := range rules {
		if r.id == id {
			return Diagnosis{ID: id, Problem: problem, Evidence: evidence, Fix: r.fix}
		}
	}
	return Diagnosis{ID: id, Problem: problem, Evidence: evidence, Fix: checkFixes[id]}
}
