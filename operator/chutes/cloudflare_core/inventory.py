"""Whole-account listings for the orphan sweep: every service token and every zone of an account, one
paginated listing each (the account's Access applications are listed by its `AppView`)."""

from __future__ import annotations

from .access import _token_from_wire
from .access_view import list_access
from .client import CloudflareClient
from .models import ServiceToken, Zone
from .zones import zone_from_wire

__all__ = ["list_service_tokens", "list_zones"]

ZONES_PER_PAGE = 50


async def list_service_tokens(client: CloudflareClient, account_id: str) -> list[ServiceToken]:
    """Every service token of the account (never with a secret)."""
    items = await list_access(client, "service_tokens.list", client.sdk.zero_trust.access.service_tokens.list,
                              account_id)
    return [_token_from_wire(item, with_secret=False) for item in items]


async def list_zones(client: CloudflareClient, account_id: str) -> list[Zone]:
    """The zones of the account the token can read."""
    items = await client.list_all(
        "zones.list", client.sdk.zones.list, account={"id": account_id}, per_page=ZONES_PER_PAGE
    )
    zones = [zone_from_wire(item) for item in items]
    return [zone for zone in zones if zone.account_id in ("", account_id)]
