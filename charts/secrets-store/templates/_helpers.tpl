{{/* Base name of the objects; the upstream chart's, so a release keeps its DaemonSet name when it moves to this chart. */}}
{{- define "sscsi.name" -}}
{{- default "secrets-store-csi-driver" .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sscsi.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "sscsi.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "sscsi.labels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: secrets-store
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* image renders repository:tag, or repository@digest when a digest is set. Argument: an image values map. */}}
{{- define "sscsi.image" -}}
{{- if .digest -}}
{{- printf "%s@%s" .repository .digest -}}
{{- else -}}
{{- printf "%s:%s" .repository (toString .tag) -}}
{{- end -}}
{{- end -}}

{{- define "sscsi.kubeletDir" -}}
{{- clean .Values.linux.kubeletRootDir -}}
{{- end -}}

{{- define "sscsi.providersDir" -}}
{{- clean .Values.linux.providersDir -}}
{{- end -}}

{{/* The CSI socket, as kubelet and the driver see it (same path on both sides). */}}
{{- define "sscsi.socket" -}}
{{- printf "%s/plugins/csi-secrets-store/csi.sock" (include "sscsi.kubeletDir" .) -}}
{{- end -}}

{{/* Port of linux.metricsAddr (host:port or :port). */}}
{{- define "sscsi.metricsPort" -}}
{{- regexFind "[0-9]+$" (toString .Values.linux.metricsAddr) -}}
{{- end -}}

{{/* tokenRequests plus the audiences the enabled providers need, without duplicates. */}}
{{- define "sscsi.tokenRequests" -}}
{{- $out := list -}}
{{- $seen := dict -}}
{{- range .Values.tokenRequests -}}
{{- if not (hasKey $seen (toString .audience)) -}}
{{- $_ := set $seen (toString .audience) true -}}
{{- $out = append $out . -}}
{{- end -}}
{{- end -}}
{{- if .Values.providers.aws.enabled -}}
{{- if and .Values.providers.aws.irsa (not (hasKey $seen "sts.amazonaws.com")) -}}
{{- $out = append $out (dict "audience" "sts.amazonaws.com") -}}
{{- $_ := set $seen "sts.amazonaws.com" true -}}
{{- end -}}
{{- if and .Values.providers.aws.podIdentity (not (hasKey $seen "pods.eks.amazonaws.com")) -}}
{{- $out = append $out (dict "audience" "pods.eks.amazonaws.com") -}}
{{- $_ := set $seen "pods.eks.amazonaws.com" true -}}
{{- end -}}
{{- end -}}
{{- if and .Values.providers.vault .Values.providers.vault.enabled -}}
{{- $aud := toString (.Values.providers.vault.audience | default "vault") -}}
{{- if not (hasKey $seen $aud) -}}
{{- $out = append $out (dict "audience" $aud) -}}
{{- end -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/* linux.additionalProvidersDirs, cleaned, without duplicates and without linux.providersDir (mounted once). */}}
{{- define "sscsi.additionalProvidersDirs" -}}
{{- $pdir := include "sscsi.providersDir" . -}}
{{- $out := list -}}
{{- range .Values.linux.additionalProvidersDirs -}}
{{- $d := clean (toString .) -}}
{{- if and (ne $d $pdir) (not (has $d $out)) -}}
{{- $out = append $out $d -}}
{{- end -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/* probeHost: for a host-network pod whose server binds one address (e.g. 127.0.0.1:8095), the host
kubelet's httpGet probe must connect to; kubelet would use the node IP otherwise. Argument: dict addr, hostNetwork. */}}
{{- define "sscsi.probeHost" -}}
{{- $h := regexReplaceAll ":[0-9]+$" (toString .addr) "" -}}
{{- if and .hostNetwork $h (ne $h "0.0.0.0") (ne $h "[::]") -}}
{{- trimAll "[]" $h -}}
{{- end -}}
{{- end -}}

{{/* Name of the SecretSync controller's objects and service account. */}}
{{- define "sscsi.syncController" -}}
{{- printf "%s-sync-controller" (include "sscsi.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Audiences of the SecretSync controller's tokens, as a JSON list. */}}
{{- define "sscsi.syncAudiences" -}}
{{- $auds := list -}}
{{- range .Values.syncController.tokenRequestAudiences -}}
{{- $auds = append $auds (toString .) -}}
{{- end -}}
{{- if and .Values.syncController.providers.aws.enabled .Values.providers.aws.irsa (not (has "sts.amazonaws.com" $auds)) -}}
{{- $auds = append $auds "sts.amazonaws.com" -}}
{{- end -}}
{{- if .Values.syncController.providers.vault.enabled -}}
{{- $aud := toString (.Values.providers.vault.audience | default "vault") -}}
{{- if not (has $aud $auds) -}}
{{- $auds = append $auds $aud -}}
{{- end -}}
{{- end -}}
{{- toJson $auds -}}
{{- end -}}
