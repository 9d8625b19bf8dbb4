"""`TokenView`: one account's Access service tokens as one paginated listing showed them, kept up to date by our
own writes (an :class:`.account_view.AccountView`).

``GET /accounts/{id}/access/service_tokens`` (1000 a page, no filter) answers every find-by-name and every
check by id of the account. The view is listed again when older than `max_age` (the resync interval) or on
demand (`refresh`: a listing begun after the call); listings are coalesced, and our own creates and deletes
(`put`, `drop`) update it at once (a rotation changes nothing it holds). A secret is never kept (Cloudflare
shows it only in the answer to a create or rotation). Whether a copy may stand in for a read is the caller's
decision (see :mod:`.service_tokens`).
"""

from __future__ import annotations

from typing import Any

from .access_view import list_access
from .account_view import AccountView

__all__ = ["TokenView"]


class TokenView(AccountView):
    label = "service token view"

    async def _list(self) -> list[dict[str, Any]]:
        listing = self.client.sdk.zero_trust.access.service_tokens.list
        return await list_access(self.client, "service_tokens.list", listing, self.account_id)

    def _kept(self, data: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in data.items() if key != "client_secret"}

    def named(self, name: str) -> list[dict[str, Any]]:
        """The tokens (wire dicts) named exactly `name`, in the order listed."""
        return [entry.data for entry in self.entries() if entry.data.get("name") == name]

    def tokens(self) -> list[dict[str, Any]]:
        return [entry.data for entry in self.entries()]
