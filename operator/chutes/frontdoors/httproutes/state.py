"""The seed's state ConfigMap ``cfzt-{route namespace}-{route name}`` in the operator namespace: same name,
labels and snake_case keys, so that state written by the seed is read (and adopted) as is.

The ids here are hints, never proof (the claims record what the route owns; the ids only bootstrap a claim,
:mod:`ledger`). The state is the past: which hostname, tenant, tunnel and zone the route published last (so that a
change or a deletion finds its claims), the annotation hash, the result annotations; it goes once every claim of the
route is released. The name is ambiguous (``team/a-blog`` and ``team-a/blog`` both get ``cfzt-team-a-blog``): a
state is a route's only when the route it names (data, labels) is that route. Another route's state is never read
as the asking route's (:func:`read_slot` says whose it is), overwritten (:class:`StateTaken`) nor deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from kubernetes_asyncio import client

from chutes import kube
from chutes.frontdoors.httproutes import annotations as a
from chutes.frontdoors.httproutes.route_state import RouteState as RouteState
from chutes.frontdoors.httproutes.route_state import Slot as Slot
from chutes.frontdoors.httproutes.route_state import StateTaken as StateTaken
from chutes.frontdoors.httproutes.route_state import from_configmap
from chutes.frontdoors.httproutes.route_state import now as now

logger = logging.getLogger(__name__)
WRITE_ATTEMPTS = 3  # a state replaced between our read and our write is read again this often


def _named(configmap: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The routes a state ConfigMap names: by its data (the labels filling a gap), and by its labels."""
    data = configmap.get("data") or {}
    labels = (configmap.get("metadata") or {}).get("labels") or {}
    ns_data, name_data = data.get("httproute_namespace"), data.get("httproute_name")
    ns_label, name_label = labels.get(a.LABEL_ROUTE_NAMESPACE), labels.get(a.LABEL_ROUTE_NAME)
    named = [(ns_data or ns_label, name_data or name_label), (ns_label or ns_data, name_label or name_data)]
    return [(str(ns), str(name)) for ns, name in named if ns and name]


def _other(configmap: Mapping[str, Any], route_namespace: str, route_name: str) -> str | None:
    """The other route (``namespace/name``) the state names, None when it names only this one (or none)."""
    for namespace, name in _named(configmap):
        if (namespace, name) != (route_namespace, route_name):
            return f"{namespace}/{name}"
    return None


async def read_slot(api: client.ApiClient, operator_namespace: str, route_namespace: str,
                    route_name: str) -> Slot:
    found = await kube.read_configmap(api, operator_namespace, a.state_name(route_namespace, route_name))
    if found is None:
        return Slot()
    other = _other(found, route_namespace, route_name)
    if other is not None:
        logger.info("State %s/%s is HTTPRoute %s's, not %s/%s's", operator_namespace,
                    a.state_name(route_namespace, route_name), other, route_namespace, route_name)
        return Slot(taken=StateTaken(route_namespace, route_name, other))
    return Slot(state=from_configmap(found), configmap=found)


async def read(api: client.ApiClient, operator_namespace: str, route_namespace: str,
               route_name: str) -> RouteState | None:
    """The route's state; None when there is none or the name holds another route's."""
    return (await read_slot(api, operator_namespace, route_namespace, route_name)).state


async def write(api: client.ApiClient, operator_namespace: str, state: RouteState,
                read: Mapping[str, Any] | None = None) -> None:
    """Create or replace the route's state; :class:`StateTaken` (nothing written) when the name holds another
    route's. `read`: the route's own ConfigMap as read under the route's lock this pass (:attr:`Slot.configmap`),
    not read again (a replace of it carries its resourceVersion: one changed since is read again)."""
    state.set(httproute_namespace=state.route_namespace, httproute_name=state.route_name)
    labels, data = state.labels(), dict(state.data)
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": {"name": state.name, "namespace": operator_namespace, "labels": labels},
                            "data": data}
    for _attempt in range(WRITE_ATTEMPTS):
        found, read = read or await kube.read_configmap(api, operator_namespace, state.name), None
        if found is None:
            if await kube.create_configmap(api, operator_namespace, body) is not None:
                return
            continue  # created meanwhile: whose is it?
        other = _other(found, state.route_namespace, state.route_name)
        if other is not None:
            raise StateTaken(state.route_namespace, state.route_name, other)
        meta = found.get("metadata") or {}
        if (found.get("data") or {}) == data and (meta.get("labels") or {}) == labels:
            return
        body["metadata"]["resourceVersion"] = meta.get("resourceVersion")
        if await kube.replace_configmap(api, operator_namespace, state.name, body):
            return
    raise kube.StaleObject(f"configmaps/{state.name} in {operator_namespace} keeps changing under the write")


async def delete(api: client.ApiClient, operator_namespace: str, route_namespace: str, route_name: str) -> None:
    """Delete the route's state; another route's under that name stays."""
    name = a.state_name(route_namespace, route_name)
    found = await kube.read_configmap(api, operator_namespace, name)
    if found is None:
        return
    other = _other(found, route_namespace, route_name)
    if other is not None:
        logger.info("State %s/%s is HTTPRoute %s's: not deleted for %s/%s", operator_namespace, name, other,
                    route_namespace, route_name)
        return
    try:
        await kube.delete_configmap(api, operator_namespace, name, uid=str((found.get("metadata") or {}).get("uid")
                                                                           or "") or None)
    except kube.StaleObject:
        logger.info("State %s/%s was replaced meanwhile: not deleted for %s/%s", operator_namespace, name,
                    route_namespace, route_name)


async def list_states(api: client.ApiClient, operator_namespace: str, tenant: str | None = None) -> list[RouteState]:
    selector = f"{a.MANAGED_BY_LABEL}={a.MANAGED_BY}"
    if tenant is not None:
        selector += f",{a.LABEL_TENANT}={tenant}"
    found = await kube.list_configmaps(api, operator_namespace, selector)
    return [state for item in found if (state := from_configmap(item)) is not None]
