"""Runtime fault injection: latency, 5xx per operation, forced 429s, drop-after-write, and `before`
hooks (another client's request landing just before one of ours, in-process only)."""

from __future__ import annotations

import random
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

# Run before a request is handled; may be a coroutine function (awaited on the server's loop).
Hook = Callable[[], Awaitable[None] | None]


@dataclass
class FailRule:
    op: str | None  # None: every operation
    status: int
    count: int | None  # remaining forced failures; None: use ``rate`` forever
    rate: float
    code: int
    rng: random.Random = field(repr=False, default_factory=random.Random)


@dataclass(frozen=True)
class ForcedFailure:
    status: int
    code: int


class Faults:
    """Thread-safe: tests change faults from another thread than the server's loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.latency = 0.0
        self._fail: list[FailRule] = []
        self._limited: list[int] = []  # Retry-After of the next forced 429s, in order
        self._limit_rate: tuple[float, int, random.Random] | None = None  # (rate, Retry-After, rng)
        self._drops: dict[str | None, int] = {}
        self._drop_rate: tuple[float, random.Random] | None = None
        self._before: dict[str, list[Hook]] = {}

    def fail(
        self,
        op: str | None = None,
        status: int = 500,
        count: int | None = None,
        rate: float | None = None,
        seed: int | None = None,
        code: int | None = None,
    ) -> None:
        """The next ``count`` calls of ``op`` fail with ``status``; with ``count=None``, each call
        fails with probability ``rate`` (default 1.0), reproducibly for a given ``seed``."""
        if status < 400 or status > 599:
            raise ValueError("fault status must be 4xx or 5xx")
        with self._lock:
            self._fail.append(
                FailRule(
                    op=op,
                    status=status,
                    count=count,
                    rate=1.0 if rate is None else rate,
                    code=code if code is not None else (1000 if status >= 500 else 1001),
                    rng=random.Random(seed),
                )
            )

    def rate_limit(self, count: int = 1, retry_after: int = 300) -> None:
        """The next ``count`` authenticated requests get 429/971 with this ``Retry-After``."""
        with self._lock:
            self._limited.extend([int(retry_after)] * count)

    def rate_limit_randomly(self, rate: float, retry_after: int = 1, seed: int | None = None) -> None:
        """Each authenticated request (after the forced ones) gets 429/971 with this ``Retry-After`` with
        probability ``rate``, reproducibly for a given ``seed``; ``rate=0`` stops it."""
        with self._lock:
            self._limit_rate = (rate, int(retry_after), random.Random(seed)) if rate > 0 else None

    def drop_writes_randomly(self, rate: float, seed: int | None = None) -> None:
        """Each successful write (after the counted drops) applies and then loses its answer with probability
        ``rate``, reproducibly for a given ``seed``; ``rate=0`` stops it."""
        with self._lock:
            self._drop_rate = (rate, random.Random(seed)) if rate > 0 else None

    def drop_after_write(self, op: str | None = None, count: int = 1) -> None:
        """The next ``count`` successful writes of ``op`` (None: any write) apply, then the connection
        closes without an answer."""
        with self._lock:
            self._drops[op] = self._drops.get(op, 0) + count

    def before(self, op: str, action: Hook) -> None:
        """The next request of ``op`` first runs ``action`` (awaited when it returns an awaitable), after
        authentication and routing and before it is handled: a deterministic stand-in for another
        client's request that lands just before ours (e.g. a foreign configuration PUT between our GET and
        our PUT). Each hook is used once, in the order registered; a request the action itself makes
        takes the next registered hook of its operation, if any (an action may register the next one
        after its own requests). In-process only (not settable through ``POST /__sandbox/faults``)."""
        with self._lock:
            self._before.setdefault(op, []).append(action)

    def clear(self) -> None:
        with self._lock:
            self.latency = 0.0
            self._fail.clear()
            self._limited.clear()
            self._limit_rate = None
            self._drops.clear()
            self._drop_rate = None
            self._before.clear()

    # --- consulted by the server -------------------------------------------------------------

    def take_rate_limit(self) -> int | None:
        with self._lock:
            if self._limited:
                return self._limited.pop(0)
            if self._limit_rate is not None and self._limit_rate[2].random() < self._limit_rate[0]:
                return self._limit_rate[1]
            return None

    def take_failure(self, op: str) -> ForcedFailure | None:
        with self._lock:
            for rule in self._fail:
                if rule.op not in (None, op):
                    continue
                if rule.count is not None:
                    if rule.count <= 0:
                        continue
                    rule.count -= 1
                    return ForcedFailure(rule.status, rule.code)
                if rule.rng.random() < rule.rate:
                    return ForcedFailure(rule.status, rule.code)
            return None

    def take_drop(self, op: str) -> bool:
        with self._lock:
            for key in (op, None):
                if self._drops.get(key, 0) > 0:
                    self._drops[key] -= 1
                    return True
            return self._drop_rate is not None and self._drop_rate[1].random() < self._drop_rate[0]

    def take_before(self, op: str) -> Hook | None:
        with self._lock:
            hooks = self._before.get(op)
            return hooks.pop(0) if hooks else None

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {
                "latency": self.latency,
                "fail": [
                    {"op": r.op, "status": r.status, "count": r.count, "rate": r.rate, "code": r.code}
                    for r in self._fail
                    if r.count is None or r.count > 0
                ],
                "rate_limit": list(self._limited),
                "rate_limit_rate": self._limit_rate[0] if self._limit_rate else 0.0,
                "drop_after_write": {k or "*": v for k, v in self._drops.items() if v > 0},
                "drop_rate": self._drop_rate[0] if self._drop_rate else 0.0,
                "before": {k: len(v) for k, v in self._before.items() if v},
            }

    def apply(self, spec: dict[str, Any]) -> None:
        """Apply a JSON fault description (the body of ``POST /__sandbox/faults``)."""
        if spec.get("clear"):
            self.clear()
        if "latency" in spec:
            self.latency = float(spec["latency"])
        for item in _as_list(spec.get("fail")):
            self.fail(**item)
        for item in _as_list(spec.get("rate_limit")):
            self.rate_limit(**item)
        for item in _as_list(spec.get("drop_after_write")):
            self.drop_after_write(**item)


def _as_list(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]
