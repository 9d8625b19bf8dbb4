"""What the Cloudflare sandbox must hold before ``chutes plan`` runs the operator on some manifests.

From the manifests: the API tokens their Secrets hold (accepted by the sandbox, never printed), the
accounts and zones they name (a ChuteConfig's ``accountId``/``zoneId``/``domain``, a tenant's
``accountId``/``zoneId`` and the zones of its routes' hostnames), and the objects they expect to exist
already: a tenant's shared tunnel and the reusable Access policies routes name. Those are *assumed*: added
to the starting state (so not planned) when the saved state does not have them, and listed in the plan.

The session door (``--sessions-env``) adds its token, and assumes its zone (``CF_ZONE_ID``, named ``DOMAIN``) and
its shared tunnel (``CF_TUNNEL_ID``, in the zone's account) exist.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from chutes.frontdoors.sessions.config import SessionConfig
from chutes.sandbox.cloudflare import SandboxConfig
from chutes.sandbox.cloudflare.config import derived_id

HTTPROUTES = "cfzt.cloudflare.com/"
NOW = "1970-01-01T00:00:00.000000Z"


@dataclass
class Seed:
    config: SandboxConfig
    assumed: dict[str, Any] = field(default_factory=dict)  # a snapshot fragment (restore format)
    notes: list[str] = field(default_factory=list)  # what was assumed, for the plan's output


def _secret_value(docs: Sequence[Mapping[str, Any]], namespace: str, name: str, key: str) -> str | None:
    for doc in docs:
        meta = doc.get("metadata") or {}
        if doc.get("kind") != "Secret" or meta.get("name") != name or (meta.get("namespace") or "default") != namespace:
            continue
        if key in (doc.get("stringData") or {}):
            return str(doc["stringData"][key])
        raw = (doc.get("data") or {}).get(key)
        if raw is not None:
            try:
                return base64.b64decode(str(raw)).decode()
            except (binascii.Error, UnicodeDecodeError):
                return None
    return None


def _of(docs: Iterable[Mapping[str, Any]], kind: str) -> list[Mapping[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def _route_hostnames(route: Mapping[str, Any]) -> list[str]:
    annotations = (route.get("metadata") or {}).get("annotations") or {}
    if str(annotations.get(HTTPROUTES + "enabled", "")).lower() != "true":
        return []
    if annotations.get(HTTPROUTES + "hostname"):
        return [str(annotations[HTTPROUTES + "hostname"]).lower().rstrip(".")]
    return [str(h).lower() for h in (route.get("spec") or {}).get("hostnames") or ()][:1]


def _policy_names(docs: Sequence[Mapping[str, Any]]) -> list[str]:
    names: list[str] = []
    for template in _of(docs, "CloudflareZeroTrustTemplate"):
        names += ((template.get("spec") or {}).get("accessApplication") or {}).get("existingPolicyNames") or []
    for route in _of(docs, "HTTPRoute"):
        raw = ((route.get("metadata") or {}).get("annotations") or {}).get(HTTPROUTES + "access.existingPolicyNames")
        names += [part.strip() for part in str(raw or "").split(",") if part.strip()]
    return sorted(set(map(str, names)))


def _covers(zone: str, hostname: str) -> bool:
    bare = hostname[2:] if hostname.startswith("*.") else hostname
    return bare == zone or bare.endswith("." + zone)


def seed(docs: Sequence[Mapping[str, Any]], state: Mapping[str, Any] | None = None,
         session: SessionConfig | None = None) -> Seed:
    """The sandbox seed and the assumed objects for these manifests (and the session door's configuration, when
    planned) on top of ``state`` (a snapshot)."""
    state = state or {}
    accounts: dict[str, str] = {a["id"]: a.get("name") or a["id"] for a in state.get("accounts") or ()}
    zones: dict[str, dict[str, str]] = {z["id"]: dict(z) for z in state.get("zones") or ()}
    tokens: list[str] = []

    def account(account_id: Any) -> str | None:
        if not isinstance(account_id, str) or len(account_id) != 32:
            return None  # the operator reports it; the sandbox only takes 32-hex ids
        accounts.setdefault(account_id, "Sandbox Account" if account_id == derived_id("account", "Sandbox Account")
                            else f"account-{account_id[:8]}")
        return account_id

    def zone(zone_id: Any, name: str, account_id: str) -> None:
        zone_id = zone_id if isinstance(zone_id, str) and len(zone_id) == 32 else derived_id("zone", name)
        if zone_id not in zones and not any(z["name"] == name and z["account_id"] == account_id
                                            for z in zones.values()):
            zones[zone_id] = {"id": zone_id, "name": name, "account_id": account_id, "plan": "free"}

    for config in _of(docs, "ChuteConfig"):
        spec = config.get("spec") or {}
        ref = spec.get("apiTokenSecretRef") or {}
        token = _secret_value(docs, ref.get("namespace") or "default", ref.get("name", ""), ref.get("key", ""))
        tokens += [token] if token else []
        account_id = account(spec.get("accountId"))
        if account_id and spec.get("domain"):
            zone(spec.get("zoneId"), str(spec["domain"]).lower().rstrip("."), account_id)

    assumed: dict[str, Any] = {"tunnels": {}, "tunnel_configs": {}, "access_policies": {}}
    notes: list[str] = []
    policy_names = _policy_names(docs)
    tenant_accounts: set[str] = set()
    for tenant in _of(docs, "CloudflareZeroTrustTenant"):
        meta, spec = tenant.get("metadata") or {}, tenant.get("spec") or {}
        ref = spec.get("credentialRef") or {}
        token = _secret_value(docs, meta.get("namespace") or "default", ref.get("name", ""), ref.get("key", ""))
        tokens += [token] if token else []
        account_id = account(spec.get("accountId"))
        if account_id is None:
            continue
        tenant_accounts.add(account_id)
        routes = [r for r in _of(docs, "HTTPRoute")
                  if ((r.get("metadata") or {}).get("annotations") or {}).get(HTTPROUTES + "tenant")
                  == meta.get("name")]
        for hostname in (h for r in routes for h in _route_hostnames(r)):
            if not any(_covers(z["name"], hostname) for z in zones.values() if z["account_id"] == account_id):
                zone(spec.get("zoneId"), ".".join(hostname.split(".")[-2:]), account_id)
        tunnel_id = spec.get("tunnelId")
        if isinstance(tunnel_id, str) and tunnel_id and tunnel_id not in (state.get("tunnels") or {}):
            assumed["tunnels"][tunnel_id] = {"id": tunnel_id, "account_id": account_id,
                                             "name": f"tenant-{meta['name']}", "config_src": "cloudflare",
                                             "created_at": NOW, "deleted_at": None}
            notes.append(f"tunnel {tunnel_id} (tenant {meta.get('namespace')}/{meta.get('name')})")
    if session is not None:
        tokens.append(session.api_token)
        zone_of = zones.get(session.zone_id)
        if zone_of is None:
            owner = next(iter(accounts)) if len(accounts) == 1 else account(derived_id("account", "Sandbox Account"))
            zone_of = zones[session.zone_id] = {"id": session.zone_id, "name": session.domain, "account_id": str(owner),
                                                "plan": "free"}
            notes.append(f"zone {session.domain} ({session.zone_id}) (the session door's CF_ZONE_ID)")
        tunnel_id = session.tunnel_id
        if tunnel_id not in (state.get("tunnels") or {}) and tunnel_id not in assumed["tunnels"]:
            assumed["tunnels"][tunnel_id] = {"id": tunnel_id, "account_id": zone_of["account_id"],
                                             "name": "sessions", "config_src": "cloudflare", "created_at": NOW,
                                             "deleted_at": None}
            notes.append(f"tunnel {tunnel_id} (the session door's CF_TUNNEL_ID)")
    existing = {(p.get("account_id"), p["name"]) for p in (state.get("access_policies") or {}).values()
                if p.get("app_id") is None}
    for account_id in sorted(tenant_accounts):
        for name in policy_names:
            if (account_id, name) in existing:
                continue
            policy_id = derived_id("policy", f"{account_id}/{name}")
            policy_uuid = f"{policy_id[:8]}-{policy_id[8:12]}-{policy_id[12:16]}-{policy_id[16:20]}-{policy_id[20:]}"
            assumed["access_policies"][policy_uuid] = {
                "id": policy_uuid, "account_id": account_id, "app_id": None, "name": name, "decision": "allow",
                "include": [{"everyone": {}}], "exclude": [], "require": [], "session_duration": "24h",
                "approval_groups": [], "approval_required": False, "isolation_required": False,
                "purpose_justification_required": False, "created_at": NOW, "updated_at": NOW,
            }
            notes.append(f"reusable Access policy {name!r} (account {account_id})")

    sandbox = SandboxConfig.from_dict({
        "accounts": [{"id": i, "name": n} for i, n in accounts.items()] or None,
        "zones": [{"id": z["id"], "name": z["name"], "account": z["account_id"], "plan": z.get("plan", "free")}
                  for z in zones.values()] or None,
        "tokens": [{"name": f"manifest-{n}", "value": v} for n, v in enumerate(dict.fromkeys(tokens), 1)] or None,
    })
    return Seed(sandbox, {k: v for k, v in assumed.items() if v}, notes)
