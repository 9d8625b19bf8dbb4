"""The seed's state ConfigMap ``cfzt-{route namespace}-{route name}`` in the operator namespace: same name,
labels and snake_case keys, so that state written by the seed is read (and adopted) as is.

The ids stored here are hints, never proof: what the route owns is recorded in its hostname claims (the
ledger, :mod:`chutes.claims`), and the ids here only bootstrap a claim for what an earlier version or the seed
published (:mod:`ledger`). What the state is needed for is the past: which hostname, tenant, tunnel and zone
the route published last (so that a change or a deletion finds its claims), the annotation hash, and the result
annotations. It is deleted once every claim of the route is released.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes_asyncio import client

from chutes import kube
from chutes.frontdoors.httproutes import annotations as a

KEYS = (
    "annotation_hash",
    "hostname",
    "tenant_name",
    "tunnel_id",
    "zone_id",
    "httproute_namespace",
    "httproute_name",
    "hostname_route_id",
    "cname_record_id",
    "dns_record_id",
    "dns_record_ip",
    "access_app_id",
    "access_policy_ids",
    "service_token_id",
    "service_token_secret_name",
    "last_reconcile",
)
# The result annotation written for each state key.
RESULT_ANNOTATIONS = {
    "hostname_route_id": a.HOSTNAME_ROUTE_ID,
    "cname_record_id": a.CNAME_RECORD_ID,
    "dns_record_id": a.DNS_RECORD_ID,
    "dns_record_ip": a.DNS_RECORD_IP,
    "access_app_id": a.ACCESS_APP_ID,
    "access_policy_ids": a.ACCESS_POLICY_IDS,
    "service_token_id": a.SERVICE_TOKEN_ID,
    "service_token_secret_name": a.SERVICE_TOKEN_SECRET_NAME,
}


@dataclass
class RouteState:
    route_namespace: str
    route_name: str
    data: dict[str, str] = field(default_factory=dict)

    def get(self, key: str) -> str:
        return self.data.get(key) or ""

    def set(self, **values: str | None) -> None:
        for key, value in values.items():
            if value:
                self.data[key] = value
            else:
                self.data.pop(key, None)

    @property
    def hostname(self) -> str:
        return self.get("hostname")

    @property
    def tenant(self) -> str:
        return self.get("tenant_name")

    @property
    def published(self) -> bool:
        """The last reconcile of the current hash completed (the seed writes its state only then)."""
        return bool(self.get("annotation_hash"))

    @property
    def name(self) -> str:
        return a.state_name(self.route_namespace, self.route_name)

    def labels(self) -> dict[str, str]:
        return {
            a.MANAGED_BY_LABEL: a.MANAGED_BY,
            a.LABEL_ROUTE_NAME: self.route_name,
            a.LABEL_ROUTE_NAMESPACE: self.route_namespace,
            a.LABEL_TENANT: self.tenant,
        }

    def result_annotations(self) -> dict[str, str | None]:
        """The result annotations as a merge-patch: ``None`` removes one that no longer applies."""
        return {annotation: self.get(key) or None for key, annotation in RESULT_ANNOTATIONS.items()}

    def copy(self) -> RouteState:
        return RouteState(self.route_namespace, self.route_name, dict(self.data))


def now() -> str:
    return datetime.now(UTC).isoformat()


def from_configmap(configmap: Mapping[str, Any]) -> RouteState | None:
    data = {str(k): str(v) for k, v in (configmap.get("data") or {}).items()}
    labels = (configmap.get("metadata") or {}).get("labels") or {}
    namespace = data.get("httproute_namespace") or labels.get(a.LABEL_ROUTE_NAMESPACE)
    name = data.get("httproute_name") or labels.get(a.LABEL_ROUTE_NAME)
    if not namespace or not name:
        return None
    return RouteState(namespace, name, data)


async def read(api: client.ApiClient, operator_namespace: str, route_namespace: str,
               route_name: str) -> RouteState | None:
    found = await kube.read_configmap(api, operator_namespace, a.state_name(route_namespace, route_name))
    return None if found is None else from_configmap(found)


async def write(api: client.ApiClient, operator_namespace: str, state: RouteState) -> None:
    state.set(httproute_namespace=state.route_namespace, httproute_name=state.route_name)
    await kube.apply_configmap(api, operator_namespace, state.name, state.labels(), dict(state.data))


async def delete(api: client.ApiClient, operator_namespace: str, route_namespace: str, route_name: str) -> None:
    await kube.delete_configmap(api, operator_namespace, a.state_name(route_namespace, route_name))


async def list_states(api: client.ApiClient, operator_namespace: str, tenant: str | None = None) -> list[RouteState]:
    selector = f"{a.MANAGED_BY_LABEL}={a.MANAGED_BY}"
    if tenant is not None:
        selector += f",{a.LABEL_TENANT}={tenant}"
    found = await kube.list_configmaps(api, operator_namespace, selector)
    return [state for item in found if (state := from_configmap(item)) is not None]
