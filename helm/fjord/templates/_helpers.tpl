{{- define "fjord.fullname" -}}
{{- printf "%s-fjord" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{- define "fjord.labels" -}}
app.kubernetes.io/name: fjord
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "fjord.image" -}}
{{- $root := index . 0 -}}{{- $bin := index . 1 -}}
{{- printf "%s/%s:%s" $root.Values.image.registry $bin (default $root.Chart.AppVersion $root.Values.image.tag) -}}
{{- end -}}

{{- define "fjord.etcdEndpoints" -}}
{{- if .Values.etcd.bundled -}}
{{- $n := int .Values.etcd.replicas -}}{{- $full := include "fjord.fullname" . -}}
{{- range $i, $_ := until $n }}{{ if $i }},{{ end }}http://{{ $full }}-etcd-{{ $i }}.{{ $full }}-etcd:2379{{ end -}}
{{- else -}}
{{- join "," .Values.etcd.endpoints -}}
{{- end -}}
{{- end -}}

{{- define "fjord.securityContext" -}}
runAsNonRoot: true
runAsUser: 10001
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities: { drop: ["ALL"] }
seccompProfile: { type: RuntimeDefault }
{{- end -}}
