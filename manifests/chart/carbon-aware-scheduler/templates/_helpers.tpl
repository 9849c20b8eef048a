{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "carbon-aware-scheduler.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name. Truncated to 63 characters because some Kubernetes name fields are
limited to that (DNS-1123 labels); a release named like the chart does not repeat it.
*/}}
{{- define "carbon-aware-scheduler.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "carbon-aware-scheduler.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "carbon-aware-scheduler.labels" -}}
helm.sh/chart: {{ include "carbon-aware-scheduler.chart" . }}
{{ include "carbon-aware-scheduler.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: carbon-aware-scheduler
{{- end }}

{{- define "carbon-aware-scheduler.selectorLabels" -}}
app.kubernetes.io/name: {{ include "carbon-aware-scheduler.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "carbon-aware-scheduler.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "carbon-aware-scheduler.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Our image (extender and feed entry points). */}}
{{- define "carbon-aware-scheduler.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The two shapes; anything else is a typo that must not render a half-working install. */}}
{{- define "carbon-aware-scheduler.mode" -}}
{{- $mode := .Values.mode }}
{{- if not (has $mode (list "second-scheduler" "extender-service")) }}
{{- fail (printf "mode must be \"second-scheduler\" or \"extender-service\", got %q" (toString $mode)) }}
{{- end }}
{{- $mode }}
{{- end }}

{{/*
Where kube-scheduler reaches the extender. An explicit urlPrefix wins; otherwise loopback in the
second-scheduler shape (same pod) and the Service's cluster DNS name in the extender-service shape.
*/}}
{{- define "carbon-aware-scheduler.extenderURL" -}}
{{- $scheme := ternary "https" "http" (.Values.extender.tls.enabled | default false) }}
{{- if .Values.extender.urlPrefix }}
{{- .Values.extender.urlPrefix }}
{{- else if eq (include "carbon-aware-scheduler.mode" .) "extender-service" }}
{{- printf "%s://%s.%s.svc:%d" $scheme (include "carbon-aware-scheduler.fullname" .) .Release.Namespace (int .Values.extender.service.port) }}
{{- else }}
{{- printf "%s://127.0.0.1:%d" $scheme (int .Values.extender.port) }}
{{- end }}
{{- end }}

{{/*
PEM or base64: KubeSchedulerConfiguration's *Data fields are []byte, i.e. base64 in YAML. Accept
the PEM itself (e.g. --set-file) and encode it, or an already base64-encoded value as is.
*/}}
{{- define "carbon-aware-scheduler.b64pem" -}}
{{- if contains "-----BEGIN" . }}{{ b64enc . }}{{ else }}{{ . }}{{ end }}
{{- end }}

{{/*
The one `extenders:` entry (KubeSchedulerConfiguration v1, REFERENCE §3), checked here so a bad
value fails at render time with a clear message instead of crash-looping kube-scheduler.
*/}}
{{- define "carbon-aware-scheduler.extenderEntry" -}}
{{- $e := .Values.extender }}
{{- if le (int $e.weight) 0 }}
{{- fail (printf "extender.weight must be > 0 (kube-scheduler rejects a prioritizeVerb without a positive weight), got %v" $e.weight) }}
{{- end }}
{{- if not (regexMatch "^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$" (toString $e.httpTimeout)) }}
{{- fail (printf "extender.httpTimeout must be a Go duration such as \"5s\", got %q" (toString $e.httpTimeout)) }}
{{- end }}
{{- $seen := dict }}
{{- range $e.managedResources }}
{{- if not (regexMatch "^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$" (toString .name)) }}
{{- fail (printf "extender.managedResources: %q is not an extended resource name (domain/name)" (toString .name)) }}
{{- end }}
{{- if or (hasPrefix "kubernetes.io/" .name) (hasPrefix "requests." .name) }}
{{- fail (printf "extender.managedResources: %q is not an extended resource name (kubernetes.io/ and requests. are reserved)" .name) }}
{{- end }}
{{- if hasKey $seen .name }}
{{- fail (printf "extender.managedResources: %q is listed twice" .name) }}
{{- end }}
{{- $_ := set $seen .name true }}
{{- end }}
- urlPrefix: {{ include "carbon-aware-scheduler.extenderURL" . | quote }}
  {{- if $e.filter }}
  filterVerb: filter
  {{- end }}
  prioritizeVerb: prioritize
  preemptVerb: preempt
  {{- if $e.bind }}
  bindVerb: bind
  {{- end }}
  weight: {{ int $e.weight }}
  ignorable: {{ $e.ignorable }}
  httpTimeout: {{ $e.httpTimeout | quote }}
  nodeCacheCapable: {{ $e.nodeCacheCapable }}
  {{- if $e.tls.enabled }}
  enableHTTPS: true
  {{- $t := $e.tls }}
  {{- if or $t.serverName $t.insecure $t.caData $t.caFile $t.certFile $t.keyFile }}
  tlsConfig:
    {{- with $t.serverName }}
    serverName: {{ . | quote }}
    {{- end }}
    {{- if $t.insecure }}
    insecure: true
    {{- end }}
    {{- with $t.caData }}
    caData: {{ include "carbon-aware-scheduler.b64pem" . | quote }}
    {{- end }}
    {{- with $t.caFile }}
    caFile: {{ . | quote }}
    {{- end }}
    {{- with $t.certFile }}
    certFile: {{ . | quote }}
    {{- end }}
    {{- with $t.keyFile }}
    keyFile: {{ . | quote }}
    {{- end }}
  {{- end }}
  {{- end }}
  {{- with $e.managedResources }}
  managedResources:
    {{- range . }}
    - name: {{ .name | quote }}
      ignoredByScheduler: {{ .ignoredByScheduler | default false }}
    {{- end }}
  {{- end }}
{{- end }}

{{/* The whole KubeSchedulerConfiguration (the one source of truth; tests render this too). */}}
{{- define "carbon-aware-scheduler.schedulerConfig" -}}
{{- $pct := int .Values.scheduler.percentageOfNodesToScore }}
{{- if or (lt $pct 0) (gt $pct 100) }}
{{- fail (printf "scheduler.percentageOfNodesToScore must be within 0..100, got %v" .Values.scheduler.percentageOfNodesToScore) }}
{{- end }}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$" (toString .Values.scheduler.name)) }}
{{- fail (printf "scheduler.name must be a DNS-1123 subdomain (it names the profile and the leader-election Lease), got %q" (toString .Values.scheduler.name)) }}
{{- end }}
{{- $le := .Values.scheduler.leaderElection }}
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
{{- with .Values.scheduler.kubeconfig }}
clientConnection:
  kubeconfig: {{ . | quote }}
{{- end }}
leaderElection:
  leaderElect: {{ $le.enabled }}
  {{- if $le.enabled }}
  resourceLock: leases
  resourceNamespace: {{ $le.resourceNamespace | default .Release.Namespace | quote }}
  resourceName: {{ $le.resourceName | default .Values.scheduler.name | quote }}
  {{- end }}
percentageOfNodesToScore: {{ $pct }}
enableProfiling: {{ .Values.scheduler.enableProfiling }}
profiles:
  - schedulerName: {{ .Values.scheduler.name | quote }}
extenders:
{{- include "carbon-aware-scheduler.extenderEntry" . | trim | nindent 2 }}
{{- end }}

{{/* Extender listen address: loopback next to the scheduler, all addresses behind a Service. */}}
{{- define "carbon-aware-scheduler.extenderHost" -}}
{{- if .Values.extender.host }}{{ .Values.extender.host }}
{{- else if eq (include "carbon-aware-scheduler.mode" .) "extender-service" }}0.0.0.0
{{- else }}127.0.0.1
{{- end }}
{{- end }}

{{/* Feed listen address: loopback unless something outside the pod must reach it (metrics, deferral,
rebalancer). */}}
{{- define "carbon-aware-scheduler.feedHost" -}}
{{- if .Values.feed.host }}{{ .Values.feed.host }}
{{- else if or .Values.serviceMonitor.enabled .Values.deferral.enabled .Values.rebalancer.enabled }}0.0.0.0
{{- else }}127.0.0.1
{{- end }}
{{- end }}

{{- define "carbon-aware-scheduler.tlsSecretName" -}}
{{- if .Values.extender.tls.secretName }}{{ .Values.extender.tls.secretName }}
{{- else }}{{ include "carbon-aware-scheduler.fullname" . }}-extender-tls
{{- end }}
{{- end }}

{{/*
A probe for the feed. A loopback-only server cannot be reached by the kubelet's httpGet (it dials
the pod IP), so it is probed from inside the container with the image's Python (the image has no
curl or wget). The extender has its own ops port (extender.metricsPort) for probes instead.
Arguments: dict with host, port, path.
*/}}
{{- define "carbon-aware-scheduler.probe" -}}
{{- if or (hasPrefix "127." .host) (eq .host "localhost") (eq .host "::1") }}
exec:
  command:
    - python
    - -c
    - |
      import sys, urllib.request
      url = "http://127.0.0.1:{{ .port }}{{ .path }}"
      sys.exit(0 if urllib.request.urlopen(url, timeout=3).status == 200 else 1)
{{- else }}
httpGet:
  path: {{ .path }}
  port: {{ .port }}
  scheme: HTTP
{{- end }}
{{- end }}

{{/* The deferral controller is a separate app of the release: its own name, so no selector overlaps. */}}
{{- define "carbon-aware-scheduler.deferralSelectorLabels" -}}
app.kubernetes.io/name: {{ include "carbon-aware-scheduler.name" . | trunc 54 | trimSuffix "-" }}-deferral
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "carbon-aware-scheduler.deferralLabels" -}}
helm.sh/chart: {{ include "carbon-aware-scheduler.chart" . }}
{{ include "carbon-aware-scheduler.deferralSelectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: carbon-aware-scheduler
app.kubernetes.io/component: deferral
{{- end }}

{{/* The rebalancer is a separate app of the release too: its own name, so no selector overlaps. */}}
{{- define "carbon-aware-scheduler.rebalancerSelectorLabels" -}}
app.kubernetes.io/name: {{ include "carbon-aware-scheduler.name" . | trunc 52 | trimSuffix "-" }}-rebalancer
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "carbon-aware-scheduler.rebalancerLabels" -}}
helm.sh/chart: {{ include "carbon-aware-scheduler.chart" . }}
{{ include "carbon-aware-scheduler.rebalancerSelectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: carbon-aware-scheduler
app.kubernetes.io/component: rebalancer
{{- end }}
