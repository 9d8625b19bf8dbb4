"""A source object's status as it is being reconciled (ChuteConfig, ChuteGateway, Tunnel, TunnelBinding...): set
fields and conditions step by step and write them out after each step (only when something changed), so a restart
resumes where it stopped.

Two writers may touch one status (the reconcile and the cloudflared watcher), so every write carries the
resourceVersion it was based on. On a conflict the writer reloads the live status, re-applies only the
fields and conditions it set itself, and tries again: nobody's update is lost.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from kubernetes_asyncio import client

from chutes import conditions as c
from chutes import kube
from chutes.claims import ClaimLost
from chutes.frontdoors.problems import Problem
from chutes.frontdoors.retries import LOST_RETRY

# write(changes, resource_version) -> the new resourceVersion; raises StaleWrite on a conflict.
Write = Callable[[dict[str, Any], str | None], Awaitable[str | None]]
# reload() -> (status, resourceVersion) of the live object, or None when it is gone.
Reload = Callable[[], Awaitable[tuple[dict[str, Any], str | None] | None]]

MAX_CONFLICTS = 5


StaleWrite = kube.StaleObject  # the object changed since we read it (HTTP 409)


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


@contextlib.asynccontextmanager
async def reported(status: StatusWriter, **when_refused: Any) -> AsyncIterator[None]:
    """A reconcile whose every refusal (a :class:`Problem`) ends up in the Ready condition (with `when_refused`
    fields, e.g. ``ready=False``) and is raised again; a claim lost under it is retried soon; the status is written
    out whatever happens."""
    try:
        try:
            yield
        except ClaimLost as lost:
            raise Problem(c.CLOUDFLARE_UNAVAILABLE, f"the ledger of claims changed meanwhile: {lost}",
                          LOST_RETRY) from None
    except Problem as problem:
        status.set(observedGeneration=status.generation, **when_refused)
        status.condition(c.READY, "False", problem.reason, problem.message)
        raise
    finally:
        await status.flush()


def for_custom(api: client.ApiClient, group: str, version: str, plural: str, body: Mapping[str, Any]) -> StatusWriter:
    """The status writer of a custom object (cluster-scoped when its metadata has no namespace), reloading it on
    a conflict."""
    meta = body["metadata"]
    name, namespace = meta["name"], meta.get("namespace") or None

    async def write(changes: dict[str, Any], resource_version: str | None) -> str | None:
        return await kube.patch_custom_status(api, group, version, plural, name, namespace, changes, resource_version)

    async def reload() -> tuple[dict[str, Any], str | None] | None:
        live = await kube.get_custom(api, group, version, plural, name, namespace)
        if live is None:
            return None
        return dict(live.get("status") or {}), live["metadata"].get("resourceVersion")

    return StatusWriter(body.get("status"), meta.get("generation"), write,
                        resource_version=meta.get("resourceVersion"), reload=reload)
