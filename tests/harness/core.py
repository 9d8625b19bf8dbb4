"""Helpers for the tests of the Cloudflare core: cores with a given policy on one emulator, the proofs a
door's ledger would give (intents, recorded ids, rule predicates), a gateway-like publish, and metric
samples."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import REGISTRY

from chutes.cloudflare_core import (
    AccessApp,
    AccessAppSpec,
    AppPolicySpec,
    CloudflareCore,
    DesiredRecord,
    DnsRecord,
    IngressRule,
    Policy,
    Recorded,
    RequestBudget,
    RulePredicate,
    ServiceToken,
    Tunnel,
)
from chutes.sandbox.cloudflare import CloudflareSandbox

OWNER = "test"
ZONE = "example.com"
EVERYONE = ({"email_domain": {"domain": "example.com"}},)
TOKEN_DURATION = "8760h"


def now(offset: float = 0.0) -> str:
    """ISO 8601 UTC, `offset` seconds from now (as a ledger records the time of an intent)."""
    return (datetime.now(UTC) + timedelta(seconds=offset)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def intent() -> Recorded:
    """The ledger's record of the intent to create an object, made just now (before the create)."""
    return Recorded(since=now())


def rules_at(*keys: str | tuple[str, str | None]) -> RulePredicate:
    """A door's proof for tunnel rules: the rules at these keys are its own (a bare hostname: the rule
    without a path; else (hostname, path)); every other rule is someone else's."""
    owned = {(key, None) if isinstance(key, str) else key for key in keys}

    def owns(rule: Mapping[str, Any]) -> bool:
        return (str(rule.get("hostname") or "").lower(), rule.get("path") or None) in owned

    return owns


@contextlib.asynccontextmanager
async def core_with(
    sandbox: CloudflareSandbox, *, policy: str = "sync", dry_run: bool = False, owner_id: str = OWNER,
    resync_interval: float = 300.0,
) -> AsyncIterator[CloudflareCore]:
    async with CloudflareCore(
        sandbox.token,
        sandbox.base_url,
        owner_id=owner_id,
        budget=RequestBudget(),
        backoff=0.01,
        policy=policy,
        dry_run=dry_run,
        resync_interval=resync_interval,
    ) as core:
        yield core


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def skipped(reason: str, obj: str, change: str) -> float:
    return sample("chutes_cloudflare_changes_skipped_total", reason=reason, object=obj, change=change)


def repairs(front_door: str, obj: str) -> float:
    return sample("chutes_drift_repairs_total", front_door=front_door, object=obj)


def writes(sandbox: CloudflareSandbox) -> list[str]:
    """The operations of every request the emulator saw that was not a GET."""
    return [f"{r.method} {r.op}" for r in sandbox.requests if r.method != "GET"]


@dataclass(frozen=True)
class Site:
    """What a gateway-like publish of `name` wants: a tunnel, its rule, an Access app and policy, a
    service token and a proxied CNAME."""

    name: str
    service: str = "http://web.ns.svc:80"
    session: str = "24h"
    emails: tuple[str, ...] = ("a@example.com",)
    adopt: bool = False

    @property
    def hostname(self) -> str:
        return f"{self.name}.{ZONE}"

    @property
    def cloudflare_name(self) -> str:
        return f"chute-ns-{self.name}"

    def app(self) -> AccessAppSpec:
        return AccessAppSpec(self.cloudflare_name, self.hostname, session_duration=self.session, adopt=self.adopt)

    def policy(self) -> AppPolicySpec:
        return AppPolicySpec("allow", include=tuple({"email": {"email": e}} for e in self.emails))

    def rule(self) -> IngressRule:
        return IngressRule(self.hostname, self.service)

    def record(self, tunnel_id: str) -> DesiredRecord:
        return DesiredRecord(
            self.hostname, "CNAME", f"{tunnel_id}.cfargotunnel.com", source=f"ChuteGateway/ns/{self.name}",
            adopt=self.adopt,
        )


@dataclass
class Ledger:
    """What a door's claims record for a site: when it intended to create its objects (before creating
    them), each object's id once made, and the tunnel its rule was written to."""

    since: str = field(default_factory=now)
    ids: dict[str, str] = field(default_factory=dict)

    def recorded(self, obj: str) -> Recorded:
        return Recorded(id=self.ids.get(obj), since=self.since)

    def owns_rule(self, tunnel_id: str) -> RulePredicate:
        """A rule at the site's hostname is ours only when the ledger recorded writing it to `tunnel_id`
        before (an earlier publish), and it has no path."""
        known = self.ids.get("tunnel_rule") == tunnel_id
        return lambda rule: known and not rule.get("path")


@dataclass(frozen=True)
class Published:
    tunnel: Tunnel
    app: AccessApp
    policy: Policy
    record: DnsRecord
    token: ServiceToken
    tunnel_token: str
    ledger: Ledger


async def publish(
    core: CloudflareCore, sandbox: CloudflareSandbox, site: Site, ledger: Ledger | None = None
) -> Published:
    """Every step a gateway publish makes, in its order (a DryRunStop or Conflict comes out as is), proven
    by `ledger` (an earlier publish's: `Published.ledger`; none: a first publish) and recorded in it."""
    account, zone = sandbox.account_id, sandbox.zone_id(ZONE)
    ledger = ledger if ledger is not None else Ledger()
    await core.check_dns_name_available(zone, site.hostname, f"ChuteGateway/ns/{site.name}", adopt=site.adopt)
    tunnel = await core.ensure_tunnel(account, site.cloudflare_name, ledger.recorded("tunnel"))
    ledger.ids["tunnel"] = tunnel.id
    app = await core.ensure_access_app(account, site.app(), ledger.recorded("access_app"))
    ledger.ids["access_app"] = app.id
    policy = await core.ensure_app_policy(account, app.id, site.policy())
    token = await core.ensure_service_token(account, site.cloudflare_name, TOKEN_DURATION,
                                            ledger.recorded("service_token"))
    ledger.ids["service_token"] = token.id
    await core.set_ingress_rule(account, tunnel.id, site.rule(), ledger.owns_rule(tunnel.id))
    ledger.ids["tunnel_rule"] = tunnel.id
    record = await core.ensure_dns_record(zone, site.record(tunnel.id))
    tunnel_token = await core.get_tunnel_token(account, tunnel.id)
    return Published(tunnel, app, policy, record, token, tunnel_token, ledger)


async def unpublish(core: CloudflareCore, sandbox: CloudflareSandbox, site: Site, done: Published) -> None:
    """Every delete a gateway teardown makes, each proven by the publish's ledger and the names it recorded."""
    account, zone = sandbox.account_id, sandbox.zone_id(ZONE)
    await core.delete_dns_record(zone, site.hostname, "CNAME", f"ChuteGateway/ns/{site.name}")
    await core.remove_ingress_rule(account, done.tunnel.id, site.hostname, None, done.ledger.owns_rule(done.tunnel.id))
    await core.delete_app_policy(account, done.app.id, done.policy.id)
    await core.delete_access_app(account, done.app.id, site.hostname, site.cloudflare_name)
    await core.delete_service_token(account, done.token.id, site.cloudflare_name)
    await core.delete_tunnel(account, done.tunnel.id, site.cloudflare_name, connected_ok=True)


def cloudflare_state(sandbox: CloudflareSandbox) -> dict[str, Any]:
    """The emulator's objects, without the timestamps a read never changes anyway."""
    snapshot = sandbox.snapshot()
    return {key: snapshot[key] for key in ("tunnels", "tunnel_configs", "dns_records", "access_apps",
                                           "access_policies", "identity_providers", "service_tokens")}


def live(sandbox: CloudflareSandbox, kind: str) -> list[dict[str, Any]]:
    """Objects of `kind` the emulator holds (tunnels: not soft-deleted)."""
    items = list(sandbox.snapshot()[kind].values())
    return [item for item in items if not item.get("deleted_at")]


def records(sandbox: CloudflareSandbox, name: str | None = None) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = sandbox.snapshot()["dns_records"][sandbox.zone_id(ZONE)]
    return [r for r in found if name is None or r["name"] == name]


def ingress(sandbox: CloudflareSandbox, tunnel_id: str) -> list[dict[str, Any]]:
    config = sandbox.snapshot()["tunnel_configs"].get(tunnel_id) or {}
    rules: list[dict[str, Any]] = (config.get("config") or {}).get("ingress") or []
    return rules
