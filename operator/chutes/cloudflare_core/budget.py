"""Client-side request budget: Cloudflare allows 1,200 requests per 5 minutes per token.

A sliding window of the timestamps of the requests spent. `acquire()` spends one request,
waiting when the budget frees up within `max_wait` seconds, else raising `RateLimited` so the
caller requeues itself. `block_for()` is called after a 429: every caller sharing the token
then fails fast instead of hammering the API.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections import deque
from collections.abc import Callable

from .errors import RateLimited

__all__ = ["RequestBudget", "shared_budget"]


class RequestBudget:
    def __init__(
        self,
        limit: int = 1200,
        window: float = 300.0,
        *,
        max_wait: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("limit must be >= 1 and window > 0")
        self.limit = limit
        self.window = window
        self.max_wait = max_wait
        self._clock = clock
        self._spent: deque[float] = deque()
        self._blocked_until = 0.0

    def _prune(self, now: float) -> None:
        horizon = now - self.window
        while self._spent and self._spent[0] <= horizon:
            self._spent.popleft()

    @property
    def remaining(self) -> int:
        """Requests that can be made right now (0 while blocked after a 429)."""
        now = self._clock()
        if now < self._blocked_until:
            return 0
        self._prune(now)
        return max(0, self.limit - len(self._spent))

    @property
    def blocked_for(self) -> float:
        """Seconds left of a block set by `block_for`, 0 when not blocked."""
        return max(0.0, self._blocked_until - self._clock())

    def block_for(self, seconds: float) -> None:
        """Refuse (or delay, when short) every request for `seconds`; never shortens a block."""
        self._blocked_until = max(self._blocked_until, self._clock() + max(0.0, seconds))

    def delay(self) -> float:
        """Seconds until one request may be made (0 = now)."""
        now = self._clock()
        if now < self._blocked_until:
            return self._blocked_until - now
        self._prune(now)
        if len(self._spent) < self.limit:
            return 0.0
        return max(0.0, self._spent[0] + self.window - now)

    async def acquire(self) -> None:
        """Spend one request; wait up to `max_wait` seconds for one, else raise RateLimited."""
        while True:
            wait = self.delay()
            if wait <= 0:
                self._spent.append(self._clock())
                return
            if wait > self.max_wait:
                raise RateLimited(f"Cloudflare request budget exhausted; retry in {wait:.0f}s", delay=wait)
            await asyncio.sleep(wait)


_SHARED: dict[str, RequestBudget] = {}
_SHARED_LOCK = threading.Lock()


def shared_budget(token: str) -> RequestBudget:
    """The one budget of this process for `token` (keyed by its sha256, never the token)."""
    key = hashlib.sha256(token.encode()).hexdigest()
    with _SHARED_LOCK:
        budget = _SHARED.get(key)
        if budget is None:
            budget = _SHARED[key] = RequestBudget()
        return budget
