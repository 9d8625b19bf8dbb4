"""adyanth/cloudflare-operator's API as this door reads it: names, labels, the parsed Tunnel / ClusterTunnel
spec (both API generations: ``size``/``image``/``nodeSelectors``/``tolerations`` of v1alpha1, ``deployPatch``
of v1alpha2) and TunnelBinding subjects with their origins. Pure: no I/O."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from chutes import conditions as c
from chutes.cloudflare_core.ownership import DEFAULT_OWNER, owned_name
from chutes.frontdoors.specs import SpecError as SpecError
from chutes.frontdoors.specs import is_dns_name, is_hostname, is_int, malformed

FRONT_DOOR = "tunnels"  # the door's name in metrics and Events
GROUP = "networking.cfargotunnel.com"
VERSION = "v1alpha2"  # Tunnel and ClusterTunnel: the storage version (v1alpha1 is served too)
BINDING_VERSION = "v1alpha1"
TUNNEL_PLURAL, CLUSTER_PLURAL, BINDING_PLURAL = "tunnels", "clustertunnels", "tunnelbindings"
TUNNEL_KIND, CLUSTER_KIND, BINDING_KIND = "Tunnel", "ClusterTunnel", "TunnelBinding"
FINALIZER = "cfargotunnel.com/finalizer"  # adyanth's, on newTunnel (Cluster)Tunnels and TunnelBindings
LABEL_TUNNEL = "cfargotunnel.com/tunnel"
LABEL_CLUSTER = "cfargotunnel.com/is-cluster-tunnel"
LABEL_APP = "cfargotunnel.com/app"
LABEL_OWNER = "chutes.troubleshat.com/owner"
MANAGED_BY = "chutes-operator"
ACCESS_EMAILS = "chutes.troubleshat.com/access-allowed-emails"
ACCESS_DOMAINS = "chutes.troubleshat.com/access-allowed-domains"
POLICY_NAME = "chute-operator-allow"
DEFAULT_IMAGE = "cloudflare/cloudflared:2025.4.0"  # adyanth's v1alpha1 default
DEFAULT_FALLBACK = "http_status:404"
TOKEN_KEY = "token"
PROTOCOLS = ("http", "https", "tcp", "udp", "ssh", "rdp", "smb")
TUNNEL_PROTOCOLS = ("auto", "quic", "http2")
CA_DIR = "/etc/cloudflared/certs"
MAX_REPLICAS = 20


def tunnel_source(kind: str, namespace: str | None, name: str) -> str:
    """A (Cluster)Tunnel as a claim's source: ``Tunnel/<ns>/<name>``, ``ClusterTunnel//<name>``."""
    return f"{kind}/{namespace or ''}/{name}"


def binding_source(namespace: str, name: str) -> str:
    return f"{BINDING_KIND}/{namespace}/{name}"


@dataclass(frozen=True)
class Credentials:
    """Where the API credentials are: Secret `secret` (in `namespace`), its token key, else key + email."""

    namespace: str
    secret: str
    token_key: str
    key_key: str
    email: str
    # a locally configured tunnel's credentials (adyanth's keys, renamed by spec.cloudflare like the others)
    credential_file_key: str = "CLOUDFLARE_TUNNEL_CREDENTIAL_FILE"
    credential_secret_key: str = "CLOUDFLARE_TUNNEL_CREDENTIAL_SECRET"


@dataclass(frozen=True)
class TunnelSpec:
    kind: str  # Tunnel or ClusterTunnel
    namespace: str  # where its Secret and cloudflared live (a ClusterTunnel: the cluster resource namespace)
    name: str
    domain: str
    credentials: Credentials
    account_id: str
    account_name: str
    new_name: str | None  # newTunnel.name (the Cloudflare name is owner-qualified: `cloudflare_name`)
    existing_id: str | None
    existing_name: str | None
    replicas: int = 1
    image: str = DEFAULT_IMAGE
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    affinity: Mapping[str, Any] | None = None
    resources: Mapping[str, Any] | None = None
    protocol: str = "auto"
    fallback: str = DEFAULT_FALLBACK
    fallback_asked: bool = False  # spec.fallbackTarget set to something other than the default
    no_tls_verify: bool = False
    origin_ca_pool: str | None = None
    owner_id: str = DEFAULT_OWNER
    cr_namespace: str | None = None  # the CR's own namespace (None: a ClusterTunnel)

    @property
    def is_new(self) -> bool:
        return self.new_name is not None

    @property
    def cloudflare_name(self) -> str:
        """The tunnel's name in Cloudflare: newTunnel.name, owner-qualified as the other doors name things."""
        return owned_name(self.new_name or "", self.owner_id)

    @property
    def source(self) -> str:
        return tunnel_source(self.kind, self.cr_namespace, self.name)

    @property
    def is_cluster(self) -> bool:
        return self.kind == CLUSTER_KIND

    @property
    def base_name(self) -> str:
        return base_name(self.kind, self.name)

    @property
    def deployment_name(self) -> str:
        return f"{self.base_name}-cloudflared"

    @property
    def secret_name(self) -> str:
        return f"{self.base_name}-tunnel-token"

    @property
    def credentials_secret_name(self) -> str:
        """A locally configured tunnel's ``credentials.json`` Secret."""
        return f"{self.base_name}-tunnel-credentials"

    @property
    def config_name(self) -> str:
        """A locally configured tunnel's ConfigMap: adyanth's name (the CR's), in `namespace`."""
        return self.name

    @property
    def owned_by(self) -> dict[str, str]:
        return owned_by(self.kind, self.name, self.owner_id)

    @property
    def pod_labels(self) -> dict[str, str]:
        return {"app.kubernetes.io/name": "cloudflared", "app.kubernetes.io/instance": self.deployment_name,
                LABEL_APP: "cloudflared", LABEL_TUNNEL: self.name,
                LABEL_CLUSTER: "true" if self.is_cluster else "false"}

    @property
    def object_labels(self) -> dict[str, str]:
        return {**self.pod_labels, **self.owned_by}


def base_name(kind: str, name: str) -> str:
    """The prefix of a (Cluster)Tunnel's Secret and Deployment names."""
    return f"clustertunnel-{name}" if kind == CLUSTER_KIND else name


def tunnel_origin_request(spec: TunnelSpec) -> dict[str, Any]:
    """The top-level ``originRequest`` of a tunnel of ours: ``noTlsVerify``, and ``originCaPool``'s certificate as
    adyanth mounts it (``/etc/cloudflared/certs/tls.crt``, mounted in our cloudflared too). On a remotely managed
    ``existingTunnel`` (co-owned: its top-level keys are someone else's) they go on each of our rules instead, under
    the subject's own options."""
    options: dict[str, Any] = {}
    if spec.no_tls_verify:
        options["noTLSVerify"] = True
    if spec.origin_ca_pool:
        options["caPool"] = f"{CA_DIR}/tls.crt"
    return options


def owned_by(kind: str, name: str, owner_id: str) -> dict[str, str]:
    """The labels that make a Secret or Deployment this (Cluster)Tunnel's, made by installation `owner_id`."""
    return {"app.kubernetes.io/managed-by": MANAGED_BY, LABEL_TUNNEL: name,
            LABEL_CLUSTER: "true" if kind == CLUSTER_KIND else "false", LABEL_OWNER: owner_id}


SHOWN = 60  # characters of a user's value a message quotes at most: a huge value is never echoed whole


def shown(value: object) -> str:
    """`value` as a message quotes it (its repr), cut to `SHOWN` characters."""
    text = repr(value)
    return text if len(text) <= SHOWN else f"{text[:SHOWN]}... ({len(text)} characters)"


def _string(spec: Mapping[str, Any], key: str, default: str = "") -> str:
    value = spec.get(key)
    if value is None or value == "":
        return default
    if not isinstance(value, str):
        raise SpecError(c.INVALID_SPEC, f"{key} must be a string, not {shown(value)}")
    return value


def parse_tunnel(kind: str, cr_namespace: str | None, name: str, spec: Mapping[str, Any], *,
                 resource_namespace: str, owner_id: str = DEFAULT_OWNER) -> TunnelSpec:
    """The (Cluster)Tunnel's spec, of either API generation, or :class:`SpecError`. `resource_namespace`: where a
    ClusterTunnel's Secret and cloudflared live (a Tunnel's are in its own namespace)."""
    new, existing = spec.get("newTunnel"), spec.get("existingTunnel")
    has_new = isinstance(new, Mapping) and bool(new.get("name"))
    has_existing = isinstance(existing, Mapping) and bool(existing.get("id") or existing.get("name"))
    if has_new == has_existing:
        raise SpecError(c.INVALID_SPEC, "exactly one of spec.newTunnel (with a name) and spec.existingTunnel (with an "
                        f"id or a name) must be set, not {'both' if has_new else 'neither'}")
    cloudflare = spec.get("cloudflare")
    if not isinstance(cloudflare, Mapping):
        raise SpecError(c.INVALID_SPEC, "spec.cloudflare is required (domain and secret)")
    domain = _string(cloudflare, "domain").strip().lower().rstrip(".")
    if not is_dns_name(domain):
        raise SpecError(c.INVALID_SPEC, f"spec.cloudflare.domain {shown(domain)} is not a DNS name such as example.com")
    secret = _string(cloudflare, "secret")
    if not secret:
        raise SpecError(c.INVALID_SPEC, "spec.cloudflare.secret (the Secret with the API token) is required")
    namespace = cr_namespace or resource_namespace
    credentials = Credentials(
        namespace=namespace, secret=secret,
        token_key=_string(cloudflare, "CLOUDFLARE_API_TOKEN", "CLOUDFLARE_API_TOKEN"),
        key_key=_string(cloudflare, "CLOUDFLARE_API_KEY", "CLOUDFLARE_API_KEY"),
        email=_string(cloudflare, "email"),
        **{field: _string(cloudflare, key, key) for field, key in (
            ("credential_file_key", "CLOUDFLARE_TUNNEL_CREDENTIAL_FILE"),
            ("credential_secret_key", "CLOUDFLARE_TUNNEL_CREDENTIAL_SECRET"))},
    )
    account_id, account_name = _string(cloudflare, "accountId"), _string(cloudflare, "accountName")
    if not account_id and not account_name:
        raise SpecError(c.INVALID_SPEC, "spec.cloudflare needs accountId or accountName")
    protocol = _string(spec, "protocol", "auto")
    if protocol not in TUNNEL_PROTOCOLS:
        raise SpecError(c.INVALID_SPEC, f"spec.protocol must be one of {', '.join(TUNNEL_PROTOCOLS)}, not "
                        f"{shown(protocol)}")
    no_tls_verify = spec.get("noTlsVerify", False)
    if not isinstance(no_tls_verify, bool):
        raise SpecError(c.INVALID_SPEC, f"spec.noTlsVerify must be true or false, not {shown(no_tls_verify)}")
    deployment = _deployment_fields(spec)
    fallback = _string(spec, "fallbackTarget", DEFAULT_FALLBACK)
    assert isinstance(new, Mapping) or isinstance(existing, Mapping)
    return TunnelSpec(
        kind=kind, namespace=namespace, name=name, domain=domain, credentials=credentials,
        account_id=account_id, account_name=account_name,
        new_name=str(new["name"]) if has_new and isinstance(new, Mapping) else None,
        existing_id=str(existing.get("id") or "") or None if has_existing and isinstance(existing, Mapping) else None,
        existing_name=str(existing.get("name") or "") or None if has_existing and isinstance(existing, Mapping)
        else None,
        protocol=protocol, fallback=fallback, fallback_asked=fallback != DEFAULT_FALLBACK, no_tls_verify=no_tls_verify,
        origin_ca_pool=_string(spec, "originCaPool") or None, owner_id=owner_id, cr_namespace=cr_namespace,
        **deployment,
    )


def _deployment_fields(spec: Mapping[str, Any]) -> dict[str, Any]:
    """replicas, image, node_selector, tolerations (affinity, resources) from the v1alpha1 fields, then the v1alpha2
    ``deployPatch`` over them (adyanth's conversion builds the same patch from the v1alpha1 fields)."""
    size = spec.get("size", 1)
    if not is_int(size) or not 0 <= size <= MAX_REPLICAS:
        raise SpecError(c.INVALID_SPEC, f"spec.size must be an integer from 0 to {MAX_REPLICAS}, not {shown(size)}")
    selector = spec.get("nodeSelectors") or {}
    tolerations = spec.get("tolerations") or []
    if not isinstance(selector, Mapping) or not all(isinstance(v, str) for v in selector.values()):
        raise SpecError(c.INVALID_SPEC, "spec.nodeSelectors must map label names to strings")
    if not isinstance(tolerations, list) or not all(isinstance(t, Mapping) for t in tolerations):
        raise SpecError(c.INVALID_SPEC, "spec.tolerations must be a list of tolerations")
    fields: dict[str, Any] = {"replicas": size, "image": _string(spec, "image", DEFAULT_IMAGE),
                              "node_selector": dict(selector), "tolerations": tuple(tolerations)}
    fields.update(parse_deploy_patch(spec.get("deployPatch")))
    return fields


_PATCHABLE = "spec.replicas, spec.template.spec.{nodeSelector, tolerations, affinity} and the cloudflared " \
             "container's image and resources"


def parse_deploy_patch(raw: object) -> dict[str, Any]:
    """What a v1alpha2 ``deployPatch`` (YAML or JSON) sets, as fields of :class:`TunnelSpec`. The cloudflared pod
    stays hardened: a patch touching anything but `_PATCHABLE` (replicas, node selector, tolerations, affinity, the
    cloudflared image and resources) is refused (InvalidSpec), as is one that does not parse."""
    if raw is None or raw == "":
        return {}
    if not isinstance(raw, str):
        raise SpecError(c.INVALID_SPEC, "spec.deployPatch must be a string (a YAML or JSON patch)")
    try:
        patch = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise SpecError(c.INVALID_SPEC, f"spec.deployPatch is not valid YAML or JSON: {exc}") from None
    if patch is None:
        return {}
    if not isinstance(patch, Mapping):
        raise SpecError(c.INVALID_SPEC, "spec.deployPatch must be a mapping (a patch of the Deployment)")
    refused = f"spec.deployPatch may set only {_PATCHABLE}"
    fields: dict[str, Any] = {}
    _only(patch, {"spec"}, refused)
    deploy_spec = _mapping(patch.get("spec"), refused)
    _only(deploy_spec, {"replicas", "template"}, refused)
    if "replicas" in deploy_spec:
        replicas = deploy_spec["replicas"]
        if not is_int(replicas) or not 0 <= replicas <= MAX_REPLICAS:
            raise SpecError(c.INVALID_SPEC, f"spec.deployPatch: replicas must be 0 to {MAX_REPLICAS}, not "
                            f"{shown(replicas)}")
        fields["replicas"] = replicas
    template = _mapping(deploy_spec.get("template"), refused)
    _only(template, {"spec"}, refused)
    pod = _mapping(template.get("spec"), refused)
    _only(pod, {"nodeSelector", "tolerations", "affinity", "containers"}, refused)
    if "nodeSelector" in pod:
        fields["node_selector"] = dict(_mapping(pod["nodeSelector"], refused))
    if "tolerations" in pod:
        if not isinstance(pod["tolerations"], list):
            raise SpecError(c.INVALID_SPEC, "spec.deployPatch: tolerations must be a list")
        fields["tolerations"] = tuple(pod["tolerations"])
    if "affinity" in pod:
        fields["affinity"] = dict(_mapping(pod["affinity"], refused))
    for container in pod.get("containers") or []:
        container = _mapping(container, refused)
        if container.get("name") != "cloudflared":
            raise SpecError(c.INVALID_SPEC, f"{refused}: no container other than cloudflared")
        _only(container, {"name", "image", "resources"}, refused)
        if container.get("image"):
            fields["image"] = str(container["image"])
        if "resources" in container:
            fields["resources"] = dict(_mapping(container["resources"], refused))
    return fields


def _mapping(value: object, refused: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(c.INVALID_SPEC, refused)
    return value


def _only(value: Mapping[str, Any], keys: set[str], refused: str) -> None:
    extra = sorted(set(value) - keys)
    if extra:
        raise SpecError(c.INVALID_SPEC, f"{refused} (not {', '.join(extra)})")


# --- TunnelBinding subjects --------------------------------------------------------------------------


@dataclass(frozen=True)
class Subject:
    name: str
    fqdn: str
    protocol: str | None  # None: from the Service's first port
    path: str | None
    target: str | None
    origin_request: Mapping[str, Any]


def tunnel_ref(body: Mapping[str, Any]) -> tuple[str, str, bool]:
    """(kind: Tunnel or ClusterTunnel, name, disableDNSUpdates) of a binding's ``tunnelRef``."""
    ref = body.get("tunnelRef")
    if not isinstance(ref, Mapping) or not ref.get("name"):
        raise SpecError(c.INVALID_SPEC, "tunnelRef needs a kind and a name")
    kind = {"tunnel": TUNNEL_KIND, "clustertunnel": CLUSTER_KIND}.get(str(ref.get("kind") or "").lower())
    if kind is None:
        raise SpecError(c.INVALID_SPEC, f"tunnelRef.kind must be Tunnel or ClusterTunnel, not {shown(ref.get('kind'))}")
    return kind, str(ref["name"]), ref.get("disableDNSUpdates") is True


def resolve_fqdn(fqdn: str, domain: str) -> str:
    """The FQDN, lower-cased; outside the zone `domain` → HostnameOutsideZone."""
    host = fqdn.strip().lower().rstrip(".")
    if not (host == domain or host.endswith("." + domain)):
        raise SpecError(c.HOSTNAME_OUTSIDE_ZONE, f"hostname {shown(fqdn)} is not inside the zone {shown(domain)}")
    if not is_hostname(host):
        raise SpecError(c.INVALID_SPEC, f"hostname {shown(fqdn)} is not a valid DNS name")
    return host


def parse_subjects(body: Mapping[str, Any], domain: str) -> list[Subject]:
    """The binding's subjects, or :class:`SpecError` for the first one that cannot be served."""
    subjects = body.get("subjects")
    if not isinstance(subjects, list) or not subjects:
        raise SpecError(c.INVALID_SPEC, "subjects must list at least one Service")
    parsed: list[Subject] = []
    seen: set[str] = set()
    for index, raw in enumerate(subjects):
        where = f"subjects[{index}]"
        if not isinstance(raw, Mapping) or not raw.get("name"):
            raise SpecError(c.INVALID_SPEC, f"{where} needs a name")
        if str(raw.get("kind") or "Service") != "Service":
            raise SpecError(c.INVALID_SPEC, f"{where}.kind must be Service, not {shown(raw.get('kind'))}")
        name, spec = str(raw["name"]), raw.get("spec") or {}
        if not isinstance(spec, Mapping):
            raise SpecError(c.INVALID_SPEC, f"{where}.spec must be an object")
        protocol = spec.get("protocol") or None
        if protocol is not None and protocol not in PROTOCOLS:
            raise SpecError(c.INVALID_SPEC, f"{where}.spec.protocol must be one of {', '.join(PROTOCOLS)}, not "
                            f"{shown(protocol)}")
        fqdn = resolve_fqdn(str(spec.get("fqdn") or f"{name}.{domain}"), domain)
        if fqdn in seen:
            raise SpecError(c.INVALID_SPEC, f"{where}: hostname {fqdn} is listed twice")
        seen.add(fqdn)
        parsed.append(Subject(name=name, fqdn=fqdn, protocol=protocol, path=str(spec.get("path") or "") or None,
                              target=str(spec.get("target") or "") or None, origin_request=origin_request(spec)))
    return parsed


def origin_request(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A subject's ``originRequest`` options (only those set to something other than cloudflared's default)."""
    options: dict[str, Any] = {}
    if spec.get("noTlsVerify") is True:
        options["noTLSVerify"] = True
    if spec.get("http2Origin") is True:
        options["http2Origin"] = True
    if spec.get("caPool"):
        options["caPool"] = f"{CA_DIR}/{spec['caPool']}"
    if spec.get("proxyAddress") and spec.get("proxyAddress") != "127.0.0.1":
        options["proxyAddress"] = str(spec["proxyAddress"])
    if is_int(spec.get("proxyPort")) and spec["proxyPort"]:
        options["proxyPort"] = spec["proxyPort"]
    if spec.get("proxyType"):
        options["proxyType"] = str(spec["proxyType"])
    return options


def default_protocol(port: int, protocol: str) -> str:
    """adyanth's default scheme for a Service port: UDP udp; TCP 22 ssh, 139/445 smb, 443 https, 3389 rdp, else
    http."""
    if protocol.upper() == "UDP":
        return "udp"
    return {22: "ssh", 139: "smb", 445: "smb", 443: "https", 3389: "rdp"}.get(port, "http")


def origin(subject_protocol: str | None, target: str | None, service: Mapping[str, Any] | None, namespace: str,
           name: str) -> str:
    """The rule's service: `target`, else ``{proto}://{svc}.{ns}.svc:{port}`` from the Service's first port;
    a missing Service or one without ports → :class:`SpecError`."""
    if target:
        return target
    if service is None:
        raise SpecError(c.SERVICE_NOT_FOUND, f"Service {namespace}/{name} does not exist")
    ports = (service.get("spec") or {}).get("ports") or []
    if not ports:
        raise SpecError(c.INVALID_SPEC, f"Service {namespace}/{name} has no ports")
    first = ports[0]
    port = first.get("port")
    if not is_int(port):
        raise SpecError(c.INVALID_SPEC, f"Service {namespace}/{name}: its first port has no number")
    proto = subject_protocol or default_protocol(int(port), str(first.get("protocol") or "TCP"))
    if proto == "udp":  # adyanth writes udp://..., which cloudflared refuses: say so instead
        raise SpecError(c.INVALID_SPEC, f"Service {namespace}/{name}: a tunnel's public hostnames carry no UDP (the "
                        "udp protocol); use tcp, or a private network route")
    return f"{proto}://{name}.{namespace}.svc:{port}"


def access_lists(annotations: Mapping[str, Any] | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(emails, domains) of the Access annotations (comma-separated); both empty: no Access. Malformed entries →
    :class:`SpecError`."""
    annotations = annotations or {}

    def split(key: str) -> tuple[str, ...]:
        raw = annotations.get(key) or ""
        return tuple(sorted({item.strip().lower() for item in str(raw).split(",") if item.strip()}))

    emails, domains = split(ACCESS_EMAILS), split(ACCESS_DOMAINS)
    refused = malformed(emails, domains)
    if refused:
        raise SpecError(c.INVALID_SPEC, f"Access annotations: not an email address or a domain: "
                        f"{', '.join(map(shown, refused[:3]))}{', ...' if len(refused) > 3 else ''}")
    return emails, domains


# --- annotated Services (the blog-era form, adyanth v0.2.0) --------------------------------------------------

SERVICE_PREFIX = "tunnels.networking.cfargotunnel.com/"
SERVICE_SELECTORS = ("cr", "id", "name")  # at least one: which Tunnel
SERVICE_PROTOCOLS = ("http", "https", "tcp", "udp")


def service_source(namespace: str, name: str) -> str:
    return f"Service/{namespace}/{name}"


def service_annotated(annotations: Mapping[str, Any] | None) -> bool:
    """Whether a Service asks to be published (one of the cr, id, name annotations)."""
    return any((annotations or {}).get(SERVICE_PREFIX + key) for key in SERVICE_SELECTORS)


@dataclass(frozen=True)
class ServiceAsk:
    """What an annotated Service asks for: the Tunnel (by CR name, tunnel id, tunnel name; in `namespace`, None:
    any), the hostname (None: ``<service>.<domain>``) and the protocol (None: from its first port)."""

    namespace: str | None
    cr: str | None
    tunnel_id: str | None
    tunnel_name: str | None
    fqdn: str | None
    protocol: str | None

    def matches(self, tunnel: Mapping[str, Any]) -> bool:
        meta, status = tunnel.get("metadata") or {}, tunnel.get("status") or {}
        return ((self.cr is None or meta.get("name") == self.cr)
                and (self.tunnel_id is None or status.get("tunnelId") == self.tunnel_id)
                and (self.tunnel_name is None or status.get("tunnelName") == self.tunnel_name))


def service_ask(annotations: Mapping[str, Any] | None, namespace: str) -> ServiceAsk:
    """The Service's ask, as adyanth v0.2.0 reads its annotations: ``ns`` absent or ``"true"``: the Tunnel is in the
    Service's namespace; ``"false"``: any namespace; anything else: that namespace. A ``proto`` that is not one of
    http, https, tcp, udp → :class:`SpecError`."""
    annotations = annotations or {}

    def get(key: str) -> str | None:
        value = annotations.get(SERVICE_PREFIX + key)
        return str(value) if value not in (None, "") else None

    ns = get("ns")
    where = namespace if ns in (None, "true") else None if ns == "false" else ns
    protocol = get("proto")
    if protocol is not None and protocol not in SERVICE_PROTOCOLS:
        raise SpecError(c.INVALID_SPEC, f"annotation {SERVICE_PREFIX}proto must be one of "
                        f"{', '.join(SERVICE_PROTOCOLS)}, not {shown(protocol)}")
    return ServiceAsk(namespace=where, cr=get("cr"), tunnel_id=get("id"), tunnel_name=get("name"), fqdn=get("fqdn"),
                      protocol=protocol)


def service_protocol(port: int, protocol: str) -> str:
    """v0.2.0's default for an annotated Service: UDP udp; TCP 80 http, 443 https, else tcp."""
    if protocol.upper() == "UDP":
        return "udp"
    return {80: "http", 443: "https"}.get(port, "tcp")


_STATUS_TARGET = re.compile(r"^http_status:[1-5][0-9]{2}$")


def shared_target_problem(target: str, namespace: str, allowed: Collection[str] = ()) -> str | None:
    """Why a subject's `target` may not go through a tunnel shared across namespaces (a ClusterTunnel), or None.
    Through a tunnel that is not the binding's namespace's own, a binding reaches the Services of its namespace
    only (``<svc>.<namespace>.svc[.cluster.local]``, any scheme and port) or answers with ``http_status:NNN``:
    otherwise one namespace would publish another's Services, or the cluster's and cloud's internal addresses, to
    the internet through the installation's tunnel. `allowed`: the installation's other hosts (``*``: any)."""
    if _STATUS_TARGET.match(target) or "*" in allowed:
        return None
    host = target.split("://", 1)[1] if "://" in target else ""
    host = host.split("/", 1)[0].rsplit("@", 1)[-1]
    host = host[:host.rindex(":")] if ":" in host and not host.endswith("]") else host
    labels = host.lower().rstrip(".").split(".")
    if host and ".".join(labels) in {entry.lower().rstrip(".") for entry in allowed}:
        return None
    if len(labels) in (3, 5) and labels[1] == namespace and labels[2] == "svc" and labels[0] and (
            len(labels) == 3 or labels[3:] == ["cluster", "local"]):
        return None
    return (f"target {target!r} is not a Service of namespace {namespace} (<service>.{namespace}.svc) nor "
            "http_status:NNN: a binding to a ClusterTunnel reaches its own namespace's Services only (and the hosts "
            "of the installation's CHUTES_SHARED_TUNNEL_TARGETS)")
