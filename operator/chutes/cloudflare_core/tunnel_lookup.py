"""`TunnelLookup`: one account's live tunnels, as a listing begun after each question shows them, shared by every
question asked meanwhile.

Finding a tunnel by name (before a create) and reading one before a delete are answered from listings
(``is_deleted=false``, 1000 a page) coalesced like the DNS writer's flushes (:mod:`.coalescing`): every question
queued when a listing begins is answered by it, and a question asked while a listing is in flight waits for the
next one. Nothing is kept between listings and nothing is answered from a listing begun before the question was
asked, so an answer proves what a read made at that moment would have (N gateways published or deleted at once
cost a listing per flush, not a read each).

A flush lists exactly the name when every question names the same tunnel, else the tunnels whose name starts with
the longest prefix the names share (every live tunnel when they share none). The answers are picked from the
listing by exact name or id here, whatever the filter returned; a tunnel renamed since it was recorded is not in a
listing filtered by its recorded name (`live` says None: the delete then reads it by id).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .client import CloudflareClient
from .coalescing import CoalescingWriter, Request
from .models import Tunnel

__all__ = ["TUNNELS_PER_PAGE", "TunnelLookup", "tunnel_from_wire"]

TUNNELS_PER_PAGE = 1000


def tunnel_from_wire(data: dict[str, Any], account_id: str) -> Tunnel:
    return Tunnel(
        id=str(data.get("id") or ""),
        name=str(data.get("name") or ""),
        account_id=str(data.get("account_tag") or account_id),
        deleted=bool(data.get("deleted_at")),
        created_at=str(data["created_at"]) if data.get("created_at") else None,
        connected=bool(data.get("connections")),
        remote_config=data["remote_config"] if isinstance(data.get("remote_config"), bool) else None,
    )


@dataclass(eq=False)
class _Question(Request):
    """A question about the tunnel named `name`; answered with every live tunnel of the flush's listing."""

    name: str = field(kw_only=True)


def listing_filter(names: set[str]) -> dict[str, str]:
    """The name filter of one listing answering questions about `names`: the name itself when there is one, else
    the longest prefix they share (none when they share nothing)."""
    if len(names) == 1:
        return {"name": next(iter(names))}
    first, last = min(names), max(names)  # the prefix they all share is the one these two share
    length = next((i for i, (a, b) in enumerate(zip(first, last, strict=False)) if a != b), len(first))
    prefix = first[:length]
    return {"include_prefix": prefix} if prefix else {}


class TunnelLookup(CoalescingWriter[_Question]):
    """The live tunnels of one account, one listing per flush of questions (see the module docstring)."""

    label = "tunnel lookup"

    def __init__(self, client: CloudflareClient, account_id: str) -> None:
        super().__init__()
        self.client = client
        self.account_id = account_id

    async def find(self, name: str) -> Tunnel | None:
        """The live tunnel named exactly `name`, or None."""
        listed = await self._listed(name)
        return next((tunnel for tunnel in listed if tunnel.name == name), None)

    async def live(self, tunnel_id: str, name: str) -> Tunnel | None:
        """Tunnel `tunnel_id` when it is live and still named `name` (the name it was recorded under, the listing's
        filter), else None: deleted, unknown, or renamed since (a read by id tells which)."""
        listed = await self._listed(name)
        return next((tunnel for tunnel in listed if tunnel.id == tunnel_id), None)

    async def _listed(self, name: str) -> list[Tunnel]:
        listed: list[Tunnel] = await self._submit(_Question(name=name))
        return listed

    async def _flush(self, questions: list[_Question]) -> None:
        items = await self.client.list_all(
            "tunnels.list",
            self.client.sdk.zero_trust.tunnels.cloudflared.list,
            account_id=self.account_id,
            is_deleted=False,
            per_page=TUNNELS_PER_PAGE,
            **listing_filter({question.name for question in questions}),
        )
        tunnels = [tunnel_from_wire(item, self.account_id) for item in items]
        live = [tunnel for tunnel in tunnels if not tunnel.deleted]
        for question in questions:
            question.resolve(live)
