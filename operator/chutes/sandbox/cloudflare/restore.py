"""Load a :meth:`State.snapshot` back into a running sandbox (``chutes plan --cloudflare-state``).

Accounts and zones missing from the seed are added; every tunnel, configuration, DNS record, Access
application, policy, identity provider and service token of the snapshot replaces the object with its
id. Secrets are not in a snapshot: tunnels get a fresh tunnel secret and service tokens a fresh client
secret (so a restored sandbox never returns the real ones). API tokens come from the seed, not from here.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import secrets
from collections.abc import Mapping
from typing import Any

from .config import ZoneSeed
from .state import State, Tunnel, TunnelConfig, ZoneInfo, now_iso

SECTIONS = ("accounts", "zones", "tunnels", "tunnel_configs", "dns_records", "access_apps", "access_policies",
            "identity_providers", "service_tokens")


class SnapshotError(ValueError):
    """The snapshot is not one the sandbox wrote."""


def _plain(obj: Mapping[str, Any], *drop: str) -> dict[str, Any]:
    return {k: copy.deepcopy(v) for k, v in obj.items() if k not in drop}


def restore(state: State, snapshot: Mapping[str, Any]) -> None:
    """Merge ``snapshot`` into ``state`` (objects keep their ids)."""
    if not isinstance(snapshot, Mapping) or not any(key in snapshot for key in SECTIONS):
        raise SnapshotError("not a Cloudflare sandbox snapshot (expected keys such as 'tunnels', 'dns_records')")
    try:
        with state.lock:
            _restore(state, snapshot)
    except (KeyError, TypeError, AttributeError) as exc:
        raise SnapshotError(f"malformed Cloudflare sandbox snapshot: {type(exc).__name__} {exc}") from None


def _restore(state: State, snap: Mapping[str, Any]) -> None:
    for account in snap.get("accounts") or ():
        state.accounts.setdefault(str(account["id"]), str(account.get("name") or account["id"]))
    for zone in snap.get("zones") or ():
        if zone["id"] not in state.zones:
            seed = ZoneSeed(id=zone["id"], name=zone["name"], account_id=zone["account_id"],
                            plan=zone.get("plan", "free"))
            state.zones[seed.id] = ZoneInfo(seed=seed, created_on=now_iso())
            state.dns.setdefault(seed.id, {})
    for tunnel in (snap.get("tunnels") or {}).values():
        state.tunnels[tunnel["id"]] = Tunnel(
            id=tunnel["id"], account_id=tunnel["account_id"], name=tunnel["name"], config_src=tunnel["config_src"],
            secret=base64.b64encode(secrets.token_bytes(32)).decode(), created_at=tunnel["created_at"],
            deleted_at=tunnel.get("deleted_at"), connections=copy.deepcopy(tunnel.get("connections") or []),
        )
    for tunnel_id, config in (snap.get("tunnel_configs") or {}).items():
        state.tunnel_configs[tunnel_id] = TunnelConfig(int(config["version"]), copy.deepcopy(config["config"]),
                                                       config["created_at"])
    for zone_id, records in (snap.get("dns_records") or {}).items():
        store = state.dns.setdefault(zone_id, {})
        for record in records:
            store[record["id"]] = copy.deepcopy(record)
    for app in (snap.get("access_apps") or {}).values():
        state.apps[app["id"]] = _plain(app, "policy_links", "account_id", "policies") | {
            "_account_id": app["account_id"], "_links": copy.deepcopy(app.get("policy_links") or [])}
    for policy in (snap.get("access_policies") or {}).values():
        state.policies[policy["id"]] = _plain(policy, "app_id", "account_id") | {
            "_account_id": policy["account_id"], "_app_id": policy.get("app_id")}
    for idp in (snap.get("identity_providers") or {}).values():
        state.idps[idp["id"]] = _plain(idp, "account_id") | {"_account_id": idp["account_id"]}
    for token in (snap.get("service_tokens") or {}).values():
        state.service_tokens[token["id"]] = _plain(token, "client_secret", "account_id") | {
            "_account_id": token["account_id"],
            "_secret_sha256": hashlib.sha256(secrets.token_hex(32).encode()).hexdigest(),
        }
