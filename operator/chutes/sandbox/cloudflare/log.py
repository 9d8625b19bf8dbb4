"""Ordered request log and per-operation counters (thread-safe reads for tests)."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

SECRET_FIELDS = frozenset({"tunnel_secret", "client_secret", "secret"})


@dataclass(frozen=True)
class RequestRecord:
    """One request as the sandbox saw it. ``body`` is the parsed JSON (secrets redacted) or None;
    the caller is identified by its token's seed ``token_name``, never by the token itself."""

    method: str
    path: str
    op: str | None
    status: int
    query: dict[str, str]
    body: Any
    token_name: str | None = None
    dropped: bool = False  # the write was applied but the connection closed without a response

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ResponseEvent:
    """Passed to ``CloudflareSandbox.on_response`` for every API request answered, or applied and then dropped
    (tests)."""

    op: str | None
    method: str
    route: str | None  # the route's OpenAPI-style template, None for unknown paths
    status: int
    body: Any
    dropped: bool = False  # a write applied whose answer the client never got (drop-after-write)


def redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "<redacted>" if k in SECRET_FIELDS else redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


class RequestLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []
        self._counters: Counter[str] = Counter()

    def add(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)
            if record.op is not None:
                self._counters[record.op] += 1

    @property
    def records(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    @property
    def counters(self) -> Counter[str]:
        with self._lock:
            return Counter(self._counters)

    def reset(self) -> None:
        with self._lock:
            self._records.clear()
            self._counters.clear()
