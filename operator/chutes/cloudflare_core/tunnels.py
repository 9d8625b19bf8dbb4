"""Remotely-managed Cloudflare Tunnels: find-or-create by name, token, delete.

A tunnel carries no marker of ours: it is ours only when the ledger says so (`Recorded`: its id, or the
intent to create it and a `created_at` after it). A tunnel found under the name that the record does
not cover is a `Conflict` and stays as it is; a delete looks the tunnel up first and refuses one named
otherwise, or one with active connections unless the caller says connections may go. Lookups (by name
before a create, by id before a delete) are answered by the account's `TunnelLookup`: a listing begun
after the question, shared by every question asked meanwhile.
"""

from __future__ import annotations

import logging
from typing import Any

from .client import CloudflareClient, to_wire
from .errors import CloudflareError, Conflict, InvalidInput
from .models import Recorded, Tunnel
from .proofs import covered, require_intent, unrecorded
from .tunnel_lookup import TUNNELS_PER_PAGE, TunnelLookup, tunnel_from_wire

__all__ = ["delete_tunnel", "ensure_tunnel", "get_tunnel", "get_tunnel_token", "list_tunnels"]

log = logging.getLogger(__name__)


def _proven(tunnel: Tunnel, recorded: Recorded) -> Tunnel:
    """`tunnel` when `recorded` covers it, else Conflict."""
    if covered([tunnel], recorded, _identity, f"tunnel {tunnel.name}") is not None:
        return tunnel
    raise unrecorded(f"tunnel {tunnel.name} ({tunnel.id})", recorded)


def _identity(tunnel: Tunnel) -> tuple[str, str | None]:
    return tunnel.id, tunnel.created_at


async def ensure_tunnel(client: CloudflareClient, lookup: TunnelLookup, account_id: str, name: str,
                        recorded: Recorded) -> Tunnel:
    """The live tunnel named `name` (found through `lookup`, the account's), created when absent
    (config_src=cloudflare). An existing tunnel must be the one `recorded` proves ours (else Conflict); a create
    needs `recorded.since`."""
    found = await lookup.find(name)
    if found is not None:
        return _proven(found, recorded)
    require_intent(recorded, f"tunnel {name}")
    client.gate.allows("create", "tunnel", name, needed=True)
    try:
        created = await client.call(
            "tunnels.create",
            client.sdk.zero_trust.tunnels.cloudflared.create,
            account_id=account_id,
            name=name,
            config_src="cloudflare",
        )
    except Conflict:
        # 409/1013: taken meanwhile, or our own create replayed after a dropped connection.
        found = await lookup.find(name)
        if found is None:
            raise
        found = _proven(found, recorded)
        log.info("Adopted tunnel %s (%s) after a create conflict", name, found.id)
        return found
    log.info("Created tunnel %s", name)
    return tunnel_from_wire(to_wire(created), account_id)


async def get_tunnel(client: CloudflareClient, account_id: str, tunnel_id: str) -> Tunnel | None:
    """The tunnel (possibly soft-deleted, see `.deleted`), or None when Cloudflare has no such id."""
    found = await client.get("tunnels.get", client.sdk.zero_trust.tunnels.cloudflared.get, tunnel_id,
                             account_id=account_id)
    return tunnel_from_wire(found, account_id) if found is not None else None


async def get_tunnel_token(client: CloudflareClient, account_id: str, tunnel_id: str) -> str:
    """The connector token for `cloudflared tunnel run --token` (a secret: never log it)."""
    token = await client.call(
        "tunnels.token",
        client.sdk.zero_trust.tunnels.cloudflared.token.get,
        tunnel_id,
        account_id=account_id,
    )
    if not isinstance(token, str) or not token:
        raise CloudflareError(f"Cloudflare returned no token for tunnel {tunnel_id}")
    return token


async def delete_tunnel(
    client: CloudflareClient, lookup: TunnelLookup, account_id: str, tunnel_id: str, name: str, *,
    connected_ok: bool
) -> None:
    """Delete tunnel `tunnel_id`; a missing or deleted tunnel is fine (and so is one the write policy or
    dry-run keeps). The tunnel is looked up first (`lookup`: a listing of the tunnels named `name` begun after
    the call; read by id when it is not among them): one named otherwise than `name` (the name this
    installation recorded for it) is a Conflict, and so is one with active connections unless `connected_ok`
    (only then are they deleted with it: ``cascade``)."""
    current = await lookup.live(tunnel_id, name)
    if current is None:  # deleted, unknown, or renamed since: a read by id tells which
        current = await get_tunnel(client, account_id, tunnel_id)
    if current is None or current.deleted:
        return
    label = f"tunnel {current.name!r} ({tunnel_id})"
    if current.name != name:
        raise Conflict(f"{label} is not the tunnel {name!r} this installation recorded: left untouched")
    if current.connected and not connected_ok:
        raise Conflict(f"{label} has active connections: left untouched")
    await _delete(client, account_id, tunnel_id, cascade=connected_ok)


async def _delete(client: CloudflareClient, account_id: str, tunnel_id: str, *, cascade: bool) -> None:
    try:
        deleted = await client.delete("tunnels.delete", "tunnel", tunnel_id,
                                      client.sdk.zero_trust.tunnels.cloudflared.delete, tunnel_id,
                                      account_id=account_id, extra_query={"cascade": "true"} if cascade else None)
    except (Conflict, InvalidInput):
        # Refused: fine if it is already deleted (soft-deleted tunnels keep `deleted_at`).
        current = await get_tunnel(client, account_id, tunnel_id)
        if current is None or current.deleted:
            return
        if current.connected and not cascade:
            raise Conflict(f"tunnel {current.name!r} ({tunnel_id}) has active connections: left untouched") from None
        raise
    if deleted:
        log.info("Deleted tunnel %s%s", tunnel_id, " (cascade)" if cascade else "")


async def list_tunnels(client: CloudflareClient, account_id: str, prefix: str | None = None) -> list[Tunnel]:
    """Live tunnels of the account, optionally only those whose name starts with `prefix`."""
    params: dict[str, Any] = {"account_id": account_id, "is_deleted": False}
    if prefix:
        params["include_prefix"] = prefix
    items = await client.list_all(
        "tunnels.list", client.sdk.zero_trust.tunnels.cloudflared.list, per_page=TUNNELS_PER_PAGE, **params
    )
    tunnels = [tunnel_from_wire(item, account_id) for item in items]
    return [t for t in tunnels if not t.deleted and (not prefix or t.name.startswith(prefix))]
