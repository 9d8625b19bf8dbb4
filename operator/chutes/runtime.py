"""Assemble and run the operator: one kopf registry holding the lifecycle handlers and the front doors
this run serves, kopf settings that suit us, and the shared clients in kopf's memo.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

import kopf

from chutes import kube
from chutes.cores import CorePool
from chutes.settings import FrontDoor, Settings

logger = logging.getLogger("chutes")

GROUP = "chutes.troubleshat.com"
FINALIZER = f"{GROUP}/cleanup"

# Front doors built so far: name -> "module:function" taking (registry, settings). A door that is
# switched on but not listed here is reported at start (see `unavailable_front_doors`).
FRONT_DOORS: dict[FrontDoor, str] = {
    "chutes": "chutes.frontdoors.gateways.handlers:register",
}

Register = Callable[[kopf.OperatorRegistry, Settings], None]


def served_front_doors(settings: Settings, environ: Mapping[str, str]) -> tuple[FrontDoor, ...]:
    return tuple(door for door in settings.front_doors(environ) if door in FRONT_DOORS)


def unavailable_front_doors(settings: Settings, environ: Mapping[str, str]) -> tuple[FrontDoor, ...]:
    return tuple(door for door in settings.front_doors(environ) if door not in FRONT_DOORS)


def _load(door: FrontDoor) -> Register:
    module_name, _, function = FRONT_DOORS[door].partition(":")
    register: Register = getattr(importlib.import_module(module_name), function)
    return register


def configure_kopf(settings: kopf.OperatorSettings) -> None:
    """kopf settings shared by every front door."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    # Events are posted on purpose (creates, deletes, refusals), not for every log line.
    settings.posting.level = logging.WARNING
    settings.networking.error_backoffs = [1, 2, 5, 10, 30]
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330


def build_registry(settings: Settings, environ: Mapping[str, str]) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    doors = served_front_doors(settings, environ)

    kopf.on.login(registry=registry, id="login")(kube.login)

    @kopf.on.startup(registry=registry)
    async def operator_startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        configure_kopf(settings)
        memo.kube = await kube.connect()
        logger.info("Serving front doors: %s", ", ".join(doors) or "none")
        for door in unavailable_front_doors(memo.config, environ):
            logger.warning("Front door %r is switched on but not part of this build; it is not served.", door)

    @kopf.on.cleanup(registry=registry)
    async def operator_cleanup(memo: kopf.Memo, **_: Any) -> None:
        await memo.cores.aclose()
        api = memo.get("kube")
        if api is not None:
            await api.close()

    @kopf.on.probe(registry=registry, id="front_doors")
    def probe_front_doors(**_: Any) -> str:
        return ",".join(doors)

    for door in doors:
        _load(door)(registry, settings)
    return registry


def new_memo(settings: Settings) -> kopf.Memo:
    memo = kopf.Memo()
    memo.config = settings
    memo.cores = CorePool(settings)
    return memo


async def run(
    settings: Settings,
    environ: Mapping[str, str],
    *,
    stop_flag: asyncio.Event | threading.Event | None = None,
    ready_flag: asyncio.Event | threading.Event | None = None,
) -> None:
    """Run the operator until stopped (signal or ``stop_flag``)."""
    registry = build_registry(settings, environ)
    namespaces = settings.namespaces
    await kopf.operator(
        registry=registry,
        memo=new_memo(settings),
        clusterwide=not namespaces,
        namespaces=namespaces,
        standalone=settings.standalone,
        peering_name=None if settings.standalone else settings.peering,
        priority=settings.priority,
        liveness_endpoint=settings.liveness_endpoint,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )
