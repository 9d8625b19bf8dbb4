"""`AccountView`: one account's objects of one kind (Access applications, service tokens) as one paginated
listing showed them, kept up to date by our own writes.

One listing of the account answers every lookup of the kind (by domain, by name, by id) for as long as the view
is younger than `max_age` (the resync interval: a resync sees a listing at most that old). It is listed again
when older (`current`) or on demand (`refresh`: a listing begun after the call, e.g. before a decision that an
old copy must not make). Listings are coalesced like the DNS writer's batches (:mod:`.coalescing`): every caller
waiting when one begins is answered by it, and a caller that only needs a fresh view (`current`) also joins one
in flight.

Our own writes update the view at once (`put`: the answer to a create or update; `drop`: a delete, remembered
for a while so that nothing is deleted twice). A listing begun before one of our writes was answered may miss
it: such writes are applied again over that listing.

Each entry remembers when it was learned (`ViewEntry.learned`, UTC: the time the listing or write that told
us was *sent*, so never later than the state it shows). Whether a copy may stand in for a read is the
caller's decision (see :mod:`.access` and :mod:`.service_tokens`). A subclass says how the kind is listed
(`_list`) and what of an object the view keeps (`_kept`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from .client import CloudflareClient
from .coalescing import CoalescingWriter, Request
from .errors import CloudflareError
from .models import parse_time

__all__ = ["AccountView", "ViewEntry"]

T = TypeVar("T")


@dataclass(frozen=True)
class ViewEntry:
    """One object as a wire dict, and when it was learned (UTC; see the module docstring)."""

    data: dict[str, Any]
    learned: datetime


@dataclass(eq=False)
class _Listing(Request):
    pass


@dataclass(frozen=True)
class _Write:
    object_id: str
    entry: ViewEntry | None  # None: deleted


class AccountView(CoalescingWriter[_Listing]):
    label = "account view"

    def __init__(self, client: CloudflareClient, account_id: str, max_age: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.client = client
        self.account_id = account_id
        self.max_age = max_age
        self.clock = clock
        self._items: dict[str, ViewEntry] = {}
        self._listed_at: float | None = None  # monotonic time the last complete listing began
        self._listing_began: float | None = None  # the one in flight
        self._joined: list[_Listing] = []  # callers of `current` waiting for the listing in flight
        self._writes: list[_Write] = []  # our writes answered since the last listing began
        self._deleted: dict[str, float] = {}  # object id -> monotonic time we deleted it

    # -- what a kind says -------------------------------------------------------------------------
    async def _list(self) -> list[dict[str, Any]]:
        """Every object of the kind in the account (wire dicts), in one paginated listing."""
        raise NotImplementedError

    def _kept(self, data: dict[str, Any]) -> dict[str, Any]:
        """What the view keeps of an object (default: all of it)."""
        return data

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
            listed = await self._list()
        except BaseException as error:
            joined, self._joined, self._listing_began, self._writes = self._joined, [], None, []
            failure = error if isinstance(error, Exception) else CloudflareError(f"the {self.label} was cancelled")
            for request in joined:
                request.fail(failure)
            raise
        items = {str(item.get("id") or ""): ViewEntry(self._kept(item), learned)
                 for item in listed if item.get("id")}
        for write in self._writes:  # answered after the listing began: it may not show them
            if write.entry is None:
                items.pop(write.object_id, None)
            else:
                items[write.object_id] = write.entry
        self._items, self._writes, self._listed_at = items, [], began
        self._deleted = {key: at for key, at in self._deleted.items() if self.clock() - at < self.max_age}
        joined, self._joined, self._listing_began = self._joined, [], None
        for request in [*requests, *joined]:
            request.resolve(None)

    # -- reads ------------------------------------------------------------------------------------
    def get(self, object_id: str) -> ViewEntry | None:
        return self._items.get(object_id)

    def recent(self, object_id: str) -> ViewEntry | None:
        """The object's copy when the view is fresh or the copy itself was learned less than `max_age` ago (the
        answer to our own write, e.g. a create just now)."""
        entry = self._items.get(object_id)
        if entry is None or self.fresh or datetime.now(UTC) - entry.learned < timedelta(seconds=self.max_age):
            return entry
        return None

    def entries(self) -> list[ViewEntry]:
        return list(self._items.values())

    def deleted(self, object_id: str) -> bool:
        """Whether we deleted the object lately (within `max_age`): nothing to delete again."""
        return object_id in self._deleted

    async def before_delete(self, object_id: str, since: str | None, decode: Callable[[dict[str, Any]], T],
                            read: Callable[[], Awaitable[T | None]]) -> T | None:
        """The object to judge before deleting `object_id`: the view's copy when it was learned since `since`
        (when the ledger recorded the object: a copy that new shows what our proof covers), else `read()`;
        None when there is nothing to delete (gone, or deleted by us lately: nothing twice)."""
        await self.current()
        entry = self.get(object_id)
        if entry is not None and since is not None and entry.learned >= parse_time(since):
            return decode(entry.data)
        if entry is None and self.deleted(object_id):
            return None
        found = await read()
        if found is None:
            self.drop(object_id)
        return found

    # -- our own writes ---------------------------------------------------------------------------
    def put(self, data: dict[str, Any], learned: datetime) -> None:
        """The answer to our create or update of an object (sent at `learned`)."""
        object_id = str(data.get("id") or "")
        if not object_id:
            return
        entry = ViewEntry(self._kept(data), learned)
        self._items[object_id] = entry
        self._deleted.pop(object_id, None)
        self._remember(_Write(object_id, entry))

    def drop(self, object_id: str) -> None:
        """Our delete of the object went through (or found it gone)."""
        self._items.pop(object_id, None)
        self._deleted[object_id] = self.clock()
        self._remember(_Write(object_id, None))

    def _replace(self, object_id: str, entry: ViewEntry) -> None:
        """Our write of a part of the object (the copy as `entry` shows it now)."""
        self._items[object_id] = entry
        self._remember(_Write(object_id, entry))

    def _remember(self, write: _Write) -> None:
        """A write answered while a listing is in flight is applied again over it."""
        if self._listing_began is not None:
            self._writes.append(write)
