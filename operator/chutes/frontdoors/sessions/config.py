"""The session front door's configuration: the seed's environment variables, read once at start.

Names, defaults and meaning are the seed's (opencode-cloudflare-operator v1), plus ``SESSION_HASH_LABEL``.
Every problem is reported at once, each naming its variable; the token's value is never echoed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from chutes.cloudflare_core.credentials import token_defect
from chutes.cloudflare_core.models import cname_target
from chutes.cloudflare_core.ownership import marker_fits
from chutes.frontdoors.sessions.selector import LabelSelector, SelectorError, valid_label_key
from chutes.frontdoors.specs import is_dns_name
from chutes.settings import SettingsError

DEFAULT_WATCH_NAMESPACE = "opencode-router"
DEFAULT_POD_LABEL_SELECTOR = "app.kubernetes.io/managed-by=opencode-router"
DEFAULT_OAUTH2_CHAIN_MIDDLEWARE = "opencode-router-oauth2-chain"
DEFAULT_ROUTER_SERVICE_NAME = "opencode-router"
DEFAULT_HEALTH_PORT = 8080
DEFAULT_SESSION_HASH_LABEL = "opencode.ai/session-hash"
REQUIRED = ("CF_API_TOKEN", "CF_ZONE_ID", "CF_TUNNEL_ID", "DOMAIN", "ROUTER_SERVICE_URL")

_ZONE_ID = re.compile(r"^[0-9a-f]{32}$")
_TUNNEL_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_SUFFIX = re.compile(r"^([a-z0-9-]{0,61}[a-z0-9])?$")
_SERVICE_URL = re.compile(r"^https?://[^\s/?#]+(:[0-9]{1,5})?(/\S*)?$")


class SessionConfigError(SettingsError):
    """A session variable is missing or malformed; the message names each one."""


@dataclass(frozen=True)
class SessionConfig:
    api_token: str = field(repr=False)
    zone_id: str
    tunnel_id: str
    domain: str
    router_service_url: str
    route_suffix: str = ""
    watch_namespace: str = DEFAULT_WATCH_NAMESPACE
    pod_selector: LabelSelector = field(default_factory=lambda: LabelSelector.parse(DEFAULT_POD_LABEL_SELECTOR))
    ingressroute_namespace: str = DEFAULT_WATCH_NAMESPACE
    oauth2_chain_middleware: str = DEFAULT_OAUTH2_CHAIN_MIDDLEWARE
    router_service_name: str = DEFAULT_ROUTER_SERVICE_NAME
    health_port: int = DEFAULT_HEALTH_PORT
    session_hash_label: str = DEFAULT_SESSION_HASH_LABEL

    @property
    def tunnel_target(self) -> str:
        return cname_target(self.tunnel_id)


def load_config(environ: Mapping[str, str]) -> SessionConfig:
    """The configuration from ``environ``; raises :class:`SessionConfigError` naming every bad variable."""
    problems: list[str] = []

    def get(name: str, default: str | None = None) -> str:
        value = environ.get(name)
        if value is None or value.strip() == "":
            if default is None:
                problems.append(f"{name}: required, not set")
                return ""
            return default
        return value.strip()

    def check(name: str, ok: bool, message: str) -> None:
        if not ok:
            problems.append(f"{name}: {message}")

    token = get("CF_API_TOKEN")
    zone_id = get("CF_ZONE_ID").lower()
    tunnel_id = get("CF_TUNNEL_ID").lower()
    domain = get("DOMAIN").lower().rstrip(".")
    service_url = get("ROUTER_SERVICE_URL")
    suffix = environ.get("ROUTE_SUFFIX", "").strip().lower()
    watch_namespace = get("WATCH_NAMESPACE", DEFAULT_WATCH_NAMESPACE)
    ingressroute_namespace = get("INGRESSROUTE_NAMESPACE", watch_namespace)
    middleware = get("OAUTH2_CHAIN_MIDDLEWARE", DEFAULT_OAUTH2_CHAIN_MIDDLEWARE)
    router_service = get("ROUTER_SERVICE_NAME", DEFAULT_ROUTER_SERVICE_NAME)
    hash_label = get("SESSION_HASH_LABEL", DEFAULT_SESSION_HASH_LABEL)
    raw_port = get("HEALTH_PORT", str(DEFAULT_HEALTH_PORT))
    raw_selector = environ.get("POD_LABEL_SELECTOR", DEFAULT_POD_LABEL_SELECTOR)

    if token:  # the token's value is never echoed
        defect = token_defect(token)
        check("CF_API_TOKEN", defect is None, f"the API token {defect}")
    if zone_id:
        check("CF_ZONE_ID", bool(_ZONE_ID.match(zone_id)), f"expected a 32-character hex zone id, got {zone_id!r}")
    if tunnel_id:
        check("CF_TUNNEL_ID", bool(_TUNNEL_ID.match(tunnel_id)), f"expected a tunnel UUID, got {tunnel_id!r}")
    if domain:
        check("DOMAIN", is_dns_name(domain), f"expected a DNS name such as example.org, got {domain!r}")
    if service_url:
        check("ROUTER_SERVICE_URL", bool(_SERVICE_URL.match(service_url)),
              f"expected an http(s):// URL, got {service_url!r}")
    check("ROUTE_SUFFIX", bool(_SUFFIX.match(suffix)),
          f"expected lower-case letters, digits and dashes, not ending with a dash, got {suffix!r}")
    for name, value in (("WATCH_NAMESPACE", watch_namespace), ("INGRESSROUTE_NAMESPACE", ingressroute_namespace)):
        check(name, bool(_DNS_LABEL.match(value)), f"expected a namespace name, got {value!r}")
    for name, value in (("OAUTH2_CHAIN_MIDDLEWARE", middleware), ("ROUTER_SERVICE_NAME", router_service)):
        check(name, bool(_DNS_LABEL.match(value)), f"expected a Kubernetes object name, got {value!r}")
    check("SESSION_HASH_LABEL", valid_label_key(hash_label), f"expected a label key, got {hash_label!r}")
    port = int(raw_port) if raw_port.isdigit() else -1
    check("HEALTH_PORT", 0 <= port <= 65535, f"expected a port number 0-65535, got {raw_port!r}")
    try:
        selector = LabelSelector.parse(raw_selector)
    except SelectorError as error:
        problems.append(f"POD_LABEL_SELECTOR: {error}")
        selector = LabelSelector.parse("")

    if problems:
        raise SessionConfigError("invalid session configuration: " + "; ".join(problems))
    return SessionConfig(
        api_token=token,
        zone_id=zone_id,
        tunnel_id=tunnel_id,
        domain=domain,
        router_service_url=service_url,
        route_suffix=suffix,
        watch_namespace=watch_namespace,
        pod_selector=selector,
        ingressroute_namespace=ingressroute_namespace,
        oauth2_chain_middleware=middleware,
        router_service_name=router_service,
        health_port=port,
        session_hash_label=hash_label,
    )


def require_marker_fits(config: SessionConfig, owner_id: str) -> None:
    """Refuse to start (:class:`SessionConfigError`) when the ownership marker ``Session/<WATCH_NAMESPACE>/``
    cannot fit in a DNS comment with `owner_id`: this door could publish records it could never prove its
    own again (and so never remove)."""
    if not marker_fits(owner_id, "Session", config.watch_namespace):
        raise SessionConfigError(
            f"invalid session configuration: WATCH_NAMESPACE: the ownership marker of owner id {owner_id!r} for "
            f"sessions in namespace {config.watch_namespace!r} cannot fit in the 100-character DNS comment: "
            "use a shorter owner id (or a shorter WATCH_NAMESPACE)"
        )
