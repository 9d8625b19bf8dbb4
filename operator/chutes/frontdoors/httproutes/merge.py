"""The settings of one route: annotation > per-route template > base template ``base-{tenant}`` > default.

Key presence decides, as in the seed's ``config.merge_settings``: an annotation that is present wins even
when empty, and a template field that is present wins over the base template's. ``{{ hostname }}`` in a
template's string values becomes the route's hostname. Every malformed value is reported (all at once, each
naming its annotation or template field) instead of being read as "false" the way the seed did.

The annotation hash is the seed's ``compute_annotation_hash`` (same input, same digest), so that state
ConfigMaps written by the seed still match.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from chutes.frontdoors.httproutes import annotations as a

T = TypeVar("T")
_HOSTNAME_VARIABLE = re.compile(r"\{\{\s*hostname\s*\}\}")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


class MergeError(ValueError):
    """The route cannot be published as configured; ``problems`` lists every refused value."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = tuple(problems)


@dataclass(frozen=True)
class OriginTLS:
    no_tls_verify: bool = False
    origin_server_name: str = ""
    ca_pool: str = ""
    tls_timeout: int = 10
    http2_origin: bool = False
    match_sni_to_host: bool = False


@dataclass(frozen=True)
class AccessSettings:
    enabled: bool = False
    session_duration: str = "24h"
    allow_groups: tuple[str, ...] = ()
    allow_emails: tuple[str, ...] = ()
    existing_policy_names: tuple[str, ...] = ()
    auto_redirect_to_identity: bool = False
    enable_binding_cookie: bool = False
    http_only_cookie_attribute: bool = True
    same_site_cookie_attribute: str = "lax"
    logo_url: str = ""
    skip_interstitial: bool = False
    app_launcher_visible: bool = True
    service_auth_401_redirect: bool = False
    custom_deny_message: str = ""
    custom_deny_url: str = ""
    custom_non_identity_deny_url: str = ""

    @property
    def has_allow_rules(self) -> bool:
        return bool(self.allow_groups or self.allow_emails)


@dataclass(frozen=True)
class ServiceTokenSettings:
    enabled: bool = False
    duration: str = "8760h"


@dataclass(frozen=True)
class ServiceRef:
    namespace: str
    name: str


@dataclass(frozen=True)
class DnsOnlySettings:
    enabled: bool = False
    proxied: bool = False
    ttl: int = 120
    static_ip: str = ""  # the dnsIp annotation, else dnsOnly.staticIp
    ingress_service: ServiceRef | None = None


@dataclass(frozen=True)
class RouteSettings:
    hostname: str
    tenant: str
    template: str | None
    tunnel_id: str | None  # the tunnelId annotation; None: the tenant's
    origin_service: str  # "" in DNS-only mode
    http_redirect: bool = True  # parsed as the seed does; nothing per hostname implements it
    origin_tls: OriginTLS = field(default_factory=OriginTLS)
    access: AccessSettings = field(default_factory=AccessSettings)
    service_token: ServiceTokenSettings = field(default_factory=ServiceTokenSettings)
    dns_only: DnsOnlySettings = field(default_factory=DnsOnlySettings)


@dataclass(frozen=True)
class NamedSpec:
    """A template's name (for messages) and its spec."""

    name: str
    spec: Mapping[str, Any]


class _Sources:
    """Where a setting comes from, by key presence, collecting problems instead of stopping at the first."""

    def __init__(self, annotations: Mapping[str, str], template: NamedSpec | None, base: NamedSpec | None,
                 hostname: str) -> None:
        self.annotations = annotations
        self.templates = [t for t in (template, base) if t is not None]
        self.hostname = hostname
        self.problems: list[str] = []

    def _from_templates(self, path: tuple[str, ...]) -> tuple[str, Any] | None:
        if not path:
            return None
        for template in self.templates:
            node: Any = template.spec
            for key in path:
                node = node.get(key) if isinstance(node, Mapping) else None
            if node is not None:
                if isinstance(node, str):
                    node = _HOSTNAME_VARIABLE.sub(self.hostname, node)
                return f"template {template.name}: spec.{'.'.join(path)}", node
        return None

    def get(self, parse: Callable[[str, Any], T], default: T, path: tuple[str, ...],
            annotation: str | None = None, annotation_parse: Callable[[str, Any], T] | None = None) -> T:
        if annotation is not None and annotation in self.annotations:
            where, raw = annotation, self.annotations[annotation]
            parse = annotation_parse or parse
        else:
            found = self._from_templates(path)
            if found is None:
                return default
            where, raw = found
        try:
            return parse(where, raw)
        except a.ValueProblem as problem:
            self.problems.append(str(problem))
            return default


def _csv(_where: str, raw: Any) -> tuple[str, ...]:
    return a.parse_csv(str(raw))


def _token_duration(where: str, raw: Any) -> str:
    return "forever" if raw == "forever" else a.parse_duration(where, raw)


def _int_range(low: int, high: int) -> Callable[[str, Any], int]:
    return lambda where, raw: a.parse_int(where, raw, low, high)


def _emails(where: str, raw: Any) -> tuple[str, ...]:
    values = a.parse_list(where, raw)
    bad = [value for value in values if not _EMAIL.match(value)]
    if bad:
        raise a.ValueProblem(f"{where}: {', '.join(repr(b) for b in bad)} is not an email address")
    return values


def _emails_csv(where: str, raw: Any) -> tuple[str, ...]:
    return _emails(where, a.parse_csv(str(raw)))


def _service_ref(route_namespace: str) -> Callable[[str, Any], ServiceRef | None]:
    def parse(where: str, raw: Any) -> ServiceRef | None:
        if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str) or not raw["name"]:
            raise a.ValueProblem(f"{where}: expected {{name, namespace}} naming a Service, got {raw!r}")
        namespace = raw.get("namespace") or route_namespace
        return ServiceRef(namespace=str(namespace), name=str(raw["name"]))

    return parse


def origin_from_backend(route: Mapping[str, Any]) -> str | None:
    """``http://{name}.{namespace}.svc.cluster.local:{port}`` of ``spec.rules[0].backendRefs[0]``."""
    rules = (route.get("spec") or {}).get("rules") or []
    refs = (rules[0].get("backendRefs") or []) if rules and isinstance(rules[0], Mapping) else []
    if not refs or not isinstance(refs[0], Mapping) or not refs[0].get("name") or not refs[0].get("port"):
        return None
    ref = refs[0]
    namespace = ref.get("namespace") or route["metadata"]["namespace"]
    return f"http://{ref['name']}.{namespace}.svc.cluster.local:{ref['port']}"


MAX_LABEL_VALUE = 63


def merge(annotations: Mapping[str, str], route: Mapping[str, Any], template: NamedSpec | None,
          base: NamedSpec | None) -> RouteSettings:
    """The route's settings, or :class:`MergeError` listing every problem (an unknown annotation key under our
    prefixes first: a typo must not publish the route as if the key were absent)."""
    problems: list[str] = a.unknown_key_problems(annotations)
    try:
        hostname = a.parse_hostname(a.HOSTNAME, annotations.get(a.HOSTNAME, ""))
    except a.ValueProblem as problem:
        problems.append(str(problem) if a.HOSTNAME in annotations else f"{a.HOSTNAME} is required")
        hostname = "invalid.invalid"
    tenant = annotations.get(a.TENANT, "").strip()
    if not tenant:
        problems.append(f"{a.TENANT} is required")
    route_name = str(route["metadata"]["name"])
    if len(route_name) > MAX_LABEL_VALUE:  # the API server refuses the state ConfigMap (the seed failed there)
        problems.append(f"metadata.name {route_name!r} is {len(route_name)} characters long: the label "
                        f"{a.LABEL_ROUTE_NAME} of the route's state ConfigMap holds at most {MAX_LABEL_VALUE}: "
                        "use a shorter name")
    src = _Sources(annotations, template, base, hostname)
    tunnel_id = src.get(a.parse_uuid, None, (), a.TUNNEL_ID)
    route_namespace = str(route["metadata"]["namespace"])

    dns_only = DnsOnlySettings(
        enabled=src.get(a.parse_bool, False, ("dnsOnly", "enabled")),
        proxied=src.get(a.parse_bool, False, ("dnsOnly", "proxied")),
        ttl=src.get(_int_range(1, 86400), 120, ("dnsOnly", "ttl")),
        static_ip=src.get(a.parse_str, "", ("dnsOnly", "staticIp"), a.DNS_IP).strip(),
        ingress_service=src.get(_service_ref(route_namespace), None, ("dnsOnly", "ingressServiceRef")),
    )
    if dns_only.enabled and dns_only.static_ip:
        where = a.DNS_IP if a.DNS_IP in annotations else "dnsOnly.staticIp"
        try:
            dns_only = replace(dns_only, static_ip=a.parse_ip(where, dns_only.static_ip))
        except a.ValueProblem as problem:
            problems.append(str(problem))
    origin = src.get(a.parse_str, "", ("originService", "url"), a.ORIGIN_URL).strip()
    where = a.ORIGIN_URL if a.ORIGIN_URL in annotations else "originService.url"
    if not dns_only.enabled and not origin:
        origin, where = origin_from_backend(route) or "", "spec.rules[0].backendRefs[0]"
        if not origin:
            problems.append(f"no origin: set {a.ORIGIN_URL}, originService.url in a template, or a backendRef "
                            "(name and port) in spec.rules[0]")
    if not dns_only.enabled and origin:
        try:
            origin = a.parse_origin(where, origin)
        except a.ValueProblem as problem:
            problems.append(str(problem))

    tls = ("originService", "originTLS")
    origin_tls = OriginTLS(
        no_tls_verify=src.get(a.parse_bool, False, (*tls, "noTLSVerify"), a.ORIGIN_NO_TLS_VERIFY),
        origin_server_name=src.get(a.parse_str, "", (*tls, "originServerName")),
        ca_pool=src.get(a.parse_str, "", (*tls, "caPool")),
        tls_timeout=src.get(_int_range(1, 300), 10, (*tls, "tlsTimeout")),
        http2_origin=src.get(a.parse_bool, False, (*tls, "http2Origin")),
        match_sni_to_host=src.get(a.parse_bool, False, (*tls, "matchSNIToHost")),
    )
    app = "accessApplication"
    access = AccessSettings(
        enabled=src.get(a.parse_bool, False, (app, "enabled"), a.ACCESS_ENABLED),
        session_duration=src.get(a.parse_duration, "24h", (app, "sessionDuration"), a.ACCESS_SESSION_DURATION),
        allow_groups=src.get(a.parse_list, (), (app, "allowGroups"), a.ACCESS_ALLOW_GROUPS, _csv),
        allow_emails=src.get(_emails, (), (app, "allowEmails"), a.ACCESS_ALLOW_EMAILS, _emails_csv),
        existing_policy_names=src.get(
            a.parse_list, (), (app, "existingPolicyNames"), a.ACCESS_EXISTING_POLICY_NAMES, _csv
        ),
        auto_redirect_to_identity=src.get(a.parse_bool, False, (app, "autoRedirectToIdentity"), a.ACCESS_AUTO_REDIRECT),
        enable_binding_cookie=src.get(a.parse_bool, False, (app, "enableBindingCookie"), a.ACCESS_BINDING_COOKIE),
        http_only_cookie_attribute=src.get(
            a.parse_bool, True, (app, "httpOnlyCookieAttribute"), a.ACCESS_HTTP_ONLY_COOKIE
        ),
        same_site_cookie_attribute=src.get(
            a.parse_same_site, "lax", (app, "sameSiteCookieAttribute"), a.ACCESS_SAME_SITE_COOKIE
        ),
        logo_url=src.get(a.parse_str, "", (app, "logoUrl")),
        skip_interstitial=src.get(a.parse_bool, False, (app, "skipInterstitial"), a.ACCESS_SKIP_INTERSTITIAL),
        app_launcher_visible=src.get(a.parse_bool, True, (app, "appLauncherVisible"), a.ACCESS_APP_LAUNCHER_VISIBLE),
        service_auth_401_redirect=src.get(
            a.parse_bool, False, (app, "serviceAuth401Redirect"), a.ACCESS_SERVICE_AUTH_401
        ),
        custom_deny_message=src.get(a.parse_str, "", (app, "customDenyMessage")),
        custom_deny_url=src.get(a.parse_str, "", (app, "customDenyUrl")),
        custom_non_identity_deny_url=src.get(a.parse_str, "", (app, "customNonIdentityDenyUrl")),
    )
    service_token = ServiceTokenSettings(
        enabled=src.get(a.parse_bool, False, ("serviceToken", "enabled"), a.SERVICE_TOKEN_ENABLED),
        duration=src.get(_token_duration, "8760h", ("serviceToken", "duration"), a.SERVICE_TOKEN_DURATION),
    )
    http_redirect = src.get(a.parse_bool, True, ("originService", "httpRedirect"))
    if dns_only.enabled and not dns_only.proxied and access.enabled:
        problems.append(f"{a.ACCESS_ENABLED}: Access cannot protect a DNS-only record that is not proxied (clients "
                        "would reach the address without passing Access): set dnsOnly.proxied: true, or turn "
                        "Access or DNS-only off")
    problems.extend(src.problems)
    if problems:
        raise MergeError(problems)
    return RouteSettings(
        hostname=hostname,
        tenant=tenant,
        template=annotations.get(a.TEMPLATE) or None,
        tunnel_id=tunnel_id,
        origin_service=origin if not dns_only.enabled else "",
        http_redirect=http_redirect,
        origin_tls=origin_tls,
        access=access,
        service_token=service_token,
        dns_only=dns_only,
    )


def annotation_hash(annotations: Mapping[str, str], template_spec: Mapping[str, Any] | None,
                    base_spec: Mapping[str, Any] | None) -> str:
    """SHA-256 over the input annotations and the (stored) template specs, exactly as the seed computes it."""
    hashable: dict[str, Any] = {"annotations": a.inputs(annotations)}
    if template_spec:
        hashable["per_route_template"] = dict(template_spec)
    if base_spec:
        hashable["base_template"] = dict(base_spec)
    return hashlib.sha256(json.dumps(hashable, sort_keys=True).encode()).hexdigest()
