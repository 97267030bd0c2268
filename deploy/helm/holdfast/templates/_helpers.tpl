{{/* Names, labels, the roles a release plays, config.yaml and the Secret's contents. */}}

{{- define "holdfast.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "holdfast.fullname" -}}
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

{{- define "holdfast.selectorLabels" -}}
app.kubernetes.io/name: {{ include "holdfast.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "holdfast.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "holdfast.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: {{ include "holdfast.component" . }}
{{- end }}

{{- define "holdfast.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "holdfast.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The status endpoint: fixed, used by the probes and the image's HEALTHCHECK. */}}
{{- define "holdfast.statusPort" -}}7085{{- end }}
{{- define "holdfast.configDir" -}}/etc/holdfast{{- end }}
{{- define "holdfast.dataDir" -}}/var/lib/holdfast{{- end }}
{{- define "holdfast.etcdTlsDir" -}}/etc/holdfast-etcd-tls{{- end }}

{{/* "true" when aws_s3 is rendered: both buckets are set. */}}
{{- define "holdfast.s3Enabled" -}}
{{- $s3 := .Values.deployment.fallback_cp.aws_s3 -}}
{{- if and $s3.resource_bucket $s3.config_bucket }}true{{ end -}}
{{- end }}

{{/* "true" when azure_blob is rendered: the account and both containers are set. */}}
{{- define "holdfast.azureEnabled" -}}
{{- $az := .Values.deployment.fallback_cp.azure_blob -}}
{{- if and $az.account_name $az.resource_container $az.config_container }}true{{ end -}}
{{- end }}

{{/* "true" when gcs is rendered: both buckets are set. */}}
{{- define "holdfast.gcsEnabled" -}}
{{- $g := .Values.deployment.fallback_cp.gcs -}}
{{- if and $g.resource_bucket $g.config_bucket }}true{{ end -}}
{{- end }}
{{- define "holdfast.gcsDir" -}}/etc/holdfast-gcs{{- end }}
{{/* The Secret's key that holds the GCS service-account key file (a file, not a variable). */}}
{{- define "holdfast.gcsCredentialsKey" -}}gcs-credentials.json{{- end }}

{{/* "true" when fallback_cp is rendered: at least one store is complete. */}}
{{- define "holdfast.fallbackEnabled" -}}
{{- if or (include "holdfast.s3Enabled" .) (include "holdfast.azureEnabled" .) (include "holdfast.gcsEnabled" .) }}true{{ end -}}
{{- end }}

{{/* "true" for a backup node (fallback_cp.mode: write). */}}
{{- define "holdfast.backupNode" -}}
{{- if and (include "holdfast.fallbackEnabled" .) (eq .Values.deployment.fallback_cp.mode "write") }}true{{ end -}}
{{- end }}

{{/* "true" when the pod proxies traffic: the binary opens apisix.node_listen. */}}
{{- define "holdfast.proxies" -}}
{{- if ne .Values.deployment.role "control_plane" }}
{{- if or (not (include "holdfast.backupNode" .)) .Values.deployment.fallback_cp.proxy }}true{{ end }}
{{- end }}
{{- end }}

{{/* "true" when the pod serves the Admin API. */}}
{{- define "holdfast.servesAdmin" -}}
{{- if has .Values.deployment.role (list "control_plane" "traditional") }}true{{ end -}}
{{- end }}

{{- define "holdfast.component" -}}
{{- if eq .Values.deployment.role "control_plane" }}control-plane
{{- else if include "holdfast.backupNode" . }}backup
{{- else if eq .Values.deployment.role "traditional" }}traditional
{{- else }}gateway
{{- end }}
{{- end }}

{{/*
Checks that JSON schema cannot express with a readable message. Rendered
(as nothing) at the top of the ConfigMap, so every render runs it.
*/}}
{{- define "holdfast.validate" -}}
{{- $fb := .Values.deployment.fallback_cp }}
{{- $s3 := $fb.aws_s3 }}
{{- if and $s3.resource_bucket (not $s3.config_bucket) }}
{{- fail "deployment.fallback_cp.aws_s3.config_bucket: required when resource_bucket is set (the S3 fallback needs both buckets)" }}
{{- end }}
{{- if and $s3.config_bucket (not $s3.resource_bucket) }}
{{- fail "deployment.fallback_cp.aws_s3.resource_bucket: required when config_bucket is set (the S3 fallback needs both buckets)" }}
{{- end }}
{{- $az := $fb.azure_blob }}
{{- if and (or $az.account_name $az.resource_container $az.config_container $az.account_key $az.sas_token $az.endpoint) (not (include "holdfast.azureEnabled" .)) }}
{{- fail "deployment.fallback_cp.azure_blob: account_name, resource_container and config_container are all required once any azure_blob value is set" }}
{{- end }}
{{- $g := $fb.gcs }}
{{- if and (or $g.resource_bucket $g.config_bucket $g.endpoint $g.hmac_access_id $g.hmac_secret $g.credentials_json) (not (include "holdfast.gcsEnabled" .)) }}
{{- fail "deployment.fallback_cp.gcs: resource_bucket and config_bucket are both required once any gcs value is set" }}
{{- end }}
{{- if ne (empty $g.hmac_access_id) (empty $g.hmac_secret) }}
{{- fail "deployment.fallback_cp.gcs: hmac_access_id and hmac_secret go together" }}
{{- end }}
{{- if and (eq $fb.mode "write") (not (include "holdfast.fallbackEnabled" .)) }}
{{- fail "deployment.fallback_cp.mode=write (backup node) needs deployment.fallback_cp.aws_s3.resource_bucket and config_bucket, or deployment.fallback_cp.azure_blob.account_name, resource_container and config_container" }}
{{- end }}
{{- if and (eq .Values.deployment.role "data_plane") (eq .Values.deployment.role_data_plane.config_provider "json") (not (include "holdfast.fallbackEnabled" .)) }}
{{- fail "deployment.role_data_plane.config_provider=json reads the fallback snapshot: set deployment.fallback_cp.aws_s3.resource_bucket and config_bucket, or deployment.fallback_cp.azure_blob" }}
{{- end }}
{{- if and (eq .Values.deployment.role "control_plane") (include "holdfast.fallbackEnabled" .) (ne $fb.mode "write") }}
{{- fail "deployment.fallback_cp on a control_plane release must be mode=write (a control plane only exports; it never reads the snapshot)" }}
{{- end }}
{{- if and $s3.access_key .Values.awsCredentials.existingSecret }}
{{- fail "deployment.fallback_cp.aws_s3.access_key and awsCredentials.existingSecret: choose one source for the AWS keys" }}
{{- end }}
{{- if and .Values.apisix.ssl.enabled (eq (int .Values.apisix.ssl.containerPort) (int .Values.apisix.node_listen)) }}
{{- fail "apisix.ssl.containerPort: must differ from apisix.node_listen" }}
{{- end }}
{{- if and .Values.apisix.ssl.enabled (eq (int .Values.apisix.ssl.containerPort) 7085) }}
{{- fail "apisix.ssl.containerPort: 7085 is the status endpoint's port; choose another" }}
{{- end }}
{{- if and .Values.etcd.auth.tls.enabled (not .Values.etcd.auth.tls.existingSecret) }}
{{- fail "etcd.auth.tls.existingSecret: required when etcd.auth.tls.enabled is true (a Secret holding the etcd client certificate and key)" }}
{{- end }}
{{- if eq (int .Values.apisix.node_listen) 7085 }}
{{- fail "apisix.node_listen: 7085 is the status endpoint's port; choose another" }}
{{- end }}
{{- /* Secret values reach config.yaml as ${{VAR}}; holdfast turns a result that looks like
   an integer or true/false into that type, which then fails its string check. */}}
{{- $subst := dict "etcd.password" .Values.etcd.password "deployment.fallback_cp.signing_key" $fb.signing_key "deployment.fallback_cp.azure_blob.sas_token" $fb.azure_blob.sas_token "deployment.fallback_cp.gcs.hmac_secret" $fb.gcs.hmac_secret }}
{{- range $i, $k := .Values.deployment.admin.admin_key }}{{ $_ := set $subst (printf "deployment.admin.admin_key[%d].key" $i) ($k.key | default "" | toString) }}{{ end }}
{{- range $i, $k := .Values.apisix.data_encryption.keyring }}{{ $_ := set $subst (printf "apisix.data_encryption.keyring[%d]" $i) ($k | toString) }}{{ end }}
{{- range $path, $val := $subst }}
{{- if and $val (or (has $val (list "true" "false")) (and (regexMatch "^-?[0-9]*$" $val) (lt (len $val) 19))) }}
{{- fail (printf "%s: a value made only of digits (or true/false, or -) is turned into a number by holdfast's ${{VAR}} substitution and then rejected; choose a value with a letter in it" $path) }}
{{- end }}
{{- end }}
{{- if include "holdfast.servesAdmin" . }}
{{- if eq (int .Values.deployment.admin.admin_listen.port) 7085 }}
{{- fail "deployment.admin.admin_listen.port: 7085 is the status endpoint's port; choose another" }}
{{- end }}
{{- if and (eq .Values.deployment.role "traditional") (eq (int .Values.deployment.admin.admin_listen.port) (int .Values.apisix.node_listen)) }}
{{- fail "deployment.admin.admin_listen.port: must differ from apisix.node_listen" }}
{{- end }}
{{- if and .Values.deployment.admin.admin_key_required (not .Values.deployment.admin.admin_key) }}
{{- fail "deployment.admin.admin_key: the Admin API needs at least one key (or admin_key_required=false)" }}
{{- end }}
{{- range $i, $k := .Values.deployment.admin.admin_key }}
{{- if not $k.key }}
{{- fail (printf "deployment.admin.admin_key[%d].key: set an Admin API key, e.g. --set deployment.admin.admin_key[%d].key=$(openssl rand -hex 16)" $i $i) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The Secret's contents: environment variable name -> value. config.yaml names
these variables as ${{NAME}} (the binary substitutes them at start-up), and
the AWS keys are read by the credential chain from the environment.
*/}}
{{- define "holdfast.secretData" -}}
{{- $d := dict }}
{{- $fb := .Values.deployment.fallback_cp }}
{{- if $fb.aws_s3.access_key }}
{{- $_ := set $d "AWS_ACCESS_KEY_ID" $fb.aws_s3.access_key }}
{{- $_ := set $d "AWS_SECRET_ACCESS_KEY" $fb.aws_s3.secret_key }}
{{- end }}
{{- if and (include "holdfast.azureEnabled" .) $fb.azure_blob.account_key }}
{{- $_ := set $d "HOLDFAST_AZURE_ACCOUNT_KEY" $fb.azure_blob.account_key }}
{{- end }}
{{- if and (include "holdfast.azureEnabled" .) $fb.azure_blob.sas_token }}
{{- $_ := set $d "HOLDFAST_AZURE_SAS_TOKEN" $fb.azure_blob.sas_token }}
{{- end }}
{{- if and (include "holdfast.gcsEnabled" .) $fb.gcs.hmac_secret }}
{{- $_ := set $d "HOLDFAST_GCS_HMAC_SECRET" $fb.gcs.hmac_secret }}
{{- end }}
{{- if and (include "holdfast.gcsEnabled" .) $fb.gcs.credentials_json }}
{{- $_ := set $d (include "holdfast.gcsCredentialsKey" .) $fb.gcs.credentials_json }}
{{- end }}
{{- if and (include "holdfast.fallbackEnabled" .) $fb.signing_key }}
{{- $_ := set $d "HOLDFAST_FALLBACK_SIGNING_KEY" $fb.signing_key }}
{{- end }}
{{- if include "holdfast.servesAdmin" . }}
{{- range $i, $k := .Values.deployment.admin.admin_key }}
{{- $_ := set $d (printf "HOLDFAST_ADMIN_KEY_%d" $i) $k.key }}
{{- end }}
{{- end }}
{{- if .Values.etcd.password }}
{{- $_ := set $d "HOLDFAST_ETCD_PASSWORD" .Values.etcd.password }}
{{- end }}
{{- range $i, $k := .Values.apisix.data_encryption.keyring }}
{{- $_ := set $d (printf "HOLDFAST_KEYRING_%d" $i) $k }}
{{- end }}
{{- toYaml $d }}
{{- end }}

{{/* config.yaml, built as a map and serialised, so quoting is always right. */}}
{{- define "holdfast.configYaml" -}}
{{- $v := .Values }}
{{- $fb := $v.deployment.fallback_cp }}
{{- $apisix := dict "node_listen" (int $v.apisix.node_listen) "status" (dict "ip" "0.0.0.0" "port" (int (include "holdfast.statusPort" .))) }}
{{- $enc := dict "enable_encrypt_fields" $v.apisix.data_encryption.enable_encrypt_fields }}
{{- if $v.apisix.data_encryption.keyring }}
{{- $ring := list }}
{{- range $i, $k := $v.apisix.data_encryption.keyring }}
{{- $ring = append $ring (printf "${{HOLDFAST_KEYRING_%d}}" $i) }}
{{- end }}
{{- $_ := set $enc "keyring" $ring }}
{{- end }}
{{- $_ := set $apisix "data_encryption" $enc }}
{{- /* Written either way: the binary's default (as APISIX's) is a TLS listener on 9443. */}}
{{- $ssl := dict "enable" (and $v.apisix.ssl.enabled (include "holdfast.proxies" . | empty | not)) }}
{{- if $ssl.enable }}{{ $_ := set $ssl "listen" (list (dict "ip" "0.0.0.0" "port" (int $v.apisix.ssl.containerPort))) }}{{ end }}
{{- $_ := set $apisix "ssl" $ssl }}

{{- $etcd := dict "host" $v.etcd.host "prefix" $v.etcd.prefix "timeout" $v.etcd.timeout "startup_timeout" $v.etcd.startup_timeout }}
{{- if $v.etcd.user }}{{ $_ := set $etcd "user" $v.etcd.user }}{{ end }}
{{- if $v.etcd.password }}{{ $_ := set $etcd "password" "${{HOLDFAST_ETCD_PASSWORD}}" }}{{ end }}
{{- $tlsv := $v.etcd.auth.tls }}
{{- if $tlsv.enabled }}
{{- $dir := include "holdfast.etcdTlsDir" . }}
{{- $tls := dict "cert" (printf "%s/%s" $dir $tlsv.certFilename) "key" (printf "%s/%s" $dir $tlsv.certKeyFilename) "verify" $tlsv.verify }}
{{- if $tlsv.caFilename }}{{ $_ := set $tls "ca" (printf "%s/%s" $dir $tlsv.caFilename) }}{{ end }}
{{- if $tlsv.sni }}{{ $_ := set $tls "sni" $tlsv.sni }}{{ end }}
{{- $_ := set $etcd "tls" $tls }}
{{- end }}

{{- $dep := dict "role" $v.deployment.role "etcd" $etcd }}
{{- if eq $v.deployment.role "data_plane" }}
{{- $_ := set $dep "role_data_plane" (dict "config_provider" $v.deployment.role_data_plane.config_provider) }}
{{- end }}
{{- if include "holdfast.servesAdmin" . }}
{{- $a := $v.deployment.admin }}
{{- $keys := list }}
{{- range $i, $k := $a.admin_key }}
{{- $keys = append $keys (dict "name" (default (ternary "admin" (printf "key%d" $i) (eq $i 0)) $k.name) "key" (printf "${{HOLDFAST_ADMIN_KEY_%d}}" $i) "role" (default "admin" $k.role)) }}
{{- end }}
{{- $admin := dict "admin_listen" (dict "ip" "0.0.0.0" "port" (int $a.admin_listen.port)) "admin_key_required" $a.admin_key_required "allow_admin" $a.allow_admin }}
{{- if $keys }}{{ $_ := set $admin "admin_key" $keys }}{{ end }}
{{- $_ := set $dep "admin" $admin }}
{{- end }}
{{- if include "holdfast.fallbackEnabled" . }}
{{- $f := dict "interval" (int $fb.interval) "gateway_group_id" $fb.gateway_group_id "cache_file" $fb.cache_file }}
{{- if include "holdfast.s3Enabled" . }}
{{- $s3in := $fb.aws_s3 }}
{{- /* access_key and secret_key never appear here: they reach the pod as AWS_* variables from the Secret. */}}
{{- $s3 := dict "resource_bucket" $s3in.resource_bucket "config_bucket" $s3in.config_bucket }}
{{- if $s3in.region }}{{ $_ := set $s3 "region" $s3in.region }}{{ end }}
{{- if $s3in.endpoint }}{{ $_ := set $s3 "endpoint" $s3in.endpoint }}{{ end }}
{{- $_ := set $f "aws_s3" $s3 }}
{{- end }}
{{- if include "holdfast.azureEnabled" . }}
{{- $azin := $fb.azure_blob }}
{{- /* A key or SAS token reaches config.yaml only as ${{VAR}}, from the Secret. */}}
{{- $az := dict "account_name" $azin.account_name "resource_container" $azin.resource_container "config_container" $azin.config_container }}
{{- if $azin.account_key }}{{ $_ := set $az "account_key" "${{HOLDFAST_AZURE_ACCOUNT_KEY}}" }}{{ end }}
{{- if $azin.sas_token }}{{ $_ := set $az "sas_token" "${{HOLDFAST_AZURE_SAS_TOKEN}}" }}{{ end }}
{{- if $azin.endpoint }}{{ $_ := set $az "endpoint" $azin.endpoint }}{{ end }}
{{- $_ := set $f "azure_blob" $az }}
{{- end }}
{{- if include "holdfast.gcsEnabled" . }}
{{- $gin := $fb.gcs }}
{{- /* The HMAC secret reaches config.yaml only as ${{VAR}}, the key file only as a mounted file. */}}
{{- $g := dict "resource_bucket" $gin.resource_bucket "config_bucket" $gin.config_bucket }}
{{- if $gin.endpoint }}{{ $_ := set $g "endpoint" $gin.endpoint }}{{ end }}
{{- if $gin.hmac_access_id }}{{ $_ := set $g "hmac_access_id" $gin.hmac_access_id }}{{ $_ := set $g "hmac_secret" "${{HOLDFAST_GCS_HMAC_SECRET}}" }}{{ end }}
{{- if $gin.credentials_json }}{{ $_ := set $g "credentials_file" (printf "%s/credentials.json" (include "holdfast.gcsDir" .)) }}{{ end }}
{{- $_ := set $f "gcs" $g }}
{{- end }}
{{- if $fb.mode }}{{ $_ := set $f "mode" $fb.mode }}{{ end }}
{{- if $fb.proxy }}{{ $_ := set $f "proxy" true }}{{ end }}
{{- if $fb.signing_key }}{{ $_ := set $f "signing_key" "${{HOLDFAST_FALLBACK_SIGNING_KEY}}" }}{{ end }}
{{- $_ := set $dep "fallback_cp" $f }}
{{- end }}

{{- $cfg := dict "apisix" $apisix "deployment" $dep "nginx_config" $v.nginx_config "holdfast" $v.holdfast }}
{{- toYaml $cfg }}
{{- end }}
