"""`AppView`: one account's Access applications as one paginated listing showed them, kept up to date by our
own writes (an :class:`.account_view.AccountView`).

``GET /accounts/{id}/access/apps`` (1000 a page) embeds each app's policies, so one listing answers every
find-by-domain, every "is it up to date" and every app-scoped policy lookup of the account. The view is
listed again when older than `max_age` (the resync interval) or on demand (`refresh`, e.g. after a 409 from a
create the view did not expect); listings are coalesced, and our own writes (`put`, `drop`,
`replace_policies`) update it at once. Whether a copy may stand in for a read is the caller's decision (see
:mod:`.access`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from .account_view import AccountView, ViewEntry
from .client import CloudflareClient

__all__ = ["ACCESS_PER_PAGE", "AppEntry", "AppView", "list_access"]

ACCESS_PER_PAGE = 1000

AppEntry = ViewEntry  # one app as a wire dict (policies embedded), and when it was learned


async def list_access(client: CloudflareClient, op: str, fn: Callable[..., Awaitable[Any]], account_id: str,
                      *args: Any, **filters: Any) -> list[dict[str, Any]]:
    """Every item of one of the account's Access listings (applications, policies, identity providers, service
    tokens), as wire dicts, `ACCESS_PER_PAGE` a page."""
    return await client.list_all(op, fn, *args, account_id=account_id, per_page=ACCESS_PER_PAGE, **filters)


class AppView(AccountView):
    label = "Access application view"

    async def _list(self) -> list[dict[str, Any]]:
        listing = self.client.sdk.zero_trust.access.applications.list
        return await list_access(self.client, "access.apps.list", listing, self.account_id)

    def on_domain(self, domain: str) -> list[dict[str, Any]]:
        """The apps (wire dicts) whose domain is exactly `domain`."""
        wanted = domain.strip().lower()
        return [entry.data for entry in self.entries() if str(entry.data.get("domain") or "").lower() == wanted]

    def apps(self) -> list[dict[str, Any]]:
        return [entry.data for entry in self.entries()]

    def replace_policies(self, app_id: str, edit: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> None:
        """Our write of one of the app's app-scoped policies: its embedded list as `edit` makes it (the app keeps
        the time it was learned)."""
        entry = self.get(app_id)
        if entry is None:
            return
        policies = [dict(item) for item in entry.data.get("policies") or [] if isinstance(item, dict)]
        self._replace(app_id, ViewEntry(dict(entry.data, policies=edit(policies)), entry.learned))
