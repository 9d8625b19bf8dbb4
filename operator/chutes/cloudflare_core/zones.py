"""Zone lookups (cached: a zone's id, account and plan do not change under us). Concurrent lookups of one
name share one request (a burst of new routes in one zone asks once). A name found to be no zone is not asked
again for `MISS_SECONDS`: hostnames in a zone below its apex (``r1.routes.example.org`` in zone
``routes.example.org``) look the apex up first, and a burst of them arriving one after another would otherwise
ask once each."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from .client import CloudflareClient, to_wire
from .errors import NotFound
from .models import Zone, normalize_name

__all__ = ["MISS_SECONDS", "ZoneDirectory", "zone_from_wire"]

MISS_SECONDS = 60.0  # how long a name found to be no zone is answered None without asking again

FREE_BATCH_LIMIT = 200
PAID_BATCH_LIMIT = 3500


def zone_from_wire(data: dict[str, Any]) -> Zone:
    account = data.get("account") or {}
    plan = data.get("plan") or {}
    plan_id = str(plan.get("legacy_id") or plan.get("name") or "").lower()
    return Zone(
        id=str(data.get("id") or ""),
        name=normalize_name(str(data.get("name") or "")),
        account_id=str(account.get("id") or ""),
        plan=plan_id,
        account_name=str(account.get("name") or ""),
    )


class ZoneDirectory:
    def __init__(self, client: CloudflareClient, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._clock = clock
        self._by_id: dict[str, Zone] = {}
        self._finding: dict[str, asyncio.Task[Zone | None]] = {}
        self._missing: dict[str, float] = {}  # name -> when a lookup found no zone of that name

    async def get_zone(self, zone_id: str) -> Zone:
        """The zone (one zones.get per zone per process). Raises NotFound."""
        zone = self._by_id.get(zone_id)
        if zone is None:
            result = await self._client.call("zones.get", self._client.sdk.zones.get, zone_id=zone_id)
            zone = zone_from_wire(to_wire(result))
            if not zone.id:
                raise NotFound(f"zone {zone_id} not found")
            self._by_id[zone_id] = zone
        return zone

    async def find_zone(self, name: str) -> Zone | None:
        """The zone named exactly `name`, or None."""
        wanted = normalize_name(name)
        for zone in self._by_id.values():
            if zone.name == wanted:
                return zone
        missed = self._missing.get(wanted)
        if missed is not None and self._clock() - missed < MISS_SECONDS:
            return None
        finding = self._finding.get(wanted)
        if finding is None:
            finding = self._finding[wanted] = asyncio.ensure_future(self._find(wanted))
            finding.add_done_callback(lambda _: self._finding.pop(wanted, None))
        return await asyncio.shield(finding)  # one caller cancelled does not cancel the others' lookup

    async def _find(self, wanted: str) -> Zone | None:
        items = await self._client.list_all("zones.list", self._client.sdk.zones.list, name=wanted, per_page=50)
        for item in items:
            zone = zone_from_wire(item)
            if zone.name == wanted:
                self._by_id[zone.id] = zone
                self._missing.pop(wanted, None)
                return zone
        now = self._clock()
        if len(self._missing) > 1000:
            self._missing = {name: at for name, at in self._missing.items() if now - at < MISS_SECONDS}
        self._missing[wanted] = now
        return None

    async def batch_limit(self, zone_id: str) -> int:
        """How many record changes one dns.batch call may carry in this zone."""
        zone = await self.get_zone(zone_id)
        return FREE_BATCH_LIMIT if zone.is_free else PAID_BATCH_LIMIT
