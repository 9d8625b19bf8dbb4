"""``/readyz``: the operator is logged in to the cluster and watching.

kopf (pinned to 1.45.2) takes its credentials vault and its cluster insights as arguments of
``kopf.operator()``; :func:`chutes.runtime.run` creates both and hands them to a :class:`Readiness`.
Ready means: credentials are present and not expired, and kopf has finished its initial discovery of
resources and namespaces (it then runs one watch stream per served resource and namespace).

A front door whose backend must answer adds a check (:meth:`Readiness.add_check`): the router-hosts door is
ready only while its server answers.

A standby replica (kopf peering) is ready too: readiness gates Service endpoints and rollouts, and a
rollout must not stall on the replicas that are paused by design.
"""

from __future__ import annotations

from collections.abc import Callable

from kopf._cogs.structs.credentials import Vault
from kopf._cogs.structs.references import Insights

__all__ = ["Check", "Insights", "Readiness", "Vault"]

Check = Callable[[], "str | None"]  # why not ready, or None


class Readiness:
    def __init__(self, vault: Vault, insights: Insights) -> None:
        self.vault = vault
        self.insights = insights
        self._checks: list[Check] = []

    def add_check(self, check: Check) -> None:
        """One more reason the operator may not be ready (a front door's backend not answering)."""
        self._checks.append(check)

    def problems(self) -> list[str]:
        """Why the operator is not ready; empty when it is."""
        found: list[str] = []
        if self.vault.is_empty():
            found.append("not logged in to the cluster")
        if not self.insights.ready_resources.is_set():
            found.append("resource discovery not finished")
        if not self.insights.ready_namespaces.is_set():
            found.append("namespace discovery not finished")
        found.extend(problem for check in self._checks if (problem := check()))
        return found
