"""`AppView`: one account's Access applications as one paginated listing showed them, kept up to date by our
own writes.

``GET /accounts/{id}/access/apps`` (1000 a page) embeds each app's policies, so one listing answers every
find-by-domain, every "is it up to date" and every app-scoped policy lookup of the account. The view is
listed again when older than `max_age` (the resync interval: a resync sees a listing at most that old) or on
demand (`refresh`: a listing begun after the call, e.g. after a 409 from a create the view did not expect).
Listings are coalesced like the DNS writer's batches (:mod:`.coalescing`): every caller waiting when one
begins is answered by it, and a caller that only needs a fresh view (`current`) also joins one in flight.

Our own writes update the view at once (`put`: the answer to a create or update; `drop`: a delete, remembered
for a while so that nothing is deleted twice). A listing begun before one of our writes was answered may miss
it: such writes are applied again over that listing.

Each entry remembers when it was learned (`AppEntry.learned`, UTC: the time the listing or write that told
us was *sent*, so never later than the state it shows). Whether a copy may stand in for a read is the
caller's decision (see :mod:`.access`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .client import CloudflareClient
from .coalescing import CoalescingWriter, Request
from .errors import CloudflareError

__all__ = ["ACCESS_PER_PAGE", "AppEntry", "AppView", "list_access"]

ACCESS_PER_PAGE = 1000


async def list_access(client: CloudflareClient, op: str, fn: Callable[..., Awaitable[Any]], account_id: str,
                      *args: Any, **filters: Any) -> list[dict[str, Any]]:
    """Every item of one of the account's Access listings (applications, policies, identity providers, service
    tokens), as wire dicts, `ACCESS_PER_PAGE` a page."""
    return await client.list_all(op, fn, *args, account_id=account_id, per_page=ACCESS_PER_PAGE, **filters)


@dataclass(frozen=True)
class AppEntry:
    """One app as a wire dict (policies embedded), and when it was learned (UTC; see the module docstring)."""

    data: dict[str, Any]
    learned: datetime

    @property
    def domain(self) -> str:
        return str(self.data.get("domain") or "").lower()


@dataclass(eq=False)
class _Listing(Request):
    pass


@dataclass(frozen=True)
class _Write:
    app_id: str
    entry: AppEntry | None  # None: deleted


class AppView(CoalescingWriter[_Listing]):
    label = "Access application view"

    def __init__(self, client: CloudflareClient, account_id: str, max_age: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.client = client
        self.account_id = account_id
        self.max_age = max_age
        self.clock = clock
        self._apps: dict[str, AppEntry] = {}
        self._listed_at: float | None = None  # monotonic time the last complete listing began
        self._listing_began: float | None = None  # the one in flight
        self._joined: list[_Listing] = []  # callers of `current` waiting for the listing in flight
        self._writes: list[_Write] = []  # our writes answered since the last listing began
        self._deleted: dict[str, float] = {}  # app id -> monotonic time we deleted it

    # -- freshness and listings -------------------------------------------------------------------
    @property
    def fresh(self) -> bool:
        """Whether the last complete listing began less than `max_age` ago."""
        return self._listed_at is not None and self.clock() - self._listed_at < self.max_age

    def listed_since(self, began: float) -> bool:
        """Whether the last complete listing began at or after `began` (a monotonic time)."""
        return self._listed_at is not None and self._listed_at >= began

    async def current(self) -> None:
        """Make sure the view is fresh: nothing when it is, else wait for a listing (joining one in flight)."""
        if self.fresh:
            return
        if self._listing_began is not None:
            request = _Listing()
            self._joined.append(request)
            await request.done  # it began before this call, and just ended: fresh
            return
        await self._submit(_Listing())

    async def refresh(self) -> None:
        """A listing begun after this call (coalesced with every other caller waiting meanwhile)."""
        await self._submit(_Listing())

    async def _flush(self, requests: list[_Listing]) -> None:
        began, learned = self.clock(), datetime.now(UTC)
        self._listing_began = began
        try:
            listing = self.client.sdk.zero_trust.access.applications.list
            items = await list_access(self.client, "access.apps.list", listing, self.account_id)
        except BaseException as error:
            joined, self._joined, self._listing_began, self._writes = self._joined, [], None, []
            failure = error if isinstance(error, Exception) else CloudflareError(f"the {self.label} was cancelled")
            for request in joined:
                request.fail(failure)
            raise
        apps = {str(item.get("id") or ""): AppEntry(item, learned) for item in items if item.get("id")}
        for write in self._writes:  # answered after the listing began: it may not show them
            if write.entry is None:
                apps.pop(write.app_id, None)
            else:
                apps[write.app_id] = write.entry
        self._apps, self._writes, self._listed_at = apps, [], began
        self._deleted = {key: at for key, at in self._deleted.items() if self.clock() - at < self.max_age}
        joined, self._joined, self._listing_began = self._joined, [], None
        for request in [*requests, *joined]:
            request.resolve(None)

    # -- reads ------------------------------------------------------------------------------------
    def get(self, app_id: str) -> AppEntry | None:
        return self._apps.get(app_id)

    def recent(self, app_id: str) -> AppEntry | None:
        """The app's copy when the view is fresh or the copy itself was learned less than `max_age` ago (the
        answer to our own write, e.g. a create just now)."""
        entry = self._apps.get(app_id)
        if entry is None or self.fresh or datetime.now(UTC) - entry.learned < timedelta(seconds=self.max_age):
            return entry
        return None

    def on_domain(self, domain: str) -> list[dict[str, Any]]:
        """The apps (wire dicts) whose domain is exactly `domain`."""
        wanted = domain.strip().lower()
        return [entry.data for entry in self._apps.values() if entry.domain == wanted]

    def apps(self) -> list[dict[str, Any]]:
        return [entry.data for entry in self._apps.values()]

    def deleted(self, app_id: str) -> bool:
        """Whether we deleted the app lately (within `max_age`): nothing to delete again."""
        return app_id in self._deleted

    # -- our own writes ---------------------------------------------------------------------------
    def put(self, data: dict[str, Any], learned: datetime) -> None:
        """The answer to our create or update of an app (sent at `learned`)."""
        app_id = str(data.get("id") or "")
        if not app_id:
            return
        entry = AppEntry(data, learned)
        self._apps[app_id] = entry
        self._deleted.pop(app_id, None)
        self._remember(_Write(app_id, entry))

    def drop(self, app_id: str) -> None:
        """Our delete of the app went through (or found it gone)."""
        self._apps.pop(app_id, None)
        self._deleted[app_id] = self.clock()
        self._remember(_Write(app_id, None))

    def _remember(self, write: _Write) -> None:
        """A write answered while a listing is in flight is applied again over it."""
        if self._listing_began is not None:
            self._writes.append(write)

    def replace_policies(self, app_id: str, edit: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> None:
        """Our write of one of the app's app-scoped policies: its embedded list as `edit` makes it (the app keeps
        the time it was learned)."""
        entry = self._apps.get(app_id)
        if entry is None:
            return
        policies = [dict(item) for item in entry.data.get("policies") or [] if isinstance(item, dict)]
        data = dict(entry.data, policies=edit(policies))
        updated = AppEntry(data, entry.learned)
        self._apps[app_id] = updated
        self._remember(_Write(app_id, updated))
