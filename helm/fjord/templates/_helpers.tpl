{{- define "fjord.fullname" -}}
{{- printf "%s-fjord" .Release.Name | trunc 30 | trimSuffix "-" -}}
{{- end -}}

{{- define "fjord.labels" -}}
app.kubernetes.io/name: fjord
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: (list $ "controller") */}}
{{- define "fjord.selector" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "fjord.image" -}}
{{- $root := index . 0 -}}{{- $bin := index . 1 -}}
{{- printf "%s/%s:%s" $root.Values.image.registry $bin (default $root.Chart.AppVersion $root.Values.image.tag) -}}
{{- end -}}

{{/* etcd endpoints as a TOML array */}}
{{- define "fjord.etcdEndpoints" -}}
{{- $eps := list -}}
{{- if .Values.etcd.bundled -}}
{{- $full := include "fjord.fullname" . -}}
{{- range $i, $_ := until (int .Values.etcd.replicas) -}}
{{- $eps = append $eps (printf "http://%s-etcd-%d.%s-etcd.%s.svc:2379" $full $i $full $.Release.Namespace) -}}
{{- end -}}
{{- else -}}
{{- $eps = required "etcd.endpoints: list the external etcd endpoints when etcd.bundled is false" .Values.etcd.endpoints -}}
{{- end -}}
[{{ range $i, $e := $eps }}{{ if $i }}, {{ end }}{{ $e | quote }}{{ end }}]
{{- end -}}

{{/* The Secret with ca.crt, tls.crt and tls.key of a component: (list $ "media") */}}
{{- define "fjord.tlsSecret" -}}
{{- $root := index . 0 -}}{{- $component := index . 1 -}}
{{- if $root.Values.tls.existingSecretPrefix -}}
{{- printf "%s-%s" $root.Values.tls.existingSecretPrefix $component -}}
{{- else -}}
{{- printf "%s-tls-%s" (include "fjord.fullname" $root) $component -}}
{{- end -}}
{{- end -}}

{{- define "fjord.operatorKeysSecret" -}}
{{- default (printf "%s-operator-keys" (include "fjord.fullname" .)) .Values.controller.operatorKeysSecret -}}
{{- end -}}

{{/* The [etcd] and [tls] tables every binary's config has. */}}
{{- define "fjord.commonToml" -}}
[etcd]
endpoints = {{ include "fjord.etcdEndpoints" . }}
lease_ttl_secs = {{ .Values.etcd.leaseTtlSecs }}

[tls]
ca_file = "/etc/fjord/tls/ca.crt"
cert_file = "/etc/fjord/tls/tls.crt"
key_file = "/etc/fjord/tls/tls.key"

[log]
format = {{ .Values.logFormat | quote }}
{{- end -}}

{{- define "fjord.securityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities: { drop: ["ALL"] }
seccompProfile: { type: RuntimeDefault }
{{- end -}}

{{/* The config, TLS and (optionally) other secret volumes of a pod. */}}
{{- define "fjord.configVolumes" -}}
{{- $root := index . 0 -}}{{- $component := index . 1 -}}
- name: config
  configMap: { name: {{ include "fjord.fullname" $root }}-config }
- name: tls
  secret: { secretName: {{ include "fjord.tlsSecret" (list $root $component) }}, defaultMode: 0440 }
{{- end -}}

{{- define "fjord.configMounts" -}}
- { name: config, mountPath: /etc/fjord/config, readOnly: true }
- { name: tls, mountPath: /etc/fjord/tls, readOnly: true }
{{- end -}}

{{/* The DNS names each component's certificate carries, as YAML: the controller dials
nodes at <pod>.<headless service>.<namespace>.svc, and a recording node dials a media
node's relay by the node's id (its pod name). */}}
{{- define "fjord.certNames" -}}
{{- $full := include "fjord.fullname" . -}}
{{- $ns := .Release.Namespace -}}
controller:
  - {{ $full }}-controller
  - {{ $full }}-controller.{{ $ns }}.svc
media:
{{- range $r := .Values.regions }}
  - "*.{{ $full }}-media-{{ $r.name }}.{{ $ns }}.svc"
{{- range $i, $_ := until (int $r.replicas) }}
  - {{ $full }}-media-{{ $r.name }}-{{ $i }}
{{- end }}
{{- end }}
recording:
{{- range $r := .Values.regions }}
  - "*.{{ $full }}-rec-{{ $r.name }}.{{ $ns }}.svc"
{{- end }}
{{- end -}}

{{- define "fjord.mediaUdpPorts" -}}
{{- $ports := list -}}
{{- range $r := .Values.regions }}{{ $ports = append $ports (int $r.udpPort) }}{{ end -}}
{{- $ports | uniq | toYaml -}}
{{- end -}}

{{- define "fjord.relayPorts" -}}
{{- $ports := list -}}
{{- range $r := .Values.regions }}{{ $ports = append $ports (int (default 7883 $r.relayPort)) }}{{ end -}}
{{- $ports | uniq | toYaml -}}
{{- end -}}
