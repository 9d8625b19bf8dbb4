"""Fault injection for tests, thread-safe (set from the test's thread, read on the server's loop).

``fail(count, rpc=..., code=...)``: the next `count` calls (of `rpc`, or of any RPC) are answered with `code`
(UNAVAILABLE by default) before anything is done; with ``after=True`` the call is carried out first and its
answer replaced by the failure (a lost answer: the write happened, the client cannot know). ``delay(seconds,
rpc=..., count=...)``: calls wait that long before being handled (every call until ``clear()`` when `count` is
None), so a client's deadline can run out. ``fail_randomly(rate, rpcs=..., code=..., after=..., seed=...)``: every
call (of `rpcs`, or of any RPC) fails with probability `rate`, reproducibly for a given `seed`, until ``clear()``
(the soak: UNAVAILABLE and INTERNAL now and then, and writes carried out whose answer is lost).

A failure taken is marked on its call's record (``RequestRecord.injected``), so a test can count what it injected.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Collection
from dataclasses import dataclass

import grpc

__all__ = ["Failure", "Faults"]

_DEFAULT_MESSAGES = {
    grpc.StatusCode.UNAVAILABLE: "injected fault: server unavailable",
    grpc.StatusCode.INTERNAL: "internal server error",  # the server never says more
}


@dataclass
class Failure:
    code: grpc.StatusCode
    message: str
    after: bool
    rpc: str | None
    remaining: int


@dataclass
class _Random:
    code: grpc.StatusCode
    message: str
    after: bool
    rpcs: frozenset[str] | None
    rate: float
    rng: random.Random


@dataclass
class _Delay:
    seconds: float
    rpc: str | None
    remaining: int | None


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: list[Failure] = []
        self._delays: list[_Delay] = []
        self._random: list[_Random] = []

    def fail(
        self,
        count: int = 1,
        *,
        rpc: str | None = None,
        code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
        message: str | None = None,
        after: bool = False,
    ) -> None:
        if code == grpc.StatusCode.OK or count < 1:
            raise ValueError("a fault needs a failing code and a count of at least 1")
        text = message or _DEFAULT_MESSAGES.get(code, f"injected fault: {code.name}")
        with self._lock:
            self._failures.append(Failure(code=code, message=text, after=after, rpc=rpc, remaining=count))

    def fail_randomly(
        self,
        rate: float,
        *,
        rpcs: Collection[str] | None = None,
        code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
        message: str | None = None,
        after: bool = False,
        seed: int | None = None,
    ) -> None:
        """Each call of `rpcs` (None: any) fails with `code` with probability `rate`, before anything is done, or
        with ``after=True`` once it was carried out (its answer lost); reproducibly for a given `seed`."""
        if code == grpc.StatusCode.OK or not 0 < rate <= 1:
            raise ValueError("a random fault needs a failing code and a rate in (0, 1]")
        text = message or _DEFAULT_MESSAGES.get(code, f"injected fault: {code.name}")
        with self._lock:
            self._random.append(_Random(code=code, message=text, after=after,
                                        rpcs=None if rpcs is None else frozenset(rpcs), rate=rate,
                                        rng=random.Random(seed)))

    def delay(self, seconds: float, *, rpc: str | None = None, count: int | None = None) -> None:
        with self._lock:
            self._delays.append(_Delay(seconds=seconds, rpc=rpc, remaining=count))

    def clear(self) -> None:
        with self._lock:
            self._failures.clear()
            self._delays.clear()
            self._random.clear()

    # --- consulted by the service ------------------------------------------------------------------

    def take_failure(self, rpc: str, *, after: bool) -> Failure | None:
        with self._lock:
            for failure in self._failures:
                if failure.after == after and failure.rpc in (None, rpc) and failure.remaining > 0:
                    failure.remaining -= 1
                    return failure
            for rule in self._random:
                if rule.after == after and (rule.rpcs is None or rpc in rule.rpcs) and rule.rng.random() < rule.rate:
                    return Failure(code=rule.code, message=rule.message, after=after, rpc=rpc, remaining=0)
            return None

    def take_delay(self, rpc: str) -> float:
        with self._lock:
            total = 0.0
            for delay in self._delays:
                if delay.rpc not in (None, rpc) or delay.remaining == 0:
                    continue
                if delay.remaining is not None:
                    delay.remaining -= 1
                total += delay.seconds
            return total
