"""Fault injection for tests, thread-safe (set from the test's thread, read on the server's loop).

``fail(count, rpc=..., code=...)``: the next `count` calls (of `rpc`, or of any RPC) are answered with `code`
(UNAVAILABLE by default) before anything is done; with ``after=True`` the call is carried out first and its
answer replaced by the failure (a lost answer: the write happened, the client cannot know). ``delay(seconds,
rpc=..., count=...)``: calls wait that long before being handled (every call until ``clear()`` when `count` is
None), so a client's deadline can run out.
"""

from __future__ import annotations

import threading
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
class _Delay:
    seconds: float
    rpc: str | None
    remaining: int | None


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: list[Failure] = []
        self._delays: list[_Delay] = []

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

    def delay(self, seconds: float, *, rpc: str | None = None, count: int | None = None) -> None:
        with self._lock:
            self._delays.append(_Delay(seconds=seconds, rpc=rpc, remaining=count))

    def clear(self) -> None:
        with self._lock:
            self._failures.clear()
            self._delays.clear()

    # --- consulted by the service ------------------------------------------------------------------

    def take_failure(self, rpc: str, *, after: bool) -> Failure | None:
        with self._lock:
            for failure in self._failures:
                if failure.after == after and failure.rpc in (None, rpc) and failure.remaining > 0:
                    failure.remaining -= 1
                    return failure
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
