"""What a route shows about itself: the seed's result annotations and our ``cfzt.cloudflare.com/conditions``
(a JSON list with cert-manager semantics; HTTPRoute ``status`` belongs to Gateway controllers). Written
with one merge-patch, only when something changed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from kubernetes_asyncio import client

from chutes import conditions as c
from chutes import kube
from chutes.frontdoors.httproutes import annotations as a

logger = logging.getLogger(__name__)


def read_conditions(annotations: Mapping[str, str]) -> list[dict[str, Any]]:
    try:
        found = json.loads(annotations.get(a.CONDITIONS) or "[]")
    except ValueError:
        return []
    return [dict(item) for item in found if isinstance(item, dict)] if isinstance(found, list) else []


class RouteReport:
    def __init__(self, route: Mapping[str, Any]) -> None:
        meta = route["metadata"]
        self.namespace = str(meta["namespace"])
        self.name = str(meta["name"])
        self.generation = meta.get("generation")
        annotations = dict(meta.get("annotations") or {})
        self._conditions_written = read_conditions(annotations)
        self.conditions = [dict(item) for item in self._conditions_written]
        self._results_written: dict[str, str | None] = {key: annotations.get(key) for key in a.RESULT_KEYS}
        self.results = dict(self._results_written)

    @property
    def ready(self) -> Mapping[str, Any] | None:
        return c.find(self.conditions, c.READY)

    def is_new(self, reason: str, message: str) -> bool:
        """Whether the Ready condition does not say this already (one Event per distinct problem)."""
        ready = self.ready
        return ready is None or (ready.get("reason"), ready.get("message")) != (reason, message)

    def condition(self, status: c.Status, reason: str, message: str) -> None:
        self.conditions = c.set_condition(self.conditions, c.READY, status, reason, message, self.generation)

    def set_results(self, results: Mapping[str, str | None]) -> None:
        self.results.update(results)

    def clear(self) -> None:
        """Forget everything (the route is no longer managed)."""
        self.conditions = []
        self.results = {key: None for key in a.RESULT_KEYS}

    def patch(self) -> dict[str, str | None]:
        changes: dict[str, str | None] = {
            key: value for key, value in self.results.items() if value != self._results_written.get(key)
        }
        if self.conditions != self._conditions_written:
            changes[a.CONDITIONS] = json.dumps(self.conditions, separators=(",", ":")) if self.conditions else None
        return changes

    async def flush(self, api: client.ApiClient) -> None:
        changes = self.patch()
        if not changes:
            return
        written = await kube.patch_custom_metadata(api, a.ROUTE_GROUP, a.ROUTE_VERSION, a.ROUTE_PLURAL, self.name,
                                                   self.namespace, {"annotations": changes})
        if not written:
            logger.info("HTTPRoute %s/%s was deleted meanwhile: result annotations not written",
                        self.namespace, self.name)
        self._conditions_written = [dict(item) for item in self.conditions]
        self._results_written = dict(self.results)
