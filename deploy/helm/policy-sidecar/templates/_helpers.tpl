{{/* Names and labels. */}}
{{- define "policy-sidecar.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "policy-sidecar.fullname" -}}
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

{{- define "policy-sidecar.selectorLabels" -}}
app.kubernetes.io/name: {{ include "policy-sidecar.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "policy-sidecar.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "policy-sidecar.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: policy-sidecar
{{- end }}

{{- define "policy-sidecar.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "policy-sidecar.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "policy-sidecar.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* SQLite keeps state on a PersistentVolume; PostgreSQL needs none. */}}
{{- define "policy-sidecar.sqlite" -}}
{{- if not .Values.store.postgresql.enabled }}true{{ end }}
{{- end }}

{{/* Refuse value combinations that cannot work, with the value to change. */}}
{{- define "policy-sidecar.validate" -}}
{{- if not (has .Values.mode (list "sidecar" "standalone")) }}
{{- fail (printf "mode: %q is not one of sidecar, standalone" .Values.mode) }}
{{- end }}
{{- if and (include "policy-sidecar.sqlite" .) (or (gt (int .Values.replicaCount) 1) .Values.autoscaling.enabled) }}
{{- fail "replicaCount > 1 or autoscaling.enabled needs store.postgresql.enabled: SQLite allows one sidecar" }}
{{- end }}
{{- if and .Values.store.postgresql.enabled (not .Values.store.postgresql.existingSecret) }}
{{- fail "store.postgresql.enabled needs store.postgresql.existingSecret (the Secret holding the DSN)" }}
{{- end }}
{{- if and (eq .Values.mode "sidecar") (not .Values.opa.config) }}
{{- fail "mode: sidecar needs opa.config (services/bundles: where the OPA container pulls the signed bundle)" }}
{{- end }}
{{- if and (eq .Values.mode "sidecar") (not .Values.opa.verificationKey.existingSecret) }}
{{- fail "mode: sidecar needs opa.verificationKey.existingSecret (OPA verifies the bundle signature)" }}
{{- end }}
{{- if and .Values.webhook.enabled (not .Values.webhook.existingSecret) }}
{{- fail "webhook.enabled needs webhook.existingSecret (the shared secret registries send)" }}
{{- end }}
{{- if and .Values.admin.enabled (not .Values.admin.tlsSecret) }}
{{- fail "admin.enabled needs admin.tlsSecret (a kubernetes.io/tls Secret)" }}
{{- end }}
{{- if and .Values.bundleServer.enabled (not .Values.bundleServer.existingSecret) }}
{{- fail "bundleServer.enabled needs bundleServer.existingSecret (the upload token)" }}
{{- end }}
{{- end }}

{{/*
The sidecar config: the user's registries and policy, with what the chart decides on top
(listeners on the container ports, state on the volume, secrets as ${VAR} from Secrets).
*/}}
{{- define "policy-sidecar.config" -}}
{{- $policy := deepCopy (default dict .Values.config.policy) }}
{{- $set := dict
  "listen" (printf "0.0.0.0:%d" (int .Values.ports.grpc))
  "metrics_listen" (printf "0.0.0.0:%d" (int .Values.ports.metrics))
  "state_dir" "/var/lib/policy-sidecar" }}
{{- if and .Values.grpc.allowUnauthenticated (not $policy.auth) }}
{{- $_ := set $set "allow_unauthenticated_listen" true }}
{{- end }}
{{- if eq .Values.mode "sidecar" }}
{{- $_ := set $set "opa" (dict "address" (printf "http://127.0.0.1:%d" (int .Values.opa.port))) }}
{{- end }}
{{- $replication := dict }}
{{- if .Values.store.postgresql.enabled }}
{{- $_ := set $replication "store" "${POLICY_SIDECAR_STORE_DSN}" }}
{{- end }}
{{- if .Values.webhook.enabled }}
{{- $_ := set $replication "webhook" (dict "listen" (printf "0.0.0.0:%d" (int .Values.ports.webhook)) "secret" "${POLICY_SIDECAR_WEBHOOK_SECRET}") }}
{{- end }}
{{- if $replication }}
{{- $_ := set $set "replication" $replication }}
{{- end }}
{{- if .Values.admin.enabled }}
{{- $tls := dict "cert_file" "/etc/policy-sidecar/admin-tls/tls.crt" "key_file" "/etc/policy-sidecar/admin-tls/tls.key" }}
{{- if .Values.admin.clientCA }}
{{- $_ := set $tls "client_ca_file" "/etc/policy-sidecar/admin-tls/ca.crt" }}
{{- end }}
{{- $_ := set $set "admin" (dict "listen" (printf "0.0.0.0:%d" (int .Values.ports.admin)) "tls" $tls) }}
{{- end }}
{{- if .Values.bundleServer.enabled }}
{{- $serve := dict "listen" (printf "0.0.0.0:%d" (int .Values.ports.bundles)) "token" "${POLICY_SIDECAR_BUNDLE_TOKEN}" }}
{{- if .Values.bundleServer.readToken }}
{{- $_ := set $serve "read_token" "${POLICY_SIDECAR_BUNDLE_READ_TOKEN}" }}
{{- end }}
{{- $_ := set $set "bundle" (dict "serve" $serve) }}
{{- end }}
{{- $merged := mustMergeOverwrite $policy $set }}
{{- dict "registries" (default list .Values.config.registries) "policy" $merged | toYaml }}
{{- end }}

{{/* OPA's config for mode=sidecar: the user's, with the verification key from its Secret. */}}
{{- define "policy-sidecar.opaConfig" -}}
{{- toYaml .Values.opa.config }}
{{- end }}

{{/* Ports the Services and the NetworkPolicy open: name → port, only those enabled. */}}
{{- define "policy-sidecar.ports" -}}
grpc: {{ .Values.ports.grpc }}
metrics: {{ .Values.ports.metrics }}
{{- if .Values.webhook.enabled }}
webhook: {{ .Values.ports.webhook }}
{{- end }}
{{- if .Values.admin.enabled }}
admin: {{ .Values.ports.admin }}
{{- end }}
{{- if .Values.bundleServer.enabled }}
bundles: {{ .Values.ports.bundles }}
{{- end }}
{{- if eq .Values.mode "sidecar" }}
opa-metrics: {{ .Values.opa.diagnosticPort }}
{{- end }}
{{- end }}
