"""Assemble and run the operator: one kopf registry holding the lifecycle handlers and the front doors
this run serves, kopf settings that suit us, and the shared clients in kopf's memo.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import kopf

from chutes import kube
from chutes.authorization import HostnameRules, HostnameRulesError
from chutes.claims import ClaimStore, ledger_namespace
from chutes.cores import CorePool
from chutes.frontdoors import annotation_keys
from chutes.frontdoors.gateways import handlers as gateways
from chutes.frontdoors.httproutes import handlers as httproutes
from chutes.frontdoors.sessions import handlers as sessions
from chutes.frontdoors.slots import Slots
from chutes.frontdoors.tunnels import handlers as tunnels
from chutes.leases import TunnelLeases, default_identity
from chutes.observability.readiness import Insights, Readiness, Vault
from chutes.observability.server import MetricsServer
from chutes.settings import FrontDoor, Settings, SettingsError

logger = logging.getLogger("chutes")

GROUP = "chutes.troubleshat.com"
FINALIZER = f"{GROUP}/cleanup"

Register = Callable[..., None]  # (registry, settings, environ) or (registry, settings)
ImpliedNamespaces = Callable[[Mapping[str, str]], tuple[str, ...]]


@dataclass(frozen=True)
class Door:
    """How a front door joins the operator: `register` adds its handlers to the registry; `implied_namespaces`
    (optional) gives the namespaces to watch when it is served alone and none are configured."""

    register: Register
    implied_namespaces: ImpliedNamespaces | None = None


def _register_hosts(registry: kopf.OperatorRegistry, settings: Settings, environ: Mapping[str, str]) -> None:
    """The router-hosts door, imported when it is served only: its gRPC, protobuf and cryptography weigh about 19 MB
    (RSS) that a run without it need not carry."""
    from chutes.frontdoors.hosts import handlers as hosts

    hosts.register(registry, settings, environ)


# Front doors built so far. A door that is switched on but not listed here is reported at start (see
# `unavailable_front_doors`).
FRONT_DOORS: dict[FrontDoor, Door] = {
    "chutes": Door(gateways.register),
    "httproutes": Door(httproutes.register),
    "sessions": Door(sessions.register, sessions.implied_namespaces),
    "hosts": Door(_register_hosts),
    "tunnels": Door(tunnels.register),
}


def served_front_doors(settings: Settings, environ: Mapping[str, str]) -> tuple[FrontDoor, ...]:
    return tuple(door for door in settings.front_doors(environ) if door in FRONT_DOORS)


def unavailable_front_doors(settings: Settings, environ: Mapping[str, str]) -> tuple[FrontDoor, ...]:
    return tuple(door for door in settings.front_doors(environ) if door not in FRONT_DOORS)


def _register(door: FrontDoor, registry: kopf.OperatorRegistry, settings: Settings,
              environ: Mapping[str, str]) -> None:
    """Call the door's `register` with (registry, settings, environ), or (registry, settings) when it takes
    only two positional parameters."""
    register = FRONT_DOORS[door].register
    positional = [
        p for p in inspect.signature(register).parameters.values()
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    if len(positional) >= 3:
        register(registry, settings, environ)
    else:
        register(registry, settings)


def implied_namespaces(settings: Settings, environ: Mapping[str, str]) -> tuple[str, ...]:
    """Namespaces to watch when none are configured: those of the only door served, if it has any."""
    doors = served_front_doors(settings, environ)
    if settings.namespaces or len(doors) != 1:
        return ()
    implied = FRONT_DOORS[doors[0]].implied_namespaces
    return tuple(implied(environ)) if implied is not None else ()


# The annotations users write under kopf's storage prefix (ours): kopf leaves every annotation under its prefix
# out of an object's essence, so a change of one of these would run no update handler (an Access list emptied on a
# Service left its Access application in place).
TRACKED_ANNOTATIONS = annotation_keys.INPUT_KEYS | tunnels.TRACKED_ANNOTATIONS


def _with_tracked(essence: Any, annotations: Mapping[str, Any] | None) -> Any:
    """`essence` with the :data:`TRACKED_ANNOTATIONS` of `annotations` put back."""
    tracked = {key: value for key, value in (annotations or {}).items() if key in TRACKED_ANNOTATIONS}
    if tracked:
        essence.setdefault("metadata", {}).setdefault("annotations", {}).update(tracked)
    return essence


class DiffBase(kopf.AnnotationsDiffBaseStorage):
    """kopf's diff base, with :data:`TRACKED_ANNOTATIONS` kept in the essence (changing one is a change)."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        essence = super().build(body=body, extra_fields=extra_fields)
        return cast(kopf.BodyEssence, _with_tracked(essence, body.get("metadata", {}).get("annotations")))


class Progress(kopf.AnnotationsProgressStorage):
    """kopf's progress storage, whose clearing of an essence keeps :data:`TRACKED_ANNOTATIONS`."""

    def clear(self, *, essence: kopf.BodyEssence) -> kopf.BodyEssence:
        annotations = dict((essence.get("metadata") or {}).get("annotations") or {})
        return cast(kopf.BodyEssence, _with_tracked(super().clear(essence=essence), annotations))


def configure_kopf(settings: kopf.OperatorSettings) -> None:
    """kopf settings shared by every front door."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = Progress(prefix=GROUP)
    settings.persistence.diffbase_storage = DiffBase(prefix=GROUP, key="last-handled-configuration")
    # Events are posted on purpose (creates, deletes, refusals), not for every log line.
    settings.posting.level = logging.WARNING
    settings.networking.error_backoffs = [1, 2, 5, 10, 30]
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # A timer still in a pass when its object is deleted (a resync) holds the finalizer until it has exited: kopf
    # looks again after this many seconds (60 by default: a ChuteConfig deleted during its resync stayed a minute).
    settings.background.cancellation_polling = 1.0


def build_registry(settings: Settings, environ: Mapping[str, str]) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    doors = served_front_doors(settings, environ)

    kopf.on.login(registry=registry, id="login")(kube.login)

    @kopf.on.startup(registry=registry)
    async def operator_startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        configure_kopf(settings)
        settings.queueing.exit_timeout = memo.config.stop_grace
        try:
            memo.kube = await kube.connect()
        except ConnectionError as exc:  # nothing to retry: the configuration must change
            raise kopf.PermanentError(str(exc)) from None
        # The ledger: claims (who holds a hostname or tunnel, what was made for it) and the tunnel Leases
        # (one configuration writer per tunnel across replicas), before any front door builds a core.
        ledger = ledger_namespace(memo.config.ledger_namespace, environ)
        memo.claims = ClaimStore(memo.kube, ledger, memo.config.owner_id)
        memo.leases = TunnelLeases(memo.kube, ledger, memo.config.owner_id, default_identity(environ))
        memo.cores.tunnel_lock = memo.leases.lock
        logger.info("Serving front doors: %s", ", ".join(doors) or "none")
        logger.info("Claims and tunnel leases in namespace %s", ledger)
        if memo.config.metrics_port:
            readiness: Readiness | None = memo.get("readiness")
            server = MetricsServer(memo.config.metrics_port, readiness.problems if readiness else list)
            memo.metrics_server = server
            port = await server.start()
            logger.info("Serving /metrics and /readyz on port %d", port)
        for door in unavailable_front_doors(memo.config, environ):
            logger.warning("Front door %r is switched on but not part of this build; it is not served.", door)

    @kopf.on.probe(registry=registry, id="front_doors")
    def probe_front_doors(**_: Any) -> str:
        return ",".join(doors)

    for door in doors:
        _register(door, registry, settings, environ)

    # Registered after the doors: kopf runs cleanup handlers in order, and the doors' own cleanups
    # (background tasks) must stop before the shared clients close.
    @kopf.on.cleanup(registry=registry)
    async def operator_cleanup(memo: kopf.Memo, **_: Any) -> None:
        server: MetricsServer | None = memo.get("metrics_server")
        if server is not None:
            await server.stop()
        await memo.cores.aclose()
        leases: TunnelLeases | None = memo.get("leases")
        if leases is not None:  # a Lease release still under way must not be cut off by the client's close
            await leases.aclose()
        api = memo.get("kube")
        if api is not None:
            await api.close()
        memo.cleaned_up.set()

    return registry


def load_hostname_rules(settings: Settings) -> HostnameRules:
    """The hostname rules file named by the settings, read once at start (a change applies at restart);
    none: every namespace may publish any hostname. A missing or malformed file is a :class:`SettingsError`."""
    if not settings.hostname_rules:
        return HostnameRules.allow_all()
    try:
        rules = HostnameRules.load(settings.hostname_rules)
    except HostnameRulesError as exc:
        raise SettingsError(f"invalid settings: CHUTES_HOSTNAME_RULES (--hostname-rules): {exc}") from None
    logger.info("Hostname rules from %s: %d rule(s)", settings.hostname_rules, len(rules.rules))
    return rules


def new_memo(settings: Settings) -> kopf.Memo:
    memo = kopf.Memo()
    memo.config = settings
    memo.hostname_rules = load_hostname_rules(settings)
    memo.shared_tunnel_targets = frozenset(settings.shared_tunnel_targets)
    memo.cores = CorePool(settings)
    memo.slots = Slots(settings.max_reconciles)
    memo.readiness = Readiness(Vault(), Insights())
    memo.cleaned_up = asyncio.Event()  # set by the last cleanup handler (sandbox.runner waits for it)
    return memo


async def run(
    settings: Settings,
    environ: Mapping[str, str],
    *,
    stop_flag: asyncio.Event | threading.Event | None = None,
    ready_flag: asyncio.Event | threading.Event | None = None,
    memo: kopf.Memo | None = None,
) -> None:
    """Run the operator until stopped (signal or ``stop_flag``); `memo`: one made by :func:`new_memo` for these
    settings, for a caller that watches the operator's readiness (``memo.readiness``), else a new one."""
    registry = build_registry(settings, environ)
    namespaces = settings.namespaces or implied_namespaces(settings, environ)
    memo = new_memo(settings) if memo is None else memo
    await kopf.operator(
        registry=registry,
        memo=memo,
        vault=memo.readiness.vault,
        insights=memo.readiness.insights,
        clusterwide=not namespaces,
        namespaces=namespaces,
        standalone=settings.standalone,
        peering_name=None if settings.standalone else settings.peering,
        priority=settings.peering_priority(environ),
        liveness_endpoint=settings.liveness_endpoint,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )
