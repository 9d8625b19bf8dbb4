"""Seed configuration of the Cloudflare sandbox: accounts, zones, API tokens, rate limit.

A seed YAML file looks like::

    prefix: /client/v4              # optional, the API path prefix
    accounts:
      - name: Example Account       # id: optional 32-hex, else derived from the name
        tunnels:                    # optional pre-existing ("foreign") tunnels
          - {name: legacy, config_src: cloudflare}
    zones:
      - name: example.com
        plan: free                  # free | pro | business | enterprise
        record_quota: 20000         # optional: DNS records it may hold (default 200 free, 3,500 paid;
                                    # Cloudflare raises it for Enterprise zones on request)
        account: Example Account    # account name or id; default: the first account
        records:                    # optional pre-existing ("foreign") DNS records
          - {name: www.example.com, type: A, content: 192.0.2.10, proxied: true}
    tokens:                         # optional; the first one is ``sandbox.token``
      - name: ci
        value: secret-value         # optional, generated when absent
        accounts: [Example Account] # optional restriction (names or ids)
        zones: [example.com]        # optional restriction (names or ids)
    global_keys:                    # optional: global API keys, sent as X-Auth-Key with X-Auth-Email
      - name: legacy
        email: admin@example.com
        key: 0123...                # optional, generated when absent (37 lowercase hex digits)
        accounts: [Example Account] # optional restriction, as for tokens (the user's memberships)
    rate_limit: {requests: 1200, period: 300}
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PLANS = ("free", "pro", "business", "enterprise")


def derived_id(kind: str, name: str) -> str:
    """A stable 32-hex identifier (Cloudflare's account/zone id shape) derived from a name."""
    return hashlib.md5(f"chutes-sandbox:{kind}:{name}".encode()).hexdigest()


def new_api_token() -> str:
    """A random 40-character API token like Cloudflare's."""
    return secrets.token_urlsafe(30)[:40]


def new_global_key() -> str:
    """A random global API key like Cloudflare's: 37 lowercase hex digits."""
    return secrets.token_hex(19)[:37]


@dataclass(frozen=True)
class AccountSeed:
    id: str
    name: str
    tunnels: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class ZoneSeed:
    id: str
    name: str
    account_id: str
    plan: str = "free"
    records: tuple[dict[str, Any], ...] = ()
    record_quota: int | None = None  # None: Cloudflare's default for the plan


@dataclass(frozen=True)
class TokenSeed:
    """An API token, or (with `email`) a global API key: the key is `value`, sent with the email."""

    name: str
    value: str
    accounts: frozenset[str] | None = None  # account ids; None: every account
    zones: frozenset[str] | None = None  # zone ids; None: every zone
    email: str | None = None  # a global API key's account email; None: an API token

    def allows_account(self, account_id: str) -> bool:
        return self.accounts is None or account_id in self.accounts

    def allows_zone(self, zone_id: str, account_id: str) -> bool:
        zone_ok = self.zones is None or zone_id in self.zones
        return zone_ok and self.allows_account(account_id)


@dataclass(frozen=True)
class RateLimitSettings:
    requests: int = 1200
    period: float = 300.0


@dataclass
class SandboxConfig:
    accounts: list[AccountSeed]
    zones: list[ZoneSeed]
    tokens: list[TokenSeed]
    rate_limit: RateLimitSettings = field(default_factory=RateLimitSettings)
    prefix: str = "/client/v4"
    global_keys: list[TokenSeed] = field(default_factory=list)

    @classmethod
    def default(cls) -> SandboxConfig:
        """One account, zones example.com (free) and example.net (pro), one unrestricted token."""
        return cls.from_dict({})

    @classmethod
    def from_yaml(cls, path: str | Path) -> SandboxConfig:
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: the seed must be a mapping")
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SandboxConfig:
        raw_accounts = data.get("accounts") or [{"name": "Sandbox Account"}]
        accounts = [
            AccountSeed(
                id=_check_hex_id(a.get("id") or derived_id("account", a["name"])),
                name=str(a["name"]),
                tunnels=tuple(a.get("tunnels") or ()),
            )
            for a in raw_accounts
        ]
        by_account = {a.name: a.id for a in accounts} | {a.id: a.id for a in accounts}
        raw_zones = data.get("zones")
        if raw_zones is None:
            raw_zones = [{"name": "example.com", "plan": "free"}, {"name": "example.net", "plan": "pro"}]
        zones = []
        for z in raw_zones:
            plan = str(z.get("plan", "free")).lower()
            if plan not in PLANS:
                raise ValueError(f"zone {z['name']}: unknown plan {plan!r} (one of {', '.join(PLANS)})")
            account_ref = z.get("account", accounts[0].id)
            if account_ref not in by_account:
                raise ValueError(f"zone {z['name']}: unknown account {account_ref!r}")
            name = str(z["name"]).lower().rstrip(".")
            zones.append(
                ZoneSeed(
                    id=_check_hex_id(z.get("id") or derived_id("zone", name)),
                    name=name,
                    account_id=by_account[account_ref],
                    plan=plan,
                    records=tuple(z.get("records") or ()),
                    record_quota=None if z.get("record_quota") is None else int(z["record_quota"]),
                )
            )
        by_zone = {z.name: z.id for z in zones} | {z.id: z.id for z in zones}
        raw_tokens = data.get("tokens") or [{"name": "default"}]
        tokens = []
        for t in raw_tokens:
            accounts_ref = t.get("accounts")
            zones_ref = t.get("zones")
            tokens.append(
                TokenSeed(
                    name=str(t["name"]),
                    value=str(t.get("value") or new_api_token()),
                    accounts=None if accounts_ref is None else frozenset(_lookup(by_account, accounts_ref)),
                    zones=None if zones_ref is None else frozenset(_lookup(by_zone, zones_ref)),
                )
            )
        global_keys = [
            TokenSeed(
                name=str(k["name"]),
                value=str(k.get("key") or new_global_key()),
                accounts=None if k.get("accounts") is None else frozenset(_lookup(by_account, k["accounts"])),
                zones=None if k.get("zones") is None else frozenset(_lookup(by_zone, k["zones"])),
                email=str(k["email"]),
            )
            for k in data.get("global_keys") or []
        ]
        limits = data.get("rate_limit") or {}
        return cls(
            accounts=accounts,
            zones=zones,
            tokens=tokens,
            global_keys=global_keys,
            rate_limit=RateLimitSettings(
                requests=int(limits.get("requests", 1200)), period=float(limits.get("period", 300.0))
            ),
            prefix=_normalise_prefix(str(data.get("prefix", "/client/v4"))),
        )


def _normalise_prefix(raw: str) -> str:
    stripped = raw.strip("/")
    return f"/{stripped}" if stripped else ""


def _lookup(index: dict[str, str], refs: list[str]) -> list[str]:
    unknown = [r for r in refs if r not in index]
    if unknown:
        raise ValueError(f"token restriction names unknown objects: {unknown}")
    return [index[r] for r in refs]


def _check_hex_id(value: str) -> str:
    value = str(value)
    if len(value) != 32 or any(c not in "0123456789abcdef" for c in value):
        raise ValueError(f"{value!r} is not a 32-character lowercase hex id")
    return value
