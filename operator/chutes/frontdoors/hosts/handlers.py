"""kopf wiring of the router-hosts front door: thin. Watch events of HostMappings, IngressRoutes and
IngressRouteTCPs name the source to look at; the door's own loop (:mod:`runner`) does the rest.

Only low-level ``on.event`` handlers: kopf adds no finalizer to anything and writes no annotation of its own.
A HostMapping gets upstream's finalizer from the door itself (:mod:`reconcile`), a route none. On when
``CHUTES_ROUTER_HOSTS_ADDRESS`` is set; the TLS files are checked before anything starts (a wrong or missing
file stops the process with a message naming it).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from chutes import kube
from chutes.frontdoors.hosts import desired as d
from chutes.frontdoors.hosts.reconcile import Door
from chutes.frontdoors.hosts.runner import HostsRunner
from chutes.frontdoors.problems import operator_pod
from chutes.hosts_core import GrpcHostsBackend, TlsFilesInvalid, load_tls_files
from chutes.settings import Settings, SettingsError

__all__ = ["register"]

logger = logging.getLogger(__name__)

TLS_SETTINGS = {"CA": "CHUTES_ROUTER_HOSTS_TLS_CA", "certificate": "CHUTES_ROUTER_HOSTS_TLS_CERT",
                "key": "CHUTES_ROUTER_HOSTS_TLS_KEY"}


def check_tls(settings: Settings) -> None:
    """The three TLS files are there, readable and what they should be, else :class:`SettingsError` naming the
    setting and the file (never its content)."""
    try:
        load_tls_files(settings.router_hosts_tls_ca or "", settings.router_hosts_tls_cert or "",
                       settings.router_hosts_tls_key or "")
    except TlsFilesInvalid as exc:
        raise SettingsError(f"invalid settings: {TLS_SETTINGS.get(exc.role, 'router-hosts TLS')}: {exc.message}") \
            from None


def register(registry: kopf.OperatorRegistry, settings: Settings, environ: Mapping[str, str]) -> None:
    check_tls(settings)
    address = settings.router_hosts_address or ""
    if not settings.default_ingress_ip:
        logger.warning("CHUTES_DEFAULT_INGRESS_IP is not set: Traefik route hostnames cannot be registered")

    @kopf.on.startup(registry=registry, id="hosts")
    async def hosts_startup(memo: kopf.Memo, **_: Any) -> None:
        backend = GrpcHostsBackend(address, settings.router_hosts_tls_ca or "", settings.router_hosts_tls_cert or "",
                                   settings.router_hosts_tls_key or "")
        post = functools.partial(kube.post_event, memo.kube)
        door = Door(memo.kube, backend, lambda body, type_, reason, message: post(body, type_, reason, message),
                    ingress_ip=settings.default_ingress_ip, policy=settings.policy, dry_run=settings.dry_run)
        runner = HostsRunner(door, resync_interval=settings.resync_interval, sweep_interval=settings.sweep_interval,
                             sweep_max_deletions=settings.sweep_max_deletions, namespaces=settings.namespaces,
                             operator_pod=operator_pod(environ))
        readiness = memo.get("readiness")
        if readiness is not None:
            readiness.add_check(lambda: None if door.answered else f"router-hosts server {address} has not answered")
        memo.hosts = runner
        runner.start()
        logger.info("router-hosts front door: server %s, ingress IP %s", address,
                    settings.default_ingress_ip or "(none)")

    @kopf.on.cleanup(registry=registry, id="hosts")
    async def hosts_cleanup(memo: kopf.Memo, **_: Any) -> None:
        runner: HostsRunner | None = memo.get("hosts")
        if runner is not None:
            await runner.stop()
            await runner.door.backend.close()

    # async: kopf runs a sync handler in a thread, and the queue belongs to the operator's loop.
    @kopf.on.event(d.GROUP, d.VERSION, d.PLURAL, registry=registry, id="hosts-hostmappings")
    async def hostmapping_event(event: Mapping[str, Any], body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        heard(memo, "HostMapping", event, body)

    @kopf.on.event(d.TRAEFIK_GROUP, d.TRAEFIK_VERSION, "ingressroutes", registry=registry, id="hosts-ingressroutes")
    async def ingressroute_event(event: Mapping[str, Any], body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        heard(memo, "IngressRoute", event, body)

    @kopf.on.event(d.TRAEFIK_GROUP, d.TRAEFIK_VERSION, "ingressroutetcps", registry=registry,
                   id="hosts-ingressroutetcps")
    async def ingressroutetcp_event(event: Mapping[str, Any], body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        heard(memo, "IngressRouteTCP", event, body)


def heard(memo: kopf.Memo, kind: str, event: Mapping[str, Any], body: kopf.Body) -> None:
    runner: HostsRunner | None = memo.get("hosts")
    if runner is not None:
        runner.heard(kind, event.get("type"), dict(body))
