"""The chutes front door's orphan sweep: what every ChuteGateway wants (from fresh listings), and one pass over a
ChuteConfig's account and zone, judged by this installation's claims and DNS markers (:mod:`chutes.sweep.verdict`).

A gateway wants its hostname (spec, resolved in its config's domain; and the one its status says it published,
until its own reconcile moves it) and its tunnel (``<account>/chute-<ns>-<name>``, owner-qualified), unless the
hostname rules refuse the hostname to its namespace. Gateways being deleted keep everything: their finalizer
tears it down. A status is user-writable, but what it names only ever keeps the gateway's *own* claims.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from kubernetes_asyncio import client

from chutes import kube
from chutes.claims import ClaimStore
from chutes.cloudflare_core.models import normalize_name
from chutes.cores import CorePool
from chutes.frontdoors.gateways import desired as d
from chutes.frontdoors.gateways.desired import FRONT_DOOR
from chutes.frontdoors.gateways.read import read_token
from chutes.frontdoors.problems import Problem
from chutes.sweep import engine
from chutes.sweep.verdict import DoorNames, Wants

logger = logging.getLogger(__name__)

FIRST_SWEEP_DELAY = 60.0  # seconds after start (or a config's creation) before the first pass

NAMES = DoorNames(door=FRONT_DOOR, kinds=frozenset({d.GATEWAY_KIND}))


class Rules(Protocol):
    def allows(self, namespace: str, hostname: str) -> bool: ...


def gateway_wants(gateways: Iterable[Mapping[str, Any]], configs: Iterable[Mapping[str, Any]], owner_id: str,
                  rules: Rules | None = None, namespaces: Iterable[str] = ()) -> Wants:
    """What `gateways` want, their short hostnames resolved in the domain of their `configs`; `namespaces`: the
    namespaces served (none: all; the sweep judges only the sources of those)."""
    by_name = {str(c["metadata"]["name"]): c.get("spec") or {} for c in configs}
    sources: dict[str, frozenset[str]] = {}
    deleting: set[str] = set()
    for gateway in gateways:
        meta, spec, status = gateway["metadata"], gateway.get("spec") or {}, gateway.get("status") or {}
        namespace, name = str(meta.get("namespace") or ""), str(meta["name"])
        source = f"{d.GATEWAY_KIND}/{namespace}/{name}"
        if meta.get("deletionTimestamp"):
            deleting.add(source)
        config = by_name.get(str(spec.get("configRef") or ""))
        keys: set[str] = set()
        hostnames: list[str] = []
        if status.get("hostname"):
            hostnames.append(normalize_name(str(status["hostname"])))
        raw = str(spec.get("hostname") or "")
        domain = str((config or {}).get("domain") or "").lower()
        if domain:
            with contextlib.suppress(d.SpecError):
                hostnames.append(d.resolve_hostname(raw, domain))
        elif "." in raw:  # its config is missing: a full name still says what it wants
            hostnames.append(normalize_name(raw))
        keys.update(h for h in hostnames if h and (rules is None or rules.allows(namespace, h)))
        if config is not None and config.get("accountId"):
            keys.add(f"{config['accountId']}/{d.cloudflare_name(namespace, name, owner_id)}")
        sources[source] = frozenset(keys)
    return Wants(sources=sources, deleting=frozenset(deleting), namespaces=frozenset(namespaces) or None)


async def load_wants(api: client.ApiClient, owner_id: str, rules: Rules | None,
                     namespaces: tuple[str, ...] = ()) -> Wants:
    gateways = await kube.list_custom(api, d.GROUP, d.VERSION, d.GATEWAY_PLURAL)
    configs = await kube.list_custom(api, d.GROUP, d.VERSION, d.CONFIG_PLURAL)
    return gateway_wants(gateways, configs, owner_id, rules, namespaces)


async def sweep_config(api: client.ApiClient, cores: CorePool, ledger: ClaimStore, name: str, spec: Mapping[str, Any],
                       cap: int, rules: Rules | None = None,
                       namespaces: tuple[str, ...] = ()) -> engine.SweepReport | None:
    """One pass over the config's account and zone, judging the gateways' claims and records against what every
    gateway wants; None when the config's token cannot be read (nothing is swept)."""
    try:
        token = await read_token(api, spec)
    except Problem as problem:
        logger.info("Orphan sweep of ChuteConfig %s skipped: %s", name, problem.message)
        return None
    core = cores.core_for(token)
    scope = engine.Scope(NAMES, str(spec.get("accountId") or ""), (str(spec.get("zoneId") or ""),),
                         label=f"ChuteConfig {name}")

    async def wants() -> Wants:
        return await load_wants(api, core.owner_id, rules, namespaces)

    return await engine.sweep(core, scope, wants, cap, ledger)
