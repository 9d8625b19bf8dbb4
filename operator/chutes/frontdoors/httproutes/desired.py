"""What a route's settings mean in Cloudflare: the tenant it names, its ingress rule, DNS record, Access
application and allow policy, the zone candidates of its hostname and which route the door prefers for a free
hostname. Pure functions; no I/O.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from chutes.cloudflare_core.models import (
    AccessApp,
    AccessAppSpec,
    AppPolicySpec,
    DesiredRecord,
    IngressRule,
    Policy,
    cname_target,
)
from chutes.frontdoors.httproutes import annotations as a
from chutes.frontdoors.httproutes.merge import DnsOnlySettings, RouteSettings

KEEP_ALIVE_CONNECTIONS = 100  # the seed's fixed value for https origins
# The allow policy goes after the referenced reusable policies (precedence 1..n, in the listed order). A
# fixed, high precedence means adding a reusable policy never collides with it.
ALLOW_PRECEDENCE = 100


class TenantError(ValueError):
    """The tenant's spec is unusable; the message names the field."""


@dataclass(frozen=True)
class Tenant:
    namespace: str
    name: str
    account_id: str
    tunnel_id: str
    zone_id: str | None
    credential_name: str
    credential_key: str
    generation: int | None = None
    # Tunnels besides its own that a route's tunnelId annotation may name (spec.allowedTunnelIds).
    allowed_tunnel_ids: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    def allows_tunnel(self, tunnel_id: str) -> bool:
        """Whether a route of this tenant may put its rule in `tunnel_id`: the tenant's own tunnel, or one its
        ``spec.allowedTunnelIds`` lists (whoever may write the tenant decides)."""
        return tunnel_id == self.tunnel_id or tunnel_id in self.allowed_tunnel_ids


def tenant_from_body(body: Mapping[str, Any]) -> Tenant:
    meta, spec = body["metadata"], body.get("spec") or {}
    ref = spec.get("credentialRef") or {}
    where = f"{a.TENANT_KIND} {meta.get('namespace')}/{meta['name']}"
    if not isinstance(spec.get("accountId"), str) or not spec["accountId"]:
        raise TenantError(f"{where}: spec.accountId is required")
    if not isinstance(ref, Mapping) or not ref.get("name"):
        raise TenantError(f"{where}: spec.credentialRef.name is required")
    try:
        tunnel_id = a.parse_uuid(f"{where}: spec.tunnelId", spec.get("tunnelId", ""))
    except a.ValueProblem as problem:
        raise TenantError(str(problem)) from None
    allowed = spec.get("allowedTunnelIds") or []
    if not isinstance(allowed, list):
        raise TenantError(f"{where}: spec.allowedTunnelIds must be a list of tunnel UUIDs, got {allowed!r}")
    try:
        allowed_ids = tuple(a.parse_uuid(f"{where}: spec.allowedTunnelIds[{i}]", value)
                            for i, value in enumerate(allowed))
    except a.ValueProblem as problem:
        raise TenantError(str(problem)) from None
    return Tenant(
        namespace=str(meta.get("namespace")),
        name=str(meta["name"]),
        account_id=spec["accountId"],
        tunnel_id=tunnel_id,
        zone_id=spec.get("zoneId") or None,
        credential_name=str(ref["name"]),
        credential_key=str(ref.get("key") or "token"),
        generation=meta.get("generation"),
        allowed_tunnel_ids=allowed_ids,
    )


def ingress_rule(settings: RouteSettings) -> IngressRule:
    """``{hostname, service}``; https origins also get the seed's ``originRequest`` fields."""
    hostname, origin = settings.hostname, settings.origin_service
    request: dict[str, Any] | None = None
    if origin.startswith("https://"):
        tls = settings.origin_tls
        request = {
            "httpHostHeader": hostname,
            "noTLSVerify": tls.no_tls_verify,
            "keepAliveConnections": KEEP_ALIVE_CONNECTIONS,
            "originServerName": tls.origin_server_name or hostname,
            "tlsTimeout": tls.tls_timeout,
            "http2Origin": tls.http2_origin,
        }
        if tls.ca_pool:
            request["caPool"] = tls.ca_pool
        if tls.match_sni_to_host:
            request["matchSNItoHost"] = True
    return IngressRule(hostname=hostname, service=origin, origin_request=request)


def tunnel_cname(hostname: str, tunnel_id: str, source: str, *, adopt: bool = False) -> DesiredRecord:
    """`adopt`: a record for the name without any marker of ours is taken over (the route asks for it)."""
    return DesiredRecord(hostname, "CNAME", cname_target(tunnel_id), proxied=True, ttl=1, source=source,
                         adopt=adopt)


def address_type(ip: str) -> str:
    return "AAAA" if ipaddress.ip_address(ip).version == 6 else "A"


def address_record(hostname: str, ip: str, dns_only: DnsOnlySettings, source: str, *,
                   adopt: bool = False) -> DesiredRecord:
    """An A record (AAAA for an IPv6 address; the seed sent those as A records, which Cloudflare refuses)."""
    return DesiredRecord(hostname, address_type(ip), ip, proxied=dns_only.proxied, ttl=dns_only.ttl, source=source,
                         adopt=adopt)


def access_app_spec(settings: RouteSettings, policy_ids: tuple[str, ...], owner_id: str = "default", *,
                    adopt: bool = False) -> AccessAppSpec:
    access = settings.access
    extra: dict[str, Any] = {
        "enable_binding_cookie": access.enable_binding_cookie,
        "http_only_cookie_attribute": access.http_only_cookie_attribute,
        "same_site_cookie_attribute": access.same_site_cookie_attribute,
        "skip_interstitial": access.skip_interstitial,
        "app_launcher_visible": access.app_launcher_visible,
        "service_auth_401_redirect": access.service_auth_401_redirect,
    }
    optional = {
        "logo_url": access.logo_url,
        "custom_deny_message": access.custom_deny_message,
        "custom_deny_url": access.custom_deny_url,
        "custom_non_identity_deny_url": access.custom_non_identity_deny_url,
    }
    extra.update({key: value for key, value in optional.items() if value})
    return AccessAppSpec(
        name=a.app_name(settings.hostname, owner_id),
        domain=settings.hostname,
        session_duration=access.session_duration,
        auto_redirect_to_identity=access.auto_redirect_to_identity,
        policies=policy_ids,
        extra=extra,
        adopt=adopt,
    )


def allow_policy_spec(settings: RouteSettings) -> AppPolicySpec | None:
    """``cfzt-{hostname}-allow`` including the groups (by id, as the seed sends them) and emails."""
    access = settings.access
    if not access.has_allow_rules:
        return None
    include = [{"group": {"id": group}} for group in access.allow_groups]
    include += [{"email": {"email": email}} for email in access.allow_emails]
    return AppPolicySpec(
        name=a.allow_policy_name(settings.hostname),
        decision="allow",
        include=tuple(include),
        precedence=ALLOW_PRECEDENCE,
    )


def _allowed(include: Iterable[Mapping[str, Any]]) -> str:
    rules = list(include)
    groups = sum(1 for rule in rules if "group" in rule)
    emails = sum(1 for rule in rules if "email" in rule)
    return f"{groups} group(s) and {emails} email(s) allowed"


def unapplied_access(settings: RouteSettings, policy_ids: tuple[str, ...], app: AccessApp,
                     policy: Policy | None) -> list[str]:
    """How the live Access application and allow policy (`policy`, None: none) differ from the settings, each
    difference saying what is live (a write policy left them as they are)."""
    def keys(include: Iterable[Mapping[str, Any]]) -> list[str]:
        return sorted(json.dumps(rule, sort_keys=True, default=str) for rule in include)

    spec = allow_policy_spec(settings)
    live = list(policy.include) if policy is not None else []
    differences = []
    if (policy is None) != (spec is None) or keys(live) != keys(spec.include if spec is not None else ()):
        name = a.allow_policy_name(settings.hostname)
        said = f"{name}: {_allowed(live)}" if policy is not None else f"no {name}"
        wanted = _allowed(spec.include) if spec is not None else "no allow policy"
        differences.append(f"{said} (the settings: {wanted})")
    detached = [policy_id for policy_id in policy_ids if policy_id not in app.policies]
    if detached:
        differences.append(f"reusable policies {', '.join(detached)} not attached")
    if app.session_duration is not None and app.session_duration != settings.access.session_duration:
        differences.append(f"session duration {app.session_duration} (the settings: "
                           f"{settings.access.session_duration})")
    return differences


def zone_candidates(hostname: str) -> list[str]:
    """Zone names that may hold ``hostname``: its 2-label apex first (as the seed), then longer suffixes."""
    labels = hostname.removeprefix("*.").split(".")
    return [".".join(labels[i:]) for i in range(len(labels) - 2, -1, -1)]


def in_zone(hostname: str, zone_name: str) -> bool:
    bare = hostname.removeprefix("*.")
    return bare == zone_name or bare.endswith("." + zone_name)


# --- hostname claims ---------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class RouteRef:
    """An enabled route as the claim index knows it; ordered by age (then namespace/name)."""

    created: str
    namespace: str
    name: str
    tenant: str = ""
    template: str = ""
    hostname: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


def route_ref(body: Mapping[str, Any]) -> RouteRef:
    meta = body["metadata"]
    annotations = meta.get("annotations") or {}
    return RouteRef(
        created=str(meta.get("creationTimestamp") or ""),
        namespace=str(meta.get("namespace") or ""),
        name=str(meta["name"]),
        tenant=annotations.get(a.TENANT, "").strip(),
        template=annotations.get(a.TEMPLATE, "").strip(),
        hostname=annotations.get(a.HOSTNAME, "").strip().rstrip(".").lower(),
    )


def claim_winner(claimants: list[RouteRef], holders: set[tuple[str, str]]) -> RouteRef:
    """Which route the door prefers for a hostname whose claim is free, when several ask for it: the one whose
    state says it published it (the oldest of those, if several), else the oldest route. Once claimed, the
    claim decides (:mod:`ledger`)."""
    holding = sorted(ref for ref in claimants if ref.key in holders)
    return holding[0] if holding else sorted(claimants)[0]
