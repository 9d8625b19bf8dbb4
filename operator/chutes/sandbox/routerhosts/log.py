"""The emulator's request log: every call, in order, with a summary of its request and the code it got."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

__all__ = ["RequestLog", "RequestRecord"]


@dataclass(frozen=True)
class RequestRecord:
    """One call. `request`: the fields present in the request (proto names; an empty wrapper shows as ``{}``).
    `client`: the Subject CN of the client certificate the call came with. `code` is ``CANCELLED`` for a call the
    client gave up (its deadline) while an injected delay held it. `injected`: ``""``, or the fault that made its
    answer: ``"failed"`` (nothing was done) or ``"answer lost"`` (carried out, then the failure answered)."""

    rpc: str
    request: dict[str, Any]
    code: str
    message: str
    client: str | None
    injected: str = ""


class RequestLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []

    def add(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)

    @property
    def records(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def counters(self) -> Counter[str]:
        """Calls by RPC name."""
        with self._lock:
            return Counter(record.rpc for record in self._records)

    def reset(self) -> None:
        with self._lock:
            self._records.clear()
