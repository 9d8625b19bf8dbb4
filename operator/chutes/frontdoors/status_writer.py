"""A source object's status as it is being reconciled (ChuteConfig, ChuteGateway, Tunnel, TunnelBinding...): set
fields and conditions step by step and write them out after each step (only when something changed), so a restart
resumes where it stopped.

Two writers may touch one status (the reconcile and the cloudflared watcher), so every write carries the
resourceVersion it was based on. On a conflict the writer reloads the live status, re-applies only the
fields and conditions it set itself, and tries again: nobody's update is lost.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from chutes import conditions as c
from chutes.kube import StaleObject

# write(changes, resource_version) -> the new resourceVersion; raises StaleWrite on a conflict.
Write = Callable[[dict[str, Any], str | None], Awaitable[str | None]]
# reload() -> (status, resourceVersion) of the live object, or None when it is gone.
Reload = Callable[[], Awaitable[tuple[dict[str, Any], str | None] | None]]

MAX_CONFLICTS = 5


StaleWrite = StaleObject  # the object changed since we read it (HTTP 409)


class StatusWriter:
    def __init__(
        self,
        current: Mapping[str, Any] | None,
        generation: int | None,
        write: Write,
        *,
        resource_version: str | None = None,
        reload: Reload | None = None,
    ) -> None:
        self._written: dict[str, Any] = copy.deepcopy(dict(current or {}))
        self.status: dict[str, Any] = copy.deepcopy(self._written)
        self.generation = generation
        self._write = write
        self._reload = reload
        self._version = resource_version
        self._mine: dict[str, Any] = {}  # fields this writer set (None = removed)
        self._my_conditions: dict[str, dict[str, Any]] = {}

    def get(self, key: str) -> Any:
        return self.status.get(key)

    def set(self, **fields: Any) -> None:
        for key, value in fields.items():
            if value is None:
                self.status.pop(key, None)
            else:
                self.status[key] = value
            self._mine[key] = value

    def condition(self, type_: str, status: c.Status, reason: str, message: str = "") -> None:
        self.status["conditions"] = c.set_condition(
            self.status.get("conditions"), type_, status, reason, message, self.generation
        )
        self._my_conditions[type_] = dict(c.find(self.status["conditions"], type_) or {})

    def is_true(self, type_: str) -> bool:
        return c.is_true(self.status.get("conditions"), type_)

    def _rebase(self, live: Mapping[str, Any]) -> None:
        """Our own changes on top of the live status."""
        self._written = copy.deepcopy(dict(live))
        status = copy.deepcopy(self._written)
        for key, value in self._mine.items():
            if value is None:
                status.pop(key, None)
            else:
                status[key] = copy.deepcopy(value)
        conditions = status.get("conditions")
        for type_, mine in self._my_conditions.items():
            conditions = c.set_condition(conditions, type_, mine["status"], mine["reason"], mine["message"],
                                         mine.get("observedGeneration"))
        if conditions is not None:
            status["conditions"] = conditions
        self.status = status

    async def flush(self) -> None:
        for _ in range(MAX_CONFLICTS):
            if self.status == self._written:
                return
            changes = {k: v for k, v in self.status.items() if self._written.get(k) != v}
            changes.update({k: None for k in self._written if k not in self.status})  # merge-patch removal
            try:
                self._version = await self._write(changes, self._version)
            except StaleWrite:
                if self._reload is None:
                    raise
                live = await self._reload()
                if live is None:
                    return
                status, self._version = live
                self._rebase(status)
                continue
            self._written = copy.deepcopy(self.status)
            return
        raise StaleWrite(f"status changed concurrently {MAX_CONFLICTS} times in a row")
