"""In-memory state of the sandboxed Cloudflare account(s): one lock, plain dict stores."""

from __future__ import annotations

import copy
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .config import SandboxConfig, TokenSeed, ZoneSeed

PLAN_NAMES = {
    "free": "Free Website",
    "pro": "Pro Website",
    "business": "Business Website",
    "enterprise": "Enterprise Website",
}


def now_iso() -> str:
    """Cloudflare-style timestamp: RFC 3339, microseconds, ``Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def new_hex_id() -> str:
    return uuid.uuid4().hex


def new_uuid() -> str:
    return str(uuid.uuid4())


def public(obj: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of a stored object without its internal (``_``-prefixed) keys."""
    return {k: copy.deepcopy(v) for k, v in obj.items() if not k.startswith("_")}


@dataclass
class Tunnel:
    id: str
    account_id: str
    name: str
    config_src: str
    secret: str  # base64, never rendered except in create's token/credentials
    created_at: str
    deleted_at: str | None = None
    connections: list[dict[str, Any]] = field(default_factory=list)
    conns_active_at: str | None = None
    conns_inactive_at: str | None = None


@dataclass
class TunnelConfig:
    version: int
    config: dict[str, Any] | None
    created_at: str


@dataclass
class ZoneInfo:
    seed: ZoneSeed
    created_on: str

    @property
    def id(self) -> str:
        return self.seed.id

    @property
    def name(self) -> str:
        return self.seed.name

    @property
    def plan(self) -> str:
        return self.seed.plan

    @property
    def paid(self) -> bool:
        return self.seed.plan != "free"


class State:
    """Everything the emulator knows. Handlers run synchronously under ``lock``."""

    def __init__(self, cfg: SandboxConfig) -> None:
        self.lock = threading.RLock()
        started = now_iso()
        self.accounts = {a.id: a.name for a in cfg.accounts}
        self.zones = {z.id: ZoneInfo(seed=z, created_on=started) for z in cfg.zones}
        self.tokens: dict[str, TokenSeed] = {t.value: t for t in cfg.tokens}
        # global API keys by (email lower-cased, key): only ever X-Auth-Email + X-Auth-Key, never a Bearer token
        self.global_keys: dict[tuple[str, str], TokenSeed] = {
            (str(k.email).lower(), k.value): k for k in cfg.global_keys}
        self.tunnels: dict[str, Tunnel] = {}
        self.tunnel_configs: dict[str, TunnelConfig] = {}
        self.dns: dict[str, dict[str, dict[str, Any]]] = {z.id: {} for z in cfg.zones}
        self.apps: dict[str, dict[str, Any]] = {}
        self.policies: dict[str, dict[str, Any]] = {}
        self.idps: dict[str, dict[str, Any]] = {}
        self.service_tokens: dict[str, dict[str, Any]] = {}

    def zones_of(self, account_id: str) -> list[ZoneInfo]:
        return [z for z in self.zones.values() if z.seed.account_id == account_id]

    def snapshot(self) -> dict[str, Any]:
        """A JSON-able deep copy of the state; secrets are redacted. :mod:`.restore` loads it back."""
        with self.lock:
            return {
                "accounts": [{"id": i, "name": n} for i, n in self.accounts.items()],
                "zones": [
                    {"id": z.id, "name": z.name, "account_id": z.seed.account_id, "plan": z.plan}
                    for z in self.zones.values()
                ],
                "tunnels": {
                    t.id: {
                        "id": t.id,
                        "account_id": t.account_id,
                        "name": t.name,
                        "config_src": t.config_src,
                        "created_at": t.created_at,
                        "deleted_at": t.deleted_at,
                        "connections": copy.deepcopy(t.connections),
                        "tunnel_secret": "<redacted>",
                    }
                    for t in self.tunnels.values()
                },
                "tunnel_configs": {
                    tid: {"version": c.version, "config": copy.deepcopy(c.config), "created_at": c.created_at}
                    for tid, c in self.tunnel_configs.items()
                },
                "dns_records": {zid: [copy.deepcopy(r) for r in records.values()] for zid, records in self.dns.items()},
                "access_apps": {
                    k: public(v) | {"policy_links": copy.deepcopy(v["_links"]), "account_id": v["_account_id"]}
                    for k, v in self.apps.items()
                },
                "access_policies": {
                    k: public(v) | {"app_id": v["_app_id"], "account_id": v["_account_id"]}
                    for k, v in self.policies.items()
                },
                "identity_providers": {
                    k: public(v) | {"account_id": v["_account_id"]} for k, v in self.idps.items()
                },
                "service_tokens": {
                    k: public(v) | {"client_secret": "<redacted>", "account_id": v["_account_id"]}
                    for k, v in self.service_tokens.items()
                },
            }


def derived_plan_id(plan: str) -> str:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"chutes-sandbox:plan:{plan}").hex
