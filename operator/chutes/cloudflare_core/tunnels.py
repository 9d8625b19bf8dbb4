"""Remotely-managed Cloudflare Tunnels: find-or-create by name, token, delete."""

from __future__ import annotations

import logging
from typing import Any

from .client import CloudflareClient, to_wire
from .errors import CloudflareError, Conflict, InvalidInput, NotFound
from .models import Tunnel

__all__ = ["delete_tunnel", "ensure_tunnel", "find_tunnel", "get_tunnel", "get_tunnel_token", "list_tunnels"]

log = logging.getLogger(__name__)
TUNNELS_PER_PAGE = 1000


def tunnel_from_wire(data: dict[str, Any], account_id: str) -> Tunnel:
    return Tunnel(
        id=str(data.get("id") or ""),
        name=str(data.get("name") or ""),
        account_id=str(data.get("account_tag") or account_id),
        deleted=bool(data.get("deleted_at")),
    )


async def find_tunnel(client: CloudflareClient, account_id: str, name: str) -> Tunnel | None:
    """The live (not deleted) tunnel named exactly `name`, or None."""
    items = await client.list_all(
        "tunnels.list",
        client.sdk.zero_trust.tunnels.cloudflared.list,
        account_id=account_id,
        name=name,
        is_deleted=False,
        per_page=TUNNELS_PER_PAGE,
    )
    for item in items:
        tunnel = tunnel_from_wire(item, account_id)
        if tunnel.name == name and not tunnel.deleted:
            return tunnel
    return None


async def ensure_tunnel(client: CloudflareClient, account_id: str, name: str) -> Tunnel:
    """The live tunnel named `name`, adopted when it exists, else created (config_src=cloudflare)."""
    found = await find_tunnel(client, account_id, name)
    if found is not None:
        return found
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
        found = await find_tunnel(client, account_id, name)
        if found is None:
            raise
        log.info("Adopted tunnel %s (%s) after a create conflict", name, found.id)
        return found
    log.info("Created tunnel %s", name)
    return tunnel_from_wire(to_wire(created), account_id)


async def get_tunnel(client: CloudflareClient, account_id: str, tunnel_id: str) -> Tunnel | None:
    """The tunnel (possibly soft-deleted, see `.deleted`), or None when Cloudflare has no such id."""
    try:
        result = await client.call(
            "tunnels.get", client.sdk.zero_trust.tunnels.cloudflared.get, tunnel_id, account_id=account_id
        )
    except NotFound:
        return None
    return tunnel_from_wire(to_wire(result), account_id)


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


async def delete_tunnel(client: CloudflareClient, account_id: str, tunnel_id: str) -> None:
    """Delete the tunnel and its connections (cascade); a missing or deleted tunnel is fine (and so is
    one the write policy or dry-run keeps)."""
    try:
        await client.delete("tunnels.delete", "tunnel", tunnel_id, client.sdk.zero_trust.tunnels.cloudflared.delete,
                            tunnel_id, account_id=account_id, extra_query={"cascade": "true"})
    except (Conflict, InvalidInput):
        # Refused: fine if it is already deleted (soft-deleted tunnels keep `deleted_at`).
        current = await get_tunnel(client, account_id, tunnel_id)
        if current is None or current.deleted:
            return
        raise
    log.info("Deleted tunnel %s", tunnel_id)


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
