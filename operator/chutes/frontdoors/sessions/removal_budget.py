"""The session door's budget of removals the Pod watch did not explain (an orphan sweep): at most ``limit`` in
any ``window`` seconds (``sweep_max_deletions`` per ``sweep_interval``), as the other doors' sweeps, which run
once per interval. Per window, not per pass: a pass that removed something is followed by a verification pass
a second later, which must not remove the next batch.

A sliding window: each removal spends one token until ``window`` seconds after it was made. Only removals
really made are spent (a pass that failed before deleting spends nothing). The clock is injectable (wall-clock
seconds, so that the Warning can say when the held removals go).
"""

from __future__ import annotations

import time
from collections.abc import Callable


class RemovalBudget:
    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.time) -> None:
        if limit < 0 or window <= 0:
            raise ValueError(f"a removal budget needs limit >= 0 and window > 0, not {limit} per {window}")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._spent: list[float] = []  # when each removal of the last window was made, oldest first

    def _recent(self) -> list[float]:
        horizon = self._clock() - self.window
        self._spent = [at for at in self._spent if at > horizon]
        return self._spent

    def now(self) -> float:
        return self._clock()

    def available(self) -> int:
        """Removals allowed now."""
        return max(0, self.limit - len(self._recent()))

    def spend(self, count: int) -> None:
        """`count` removals were just made."""
        now = self._clock()
        self._spent.extend([now] * count)

    def opens_at(self) -> float | None:
        """When a removal is allowed again (now when one is); None when never (a limit of 0: report only)."""
        if self.limit == 0:
            return None
        recent = self._recent()
        if len(recent) < self.limit:
            return self._clock()
        return recent[len(recent) - self.limit] + self.window
