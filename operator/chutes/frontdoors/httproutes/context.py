"""The HTTPRoute door's context: its process-wide state (:class:`Runtime`, in kopf's memo as ``memo.cfzt``: the
per-route and per-hostname locks, deferred actions) and the
:class:`Context` every reconcile, teardown and sweep of the door is given (clients, the ledger, the route index).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio import client

from chutes.authorization import HostnameRules
from chutes.claims import ClaimStore
from chutes.cores import CorePool
from chutes.frontdoors.httproutes import desired as d

logger = logging.getLogger(__name__)

Index = Mapping[tuple[str, str], Iterable[d.RouteRef]]

@dataclass
class Runtime:
    """The front door's process-wide state (in kopf's memo as ``memo.cfzt``)."""

    operator_namespace: str
    parallel: int = 64
    _locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)
    _later: dict[tuple[str, str], asyncio.Task[None]] = field(default_factory=dict)

    def soon(self, key: tuple[str, str], delay: float, action: Callable[[], Awaitable[None]]) -> None:
        """Run `action` once after `delay` seconds, however often it is asked for meanwhile (debounce)."""
        if key in self._later:
            return

        async def later() -> None:
            try:
                await asyncio.sleep(delay)
                await action()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("Deferred %s failed", "/".join(key))
            finally:
                self._later.pop(key, None)

        self._later[key] = asyncio.create_task(later(), name=f"cfzt {'/'.join(key)}")

    async def aclose(self) -> None:
        tasks, self._later = list(self._later.values()), {}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def lock(self, namespace: str, name: str) -> asyncio.Lock:
        """One reconcile or teardown of a route at a time (kopf handler, timers and template handler)."""
        return self._locks.setdefault((namespace, name), asyncio.Lock())

    @contextlib.asynccontextmanager
    async def hostnames(self, *hostnames: str) -> AsyncIterator[None]:
        """Exclusive use of hostnames (taken in sorted order: two routes swapping names cannot deadlock), so
        that one route's teardown and another's publish of the same hostname do not interleave."""
        async with contextlib.AsyncExitStack() as stack:
            for hostname in sorted({h for h in hostnames if h}):
                await stack.enter_async_context(self._locks.setdefault(("", hostname), asyncio.Lock()))
            yield


@dataclass
class Context:
    api: client.ApiClient
    cores: CorePool
    runtime: Runtime
    index: Index
    claims: ClaimStore  # the ledger: who holds which hostname, and what was created for it
    rules: HostnameRules = field(default_factory=HostnameRules.allow_all)  # which namespace may publish what
    allow_adoption: bool = False  # the installation permits adoption everywhere (CHUTES_ALLOW_ADOPTION)
    # One batch's reads of tenants and templates (:func:`upkeep.reconcile_refs`, e.g. a resync pass: each object read
    # once for all the batch's routes; a failed read is not kept); None: read each time.
    lookups: dict[tuple[str, str, str], asyncio.Future[dict[str, Any] | None]] | None = None

    @property
    def operator_namespace(self) -> str:
        return self.runtime.operator_namespace

    def claimants(self, hostname: str) -> list[d.RouteRef]:
        return list(self.index.get(("hostname", hostname), ()))

    def users_of_tenant(self, tenant: str) -> list[d.RouteRef]:
        return list(self.index.get(("tenant", tenant), ()))

    def users_of_template(self, template: str) -> list[d.RouteRef]:
        users = set(self.index.get(("template", template), ()))
        if template.startswith("base-"):
            users.update(self.index.get(("tenant", template.removeprefix("base-")), ()))
        return sorted(users)

