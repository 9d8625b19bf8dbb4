"""The deletion cap every front door's orphan removals obey (``sweep_max_deletions``), so that a misconfiguration
cannot wipe a zone: one rule, and the room it has per pass or per window.

The rule (:class:`Allowance`): of the orphan removals a pass would make, asked in the order it would make them
(every removal before those that depend on it, so any prefix is safe), those the cap has room for go now; the
rest are held, found and judged afresh by a later pass. A removal the door can explain (the session door's Pod
watch saw the session's last Pod go) is not an orphan's: never held, never counted. Asking again about one already
allowed is free.

The room:
- the gateway and HTTPRoute sweeps run once per ``sweep_interval`` (a kopf timer): each pass has the whole cap;
- the session door runs a pass whenever Pods change and a verification pass a second after every pass that
  wrote: its room is what :class:`RemovalBudget` has left of ``sweep_max_deletions`` per ``sweep_interval``
  seconds, however many passes run (the verification pass must not remove the next batch);
- the Tunnel door sweeps each (Cluster)Tunnel at its resync (every ``resync_interval``): one
  :class:`RemovalBudget` for the whole door has the room, so many Tunnels, or a short resync interval, remove no
  more per ``sweep_interval`` than the cap. Its unit is one hostname withdrawn (rule, record and Access
  application, which go together and in that order).

The Warning Event ``SweepCapReached`` says what waits, and until when: :func:`per_pass_message`,
:func:`per_window_message`.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Container, Hashable, Sequence

__all__ = ["Allowance", "RemovalBudget", "per_pass_message", "per_window_message"]


class Allowance:
    """Which orphan removals a pass may make: every one `explained`, and at most `room` others (None: no cap), the
    first ones asked about."""

    def __init__(self, room: int | None, explained: Container[Hashable] = frozenset()) -> None:
        self.room = None if room is None else max(0, room)
        self._explained = explained
        self.allowed: dict[Hashable, None] = {}  # counted, in the order allowed
        self.held: dict[Hashable, None] = {}  # over the cap, in the order asked

    def allows(self, removal: Hashable) -> bool:
        if self.room is None or removal in self._explained or removal in self.allowed:
            return True
        if len(self.allowed) < self.room:
            self.allowed[removal] = None
            return True
        self.held[removal] = None
        return False


class RemovalBudget:
    """At most ``limit`` removals in any ``window`` seconds, sliding: each removal spends one until ``window``
    seconds after it was made. Only removals really made are spent (a pass that failed before deleting spends
    nothing). The clock is injectable (wall-clock seconds, so that the Warning can say when the held removals
    go)."""

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


def per_pass_message(cap: int, deleted: int, held: Sequence[str]) -> str:
    """The Warning of a sweep pass (gateways, HTTPRoutes) that held `held` (descriptions, in order) back."""
    shown = ", ".join(held[:3]) + (", ..." if len(held) > 3 else "")
    if cap == 0:
        return (f"{len(held)} orphaned Cloudflare object(s) found, none deleted: the sweep deletion cap "
                f"(sweep_max_deletions) is 0, report only. First: {shown}")
    return (f"deleted {deleted} orphaned Cloudflare object(s), the cap per pass (sweep_max_deletions={cap}); "
            f"{len(held)} more wait for the next pass. Next: {shown}")


def per_window_message(budget: RemovalBudget, held: Sequence[str], opens: float | None,
                       what: str = "session hostname(s) no watched Pod was seen leaving") -> str:
    """The Warning of a pass (a session pass; a Tunnel's sweep) that held the removal of `held` (hostnames, `what`
    they are) back until `opens` (:meth:`RemovalBudget.opens_at`)."""
    first = ", ".join(sorted(held)[:3])
    if opens is None:
        return (f"{len(held)} {what} are kept: the deletion cap "
                f"(sweep_max_deletions) is 0, report only. First: {first}")
    when = datetime.datetime.fromtimestamp(opens, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (f"{len(held)} {what} wait for the next window of "
            f"the deletion cap (sweep_max_deletions={budget.limit} per sweep_interval={budget.window:g} s), "
            f"from {when}: {first}")
