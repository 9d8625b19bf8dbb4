"""Two front doors on the same emulators: the ChuteGateway world and the HTTPRoute world side by side, one
operator serving both (as one installation: an owner id, a thread name of its own), and what Cloudflare
holds for a hostname whichever door made it."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

from chutes.sandbox.runner import OperatorThread
from harness import gateways, httproutes
from harness.world import Opened


class Both(Opened):
    """``gw`` and ``rt``, the two doors' worlds; `tunnel`: the HTTPRoute tenant's tunnel when one is made
    already (shared with another installation); `owner`: the installation's owner id."""

    def __init__(self, kube: Any, cloudflare: Any, *, owner: str = "default", tunnel: str | None = None) -> None:
        self.kube, self.cf, self.owner = kube, cloudflare, owner
        self.gw = gateways.World(kube, cloudflare)
        self.rt = httproutes.World(kube, cloudflare, tunnel)

    @property
    def operator(self) -> OperatorThread | None:
        return self.gw.operator

    def start(self, resync: float = 300.0, sweep: float = 600.0, *, name: str = "chutes-operator",
              **options: Any) -> None:
        """The operator serving both doors; `options`: more settings (sweep_max_deletions...)."""
        self.gw.run_operator({"OPERATOR_NAMESPACE": httproutes.OPNS}, name=name, chutes=True, httproutes=True,
                             sessions=False, owner_id=self.owner, resync_interval=resync, sweep_interval=sweep,
                             **options)

    def stop(self) -> None:
        if self.operator is not None:
            self.rt.quiesce()  # see httproutes.World.quiesce
            self.gw.stop()

    def close(self) -> None:
        self.stop()
        self.gw.close()
        self.rt.close()

    def published(self, hostname: str) -> dict[str, Any]:
        """What Cloudflare holds for `hostname`: its records, the rules naming it, its Access apps (deep copies)."""
        state = self.cf.snapshot()
        records = [r for records in state["dns_records"].values() for r in records if r["name"] == hostname]
        rules = {tid: [r for r in (c.get("config") or {}).get("ingress", []) if r.get("hostname") == hostname]
                 for tid, c in state["tunnel_configs"].items()}
        apps = [a for a in state["access_apps"].values() if a["domain"] == hostname]
        return copy.deepcopy({"records": records, "rules": {k: v for k, v in rules.items() if v}, "apps": apps})

    def claim_sources(self) -> dict[str, str]:
        return {hostname: claim["source"] for hostname, claim in self.rt.claims().items()}


@contextlib.contextmanager
def both_doors(kube: Any, cloudflare: Any, resync: float | None = 1.0) -> Iterator[Both]:
    """Both worlds on the emulators, the ledger namespace made; the operator started unless `resync` is None."""
    world = Both(kube, cloudflare)
    try:
        world.rt.namespace(httproutes.OPNS)  # the ledger namespace (the operator's own)
        if resync is not None:
            world.start(resync=resync)
        yield world
    finally:
        world.close()
