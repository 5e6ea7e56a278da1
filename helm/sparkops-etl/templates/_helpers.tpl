{{/*
Names, labels and the namespace lists the templates share, so every object of a release is
named and labelled the same way.
*/}}

{{/* The chart's short name. */}}
{{- define "sparkops-etl.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name; the release name alone when it already contains the chart's. */}}
{{- define "sparkops-etl.fullname" -}}
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

{{/* Labels every object carries (Kubernetes' recommended app.kubernetes.io set). */}}
{{- define "sparkops-etl.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "sparkops-etl.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sparkops-etl
{{- end }}

{{/* The labels that select the operator's pods; they must never change after install. */}}
{{- define "sparkops-etl.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sparkops-etl.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The operator's ServiceAccount. */}}
{{- define "sparkops-etl.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sparkops-etl.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator's image; an empty tag means the chart's appVersion. */}}
{{- define "sparkops-etl.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
Namespaces that get a spark-driver ServiceAccount: the watched ones in namespaced mode; in
cluster-wide mode the chart cannot know every namespace, so the ones listed (default: the
release namespace). Rendered as a JSON list for fromJsonArray.
*/}}
{{- define "sparkops-etl.driverNamespaces" -}}
{{- if not .Values.watch.clusterWide }}
{{- toJson .Values.watch.namespaces }}
{{- else if .Values.driverServiceAccount.namespaces }}
{{- toJson .Values.driverServiceAccount.namespaces }}
{{- else }}
{{- toJson (list .Release.Namespace) }}
{{- end }}
{{- end }}

{{/*
What the operator does inside a namespace it watches. Shared by the ClusterRole (cluster-wide
mode) and each namespace's Role (namespaced mode), so both modes grant the same verbs.
*/}}
{{- define "sparkops-etl.pipelineRules" -}}
# Read pipelines and add/remove kopf's finalizer and annotations (patch). No create, update
# or delete: the operator never writes a pipeline's spec, so GitOps tools see no drift.
- apiGroups: ["etl.sparkops.io"]
  resources: ["etlpipelines"]
  verbs: ["get", "list", "watch", "patch"]
# Phase, conditions, metrics and the circuit breaker's state live in status.
- apiGroups: ["etl.sparkops.io"]
  resources: ["etlpipelines/status"]
  verbs: ["get", "patch", "update"]
# A run's driver pod: created per run, watched for phase and termination message, deleted
# when a streaming driver is replaced or history is pruned.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "create", "delete"]
# A run's ConfigMap (pipeline JSON) and the driver's headless Service (executors reach the
# driver through it). Owned by the pipeline; the garbage collector removes them with it.
- apiGroups: [""]
  resources: ["configmaps", "services"]
  verbs: ["get", "list", "create", "delete"]
# Secrets are only read by name, to check the referenced key exists and to see their
# resourceVersion change (a streaming driver restarts with a rotated Secret). Values are
# injected by the kubelet through secretKeyRef, never read into logs, status or events.
# No list or watch: the operator never sees the Secrets it was not pointed at.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
# Events on pipelines (kopf posts them, and patches repeated ones to count them).
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
