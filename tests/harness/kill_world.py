"""What a kill-at-every-write lifecycle (:mod:`harness.kill_lifecycles`) acts on and how its outcome is read: the
emulators as names (ids differ between runs), duplicates, leftovers and unprotected moments."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chutes.claims import LABEL_OWNER

HOST_WRITES = ("AddHost", "UpdateHost", "DeleteHost")


def names(cf: Any) -> dict[str, Any]:
    """Cloudflare as names: tunnels (not deleted), Access apps, their policies, identity providers, service tokens,
    DNS records and tunnel rules."""
    state = cf.snapshot()
    tunnels = sorted(t["name"] for t in state["tunnels"].values() if not t.get("deleted_at"))
    apps = sorted((a["name"], a.get("domain")) for a in state["access_apps"].values())
    domains = {a["id"]: a.get("domain") for a in state["access_apps"].values()}
    policies = sorted((str(domains.get(p.get("app_id"), p.get("app_id"))), str(p.get("name")))
                      for p in state["access_policies"].values())
    idps = sorted((str(i.get("type")), str(i.get("name"))) for i in state["identity_providers"].values())
    tokens = sorted(str(t.get("name")) for t in state["service_tokens"].values())
    records = sorted((r["name"], r["type"]) for zone in state["dns_records"].values() for r in zone)
    rules = sorted(str(rule.get("hostname")) for config in state["tunnel_configs"].values()
                   for rule in ((config or {}).get("config") or {}).get("ingress", []) if rule.get("hostname"))
    return {"tunnels": tunnels, "apps": apps, "policies": policies, "idps": idps, "tokens": tokens,
            "records": records, "rules": rules}


def exposed(cf: Any) -> dict[str, Any]:
    """:func:`names` but the identity providers (the account's one-time PIN provider is shared and kept: what a
    lifecycle removes at its end is the rest)."""
    return {kind: items for kind, items in names(cf).items() if kind != "idps"}


def host_entries(rh: Any) -> list[str]:
    """The router-hosts server's entries as ``hostname ip comment``."""
    return sorted(f"{e.hostname} {e.ip} {e.comment}" for e in rh.entries())


def duplicates(view: dict[str, Any]) -> list[str]:
    found = []
    for kind in ("tunnels", "apps", "policies", "idps", "tokens", "records", "rules"):
        counts = Counter(view[kind])
        found += [f"{kind}: {item} x{n}" for item, n in counts.items() if n > 1]
    hosts = Counter(entry.split(" ")[0] for entry in view.get("hosts", []))
    return found + [f"hosts: {name} x{n}" for name, n in hosts.items() if n > 1]


@dataclass
class World:
    """What a lifecycle acts on: the user's clients, the Cloudflare emulator (`cf`), the router-hosts one (`rh`, for
    the door that writes there), and the run's wait (it restarts a killed operator, plays the Deployment controller
    and checks for duplicates at the end of each phase)."""

    core: Any
    custom: Any
    cf: Any
    rh: Any | None
    wait: Callable[[str, Callable[[], bool]], bool]

    def view(self) -> dict[str, Any]:
        """Both servers as names, and this installation's claims (the ledger) by name."""
        view = names(self.cf)
        if self.rh is not None:
            view["hosts"] = host_entries(self.rh)
        claims = self.core.list_config_map_for_all_namespaces(label_selector=LABEL_OWNER).items
        view["claims"] = sorted(c.metadata.name for c in claims)
        return view

    def published(self, hostname: str, ready: bool, gone: str = "") -> bool:
        """`ready` (the source says so), `hostname`'s CNAME and rule in place, and nothing left of `gone`."""
        view = names(self.cf)
        return (ready and (hostname, "CNAME") in view["records"] and hostname in view["rules"]
                and (not gone or self.withdrawn(gone, view)))

    def withdrawn(self, hostname: str, view: dict[str, Any] | None = None) -> bool:
        """No rule, record nor Access application left at `hostname`."""
        view = view or names(self.cf)
        return (hostname not in view["rules"] and all(n != hostname for n, _ in view["records"])
                and all(d != hostname for _, d in view["apps"]))
