{{- define "pgwarehouse.name" -}}pgwarehouse-operator{{- end -}}

{{- define "pgwarehouse.fullname" -}}
{{- if contains "pgwarehouse" .Release.Name -}}{{ .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else -}}{{ printf "%s-pgwarehouse-operator" .Release.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "pgwarehouse.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pgwarehouse.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "pgwarehouse.labels" -}}
{{ include "pgwarehouse.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: pgwarehouse
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "pgwarehouse.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}{{ default (include "pgwarehouse.fullname" .) .Values.serviceAccount.name }}
{{- else -}}{{ default "default" .Values.serviceAccount.name }}{{- end -}}
{{- end -}}
