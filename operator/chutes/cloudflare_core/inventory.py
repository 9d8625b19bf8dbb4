"""Whole-account listings for the orphan sweep: every zone of an account, one paginated listing (the account's
Access applications and service tokens are listed by its `AppView` and `TokenView`)."""

from __future__ import annotations

from .client import CloudflareClient
from .models import Zone
from .zones import zone_from_wire

__all__ = ["list_zones"]

ZONES_PER_PAGE = 50


async def list_zones(client: CloudflareClient, account_id: str) -> list[Zone]:
    """The zones of the account the token can read."""
    items = await client.list_all(
        "zones.list", client.sdk.zones.list, account={"id": account_id}, per_page=ZONES_PER_PAGE
    )
    zones = [zone_from_wire(item) for item in items]
    return [zone for zone in zones if zone.account_id in ("", account_id)]
