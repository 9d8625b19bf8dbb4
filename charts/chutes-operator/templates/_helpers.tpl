{{/* Names, labels and small computed values shared by every template. */}}

{{- define "chutes-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "chutes-operator.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "chutes-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "chutes-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "chutes-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "chutes-operator.labels" -}}
helm.sh/chart: {{ include "chutes-operator.chart" . }}
{{ include "chutes-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "chutes-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "chutes-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "chutes-operator.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "chutes-operator.peeringName" -}}
{{- default (include "chutes-operator.fullname" .) .Values.peering.name -}}
{{- end -}}

{{/* The operator's hostname rules file (rules.yaml of the hostname-rules ConfigMap). */}}
{{- define "chutes-operator.hostnameRules" -}}
{{- dict "rules" .Values.hostnameRules | toYaml -}}
{{- end -}}

{{/* The ledger's namespace: claim ConfigMaps and tunnel Leases (CHUTES_LEDGER_NAMESPACE). */}}
{{- define "chutes-operator.ledgerNamespace" -}}
{{- default .Release.Namespace .Values.ledgerNamespace -}}
{{- end -}}

{{/* The ServiceAccount as an RBAC subject. */}}
{{- define "chutes-operator.subject" -}}
- kind: ServiceAccount
  name: {{ include "chutes-operator.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
{{- end -}}


{{/* The session door's IngressRoute namespace. */}}
{{- define "chutes-operator.sessionRouteNamespace" -}}
{{- default .Values.frontDoors.sessions.watchNamespace .Values.frontDoors.sessions.ingressRouteNamespace -}}
{{- end -}}

{{/*
The namespaces the operator watches, comma-separated, sorted; empty means the whole cluster. With
watchNamespaces and the HTTPRoute door, the release namespace (tenants, templates) is added. Without
watchNamespaces, an installation serving only session Pods watches sessions.watchNamespace (as the
operator itself would).
*/}}
{{- define "chutes-operator.namespaces" -}}
{{- $doors := .Values.frontDoors -}}
{{- if .Values.watchNamespaces -}}
{{- $namespaces := .Values.watchNamespaces -}}
{{- if $doors.httproutes.enabled -}}
{{- /* tenants and templates live in the release namespace: kopf must watch it */ -}}
{{- $namespaces = append $namespaces .Release.Namespace -}}
{{- end -}}
{{- $namespaces | uniq | sortAlpha | join "," -}}
{{- else if and $doors.sessions.enabled (not $doors.chutes.enabled) (not $doors.httproutes.enabled) (not $doors.tunnels.enabled) -}}
{{- $doors.sessions.watchNamespace -}}
{{- end -}}
{{- end -}}

{{/*
The request budget of each operator process (CHUTES_RATE_LIMIT): Cloudflare's limit per token
(cloudflare.rateLimit) divided by the processes that may call Cloudflare with one token at once. Budgets are
per process, never shared: each replica runs the session door (without it, only the active peer calls
Cloudflare), and cloudflare.otherProcesses counts the rest (session sidecars, other installations).
*/}}
{{- define "chutes-operator.rateLimit" -}}
{{- $own := ternary (int .Values.replicas) 1 .Values.frontDoors.sessions.enabled -}}
{{- $processes := add $own (int .Values.cloudflare.otherProcesses) -}}
{{- max 1 (div (int .Values.cloudflare.rateLimit) $processes) -}}
{{- end -}}
