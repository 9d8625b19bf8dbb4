"""``/readyz``: the operator is logged in to the cluster and watching.

kopf (pinned to 1.45.2) takes its credentials vault and its cluster insights as arguments of
``kopf.operator()``; :func:`chutes.runtime.run` creates both and hands them to a :class:`Readiness`.
Ready means: credentials are present and not expired, and kopf has finished its initial discovery of
resources and namespaces (it then runs one watch stream per served resource and namespace).

A standby replica (kopf peering) is ready too: readiness gates Service endpoints and rollouts, and a
rollout must not stall on the replicas that are paused by design.
"""

from __future__ import annotations

from kopf._cogs.structs.credentials import Vault
from kopf._cogs.structs.references import Insights

__all__ = ["Insights", "Readiness", "Vault"]


class Readiness:
    def __init__(self, vault: Vault, insights: Insights) -> None:
        self.vault = vault
        self.insights = insights

    def problems(self) -> list[str]:
        """Why the operator is not ready; empty when it is."""
        found: list[str] = []
        if self.vault.is_empty():
            found.append("not logged in to the cluster")
        if not self.insights.ready_resources.is_set():
            found.append("resource discovery not finished")
        if not self.insights.ready_namespaces.is_set():
            found.append("namespace discovery not finished")
        return found
