"""When the next level-based pass runs. Pure: times are passed in (seconds of a monotonic clock).

- At start: at once.
- After a change of the session set seen by the watch (a Pod event that adds, removes or re-labels a
  session; status-only updates do not count): a new session is urgent, the pass starts ``quiet``
  seconds after the last change but no later than ``max_delay`` after the first one not yet handled;
  when only removals are pending, ``removal_quiet`` and ``removal_max_delay`` apply (an unpublished
  hostname can wait for the burst to end). A burst of Pods thus costs a few passes, not one per Pod:
  that is where the Cloudflare calls are saved (a pass is one DNS listing + batch and one tunnel
  GET + PUT, whatever the number of sessions).
- After a pass that wrote: a verification pass ``settle`` seconds later, even if event-driven passes
  (that write nothing) run in between. Across processes a tunnel-config PUT can overwrite another
  replica's edit (or another tool's: a read-modify-write that read before our write); the writer of
  the last change always re-reads and repairs.
- After a pass that wrote nothing: the periodic resync, ``resync`` seconds later.
- After a pass that held removals back (the deletion cap's window is full): no later than when the window
  has room again.
- After a failure: the error's own delay (``Retry-After``) or the next step of ``backoff``; Pod events
  do not bring the retry forward.

Every delay but the backoff is randomised by ``jitter`` so that two replicas fed by the same events do
not run their passes in lockstep.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from chutes.frontdoors.retries import BACKOFF, backoff


@dataclass(frozen=True)
class Timing:
    quiet: float = 0.3
    max_delay: float = 1.5
    removal_quiet: float = 1.0
    removal_max_delay: float = 4.0
    settle: float = 1.0
    jitter: float = 0.4
    resync: float = 300.0
    backoff: tuple[float, ...] = BACKOFF


class PassScheduler:
    def __init__(self, timing: Timing, now: float, rng: random.Random | None = None) -> None:
        self.timing = timing
        self._rng = rng or random.Random()
        self._due = now  # the next timed pass (start, verification, resync or retry)
        self._not_before = now
        self._first_change: float | None = None
        self._first_addition: float | None = None
        self._last_change: float | None = None
        self._spread = self._jitter()
        self._pass_started = now
        self._verify_at: float | None = None  # a verification owed after our last write
        self._due_cause = "start"  # why the timed pass `_due` runs: start, verify, resync, window or retry
        self.failures = 0

    def _jitter(self) -> float:
        return 1.0 + self._rng.uniform(-self.timing.jitter, self.timing.jitter)

    @property
    def pending(self) -> bool:
        return self._first_change is not None

    def changed(self, now: float, addition: bool) -> None:
        """The watch saw the session set change (``addition``: a session appeared)."""
        if self._first_change is None:
            self._first_change = now
        if addition and self._first_addition is None:
            self._first_addition = now
        self._last_change = now

    def due(self) -> float:
        """When the next pass should start."""
        if self._first_change is None or self._last_change is None:
            return self._due
        timing, spread = self.timing, self._spread
        by_events = min(self._last_change + timing.removal_quiet * spread,
                        self._first_change + timing.removal_max_delay * spread)
        if self._first_addition is not None:
            by_events = min(by_events, self._last_change + timing.quiet * spread,
                            self._first_addition + timing.max_delay * spread)
        return min(self._due, max(by_events, self._not_before))

    def cause(self) -> str:
        """Why the pass starting now runs: ``events`` (the watch saw the session set change), else that of
        the timed pass: ``start``, ``verify`` (after a pass that wrote), ``resync``, ``window`` (the deletion
        cap has room again for removals held back) or ``retry``."""
        return "events" if self.pending else self._due_cause

    def for_events_only(self, now: float) -> bool:
        """Whether the pass starting `now` runs for Pod events alone: no timed pass (verification of our own
        write, resync, retry, start, window) is due by then."""
        return self.pending and now < self._due

    def started(self, now: float) -> None:
        """A pass starts: it sees every change so far."""
        self._first_change = self._first_addition = self._last_change = None
        self._spread = self._jitter()
        self._pass_started = now

    def finished(self, now: float, wrote: bool, held_for: float | None = None) -> None:
        """A pass ended; ``held_for``: seconds until removals it held back are allowed."""
        self.failures = 0
        self._not_before = now
        if wrote:
            self._verify_at = now + self.timing.settle * self._jitter()
        elif self._verify_at is not None and self._pass_started >= self._verify_at:
            self._verify_at = None  # this pass was the verification
        self._due, self._due_cause = now + self.timing.resync * self._jitter(), "resync"
        if self._verify_at is not None and self._verify_at < self._due:
            self._due, self._due_cause = self._verify_at, "verify"
        if held_for is not None and now + max(held_for, self.timing.settle) < self._due:
            self._due, self._due_cause = now + max(held_for, self.timing.settle), "window"

    def failed(self, now: float, delay: float | None = None) -> float:
        """A pass failed; returns the delay before the retry."""
        self.failures += 1
        wait = max(delay or 0.0, backoff(self.failures, self.timing.backoff))
        self._due = self._not_before = now + wait
        self._due_cause = "retry"
        return wait
