"""The chutes front door's orphan sweep: what every ChuteGateway claims (from fresh listings), and one pass
over a ChuteConfig's account and zone.

A gateway claims its tunnel and Access application names (``chute-<ns>-<name>``, owner-qualified) whatever
its state, and the hostnames it asks for (spec, resolved in its config's domain) and holds (status), unless
the hostname rules refuse them to its namespace. Gateways being deleted still claim (their finalizer's
cleanup owns their objects).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from kubernetes_asyncio import client

from chutes import kube
from chutes.cloudflare_core.models import normalize_name
from chutes.cores import CorePool
from chutes.frontdoors.gateways import desired as d
from chutes.frontdoors.gateways.reconcile import FRONT_DOOR, read_token
from chutes.frontdoors.problems import Problem
from chutes.sweep import engine
from chutes.sweep.plan import Claims, DoorNames

logger = logging.getLogger(__name__)

FIRST_SWEEP_DELAY = 60.0  # seconds after start (or a config's creation) before the first pass

NAMES = DoorNames(door=FRONT_DOOR, kinds=frozenset({d.GATEWAY_KIND}), tunnel_prefix=d.NAME_PREFIX,
                  app_prefix=d.NAME_PREFIX)


class Rules(Protocol):
    def allows(self, namespace: str, hostname: str) -> bool: ...


def gateway_claims(gateways: Iterable[Mapping[str, Any]], configs: Iterable[Mapping[str, Any]], owner_id: str,
                   rules: Rules | None = None) -> Claims:
    """What `gateways` claim, their short hostnames resolved in the domain of their `configs`."""
    domains = {str(c["metadata"]["name"]): str((c.get("spec") or {}).get("domain") or "").lower() for c in configs}
    names: set[str] = set()
    hostnames: set[str] = set()
    for gateway in gateways:
        meta, spec, status = gateway["metadata"], gateway.get("spec") or {}, gateway.get("status") or {}
        namespace, name = str(meta.get("namespace") or ""), str(meta["name"])
        names.add(d.cloudflare_name(namespace, name, owner_id))
        wanted: list[str] = []
        if status.get("hostname"):
            wanted.append(normalize_name(str(status["hostname"])))
        raw, domain = str(spec.get("hostname") or ""), domains.get(str(spec.get("configRef") or ""))
        if domain:
            with contextlib.suppress(d.SpecError):
                wanted.append(d.resolve_hostname(raw, domain))
        elif "." in raw:  # its config is missing: a full name still says what it wants
            wanted.append(normalize_name(raw))
        hostnames.update(h for h in wanted if h and (rules is None or rules.allows(namespace, h)))
    return Claims(hostnames=frozenset(hostnames), tunnel_names=frozenset(names), app_names=frozenset(names))


async def load_claims(api: client.ApiClient, owner_id: str, rules: Rules | None) -> Claims:
    gateways = await kube.list_custom(api, d.GROUP, d.VERSION, d.GATEWAY_PLURAL)
    configs = await kube.list_custom(api, d.GROUP, d.VERSION, d.CONFIG_PLURAL)
    return gateway_claims(gateways, configs, owner_id, rules)


async def sweep_config(api: client.ApiClient, cores: CorePool, name: str, spec: Mapping[str, Any], cap: int,
                       rules: Rules | None = None) -> engine.SweepReport | None:
    """One pass over the config's account and zone, judging our gateway objects against every gateway's
    claims; None when the config's token cannot be read (nothing is swept)."""
    try:
        token = await read_token(api, spec)
    except Problem as problem:
        logger.info("Orphan sweep of ChuteConfig %s skipped: %s", name, problem.message)
        return None
    core = cores.core_for(token)
    scope = engine.Scope(NAMES, str(spec.get("accountId") or ""), (str(spec.get("zoneId") or ""),),
                         label=f"ChuteConfig {name}")

    async def claims() -> Claims:
        return await load_claims(api, core.owner_id, rules)

    return await engine.sweep(core, scope, claims, cap)
