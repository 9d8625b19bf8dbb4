{{/*
RBAC rules, per front door and scope. Every rule below is one the operator was seen using in the
test suite (tests/test_chart_rbac.py fails when the operator makes a call these rules do not allow,
and lists the rules it never saw used).

  *.cluster    cluster-scope rules the door needs in every mode (ClusterRole)
  *.namespaced rules for the objects in the watched namespaces: in the ClusterRole when the whole
               cluster is watched, else in a Role per watched namespace
*/}}

{{- define "chutes-operator.rules.kopf.cluster" -}}
# kopf: discovers the served resources and notices CRDs coming and going.
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
{{- if include "chutes-operator.namespaces" . }}
# kopf: a namespace-restricted operator watches which of its namespaces exist.
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- else if .Values.peering.enabled }}
# kopf peering (leader election) of a cluster-wide operator.
- apiGroups: [kopf.dev]
  resources: [clusterkopfpeerings]
  verbs: [list, watch]
- apiGroups: [kopf.dev]
  resources: [clusterkopfpeerings]
  resourceNames: [{{ include "chutes-operator.peeringName" . | quote }}]
  verbs: [patch]
{{- end }}
{{- end -}}

{{- define "chutes-operator.rules.kopf.namespaced" -}}
# Events on the objects handled (creates, deletes and refusals in Cloudflare; kopf's own).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- if and .Values.peering.enabled (include "chutes-operator.namespaces" .) }}
# kopf peering (leader election) of a namespace-restricted operator.
- apiGroups: [kopf.dev]
  resources: [kopfpeerings]
  verbs: [list, watch]
- apiGroups: [kopf.dev]
  resources: [kopfpeerings]
  resourceNames: [{{ include "chutes-operator.peeringName" . | quote }}]
  verbs: [patch]
{{- end }}
{{- end -}}

{{/* ChuteConfig (cluster-scoped) and ChuteGateway. */}}
{{- define "chutes-operator.rules.chutes.cluster" -}}
- apiGroups: [chutes.troubleshat.com]
  resources: [chuteconfigs]
  verbs: [get, list, watch, patch]
- apiGroups: [chutes.troubleshat.com]
  resources: [chuteconfigs/status]
  verbs: [patch]
{{- if include "chutes-operator.namespaces" . }}
# A hostname belongs to the first gateway claiming it, in any namespace.
- apiGroups: [chutes.troubleshat.com]
  resources: [chutegateways]
  verbs: [list]
{{- end }}
{{- end -}}

{{- define "chutes-operator.rules.chutes.namespaced" -}}
- apiGroups: [chutes.troubleshat.com]
  resources: [chutegateways]
  verbs: [get, list, watch, patch]
- apiGroups: [chutes.troubleshat.com]
  resources: [chutegateways/status]
  verbs: [patch]
# The tunnel-token Secret and the cloudflared Deployment of each gateway; the Service it publishes.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, create, patch, delete]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [services]
  verbs: [get]
{{- end -}}

{{/* Annotated HTTPRoutes, with tenants, templates and state ConfigMaps in the release namespace. */}}
{{- define "chutes-operator.rules.httproutes.namespaced" -}}
- apiGroups: [gateway.networking.k8s.io]
  resources: [httproutes]
  verbs: [get, list, watch, patch]
- apiGroups: [cfzt.cloudflare.com]
  resources: [cloudflarezerotrusttenants, cloudflarezerotrusttemplates]
  verbs: [get, list, watch, patch]
- apiGroups: [cfzt.cloudflare.com]
  resources: [cloudflarezerotrusttenants/status, cloudflarezerotrusttemplates/status]
  verbs: [patch]
# Service-token Secrets next to their routes; the tenant's API-token Secret.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, create, patch, delete]
- apiGroups: [""]
  resources: [services]
  verbs: [get]
{{- end -}}

{{- define "chutes-operator.rules.httproutes.operatorNamespace" -}}
# State ConfigMaps (one per route) in the operator's namespace.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, create, update, delete]
{{- end -}}

{{/* HostMappings and Traefik routes, registered in a router-hosts server: HostMappings get the door's own
finalizer and status; routes their host-ids annotation, and upstream's finalizer removed (never added). */}}
{{- define "chutes-operator.rules.hosts.namespaced" -}}
- apiGroups: [router-hosts.fzymgc.house]
  resources: [hostmappings]
  verbs: [get, list, watch, patch]
- apiGroups: [router-hosts.fzymgc.house]
  resources: [hostmappings/status]
  verbs: [patch]
- apiGroups: [traefik.io]
  resources: [ingressroutes, ingressroutetcps]
  verbs: [get, list, watch, patch]
{{- end -}}

{{/* Session Pods: read-only Pods in sessions.watchNamespace (a Role there in every mode: the door watches
them itself, not through kopf); IngressRoutes in the route namespace. */}}
{{- define "chutes-operator.rules.sessions.pods" -}}
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
{{- end -}}

{{- define "chutes-operator.rules.sessions.routes" -}}
- apiGroups: [traefik.io]
  resources: [ingressroutes]
  verbs: [list, create, patch, delete]
{{- end -}}

{{/* Tunnel, ClusterTunnel (cluster-scoped) and TunnelBinding (adyanth's API): their finalizers and status, the
tunnel-token Secret and cloudflared Deployment of each tunnel (a ClusterTunnel's in clusterResourceNamespace), the
API-token Secret a tunnel names, the Services bindings publish. */}}
{{- define "chutes-operator.rules.tunnels.cluster" -}}
- apiGroups: [networking.cfargotunnel.com]
  resources: [clustertunnels]
  verbs: [get, list, watch, patch]
- apiGroups: [networking.cfargotunnel.com]
  resources: [clustertunnels/status]
  verbs: [patch]
{{- end -}}

{{- define "chutes-operator.rules.tunnels.namespaced" -}}
- apiGroups: [networking.cfargotunnel.com]
  resources: [tunnels, tunnelbindings]
  verbs: [get, list, watch, patch]
- apiGroups: [networking.cfargotunnel.com]
  resources: [tunnels/status, tunnelbindings/status]
  verbs: [patch]
{{- include "chutes-operator.rules.tunnels.connectors" . }}
# Services: bindings read them; annotated Services (the blog-era form) are watched, kopf patches its annotations.
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, patch]
{{- end -}}

{{- define "chutes-operator.rules.tunnels.connectors" }}
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, create, patch, delete]
# A locally configured tunnel's ConfigMap (config.yaml, adyanth's): created, its ingress rewritten, deleted.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, create, update, delete]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, create, patch, delete]
{{- end -}}

{{/* The ledger (ledgerNamespace), for every front door: who holds which hostname or tunnel, what was
created in Cloudflare for it, and one configuration writer per tunnel. */}}
{{- define "chutes-operator.rules.ledger" -}}
# Claims: one ConfigMap per claimed hostname or tunnel (created atomically; entries merge-patched).
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, create, patch, delete]
# Tunnel Leases: one writer of a tunnel's configuration at a time, across replicas.
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, create, update]
{{- end -}}

{{- define "chutes-operator.rules.ledger.sidecar" -}}
# Claims (read: hostnames held through other front doors).
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list]
# Tunnel Leases: one writer of the shared tunnel's configuration at a time, across replicas.
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, create, update]
{{- end -}}

{{- define "chutes-operator.rules.chutes.tokenSecrets" -}}
# The API-token Secrets named by ChuteConfigs.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
{{- end -}}

{{- define "chutes-operator.rules.events" -}}
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end -}}
