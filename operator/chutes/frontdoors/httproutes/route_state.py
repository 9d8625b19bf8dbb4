"""A route's state as the seed's ``cfzt-{route namespace}-{route name}`` ConfigMap holds it: pure (no I/O), so the
door's decision can take it as an input. Reading and writing it is :mod:`state`, which re-exports what its
callers use."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from chutes.frontdoors.httproutes import annotations as a

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


class StateTaken(Exception):
    """The state ConfigMap name of a route holds the state of another route (``other``: ``namespace/name``)."""

    def __init__(self, route_namespace: str, route_name: str, other: str) -> None:
        self.route = f"{route_namespace}/{route_name}"
        self.other = other
        self.configmap = a.state_name(route_namespace, route_name)
        super().__init__(
            f"the state ConfigMap {self.configmap} of HTTPRoute {self.route} is the state of HTTPRoute {other} "
            f"(cfzt-<namespace>-<name> cannot tell the two routes apart): nothing is published for HTTPRoute "
            f"{self.route} and nothing of HTTPRoute {other} is touched; rename one of the two routes")


@dataclass(frozen=True)
class Slot:
    """What a route's state ConfigMap name holds: the route's own state (None when absent or another's), and
    :class:`StateTaken` when it is another route's."""

    state: RouteState | None = None
    taken: StateTaken | None = None
    configmap: Mapping[str, Any] | None = field(default=None, repr=False)  # as read: a write compares with it
