"""The "protected from the first packet" check, replayed on the Cloudflare emulator's state after every write it
applied: a hostname meant to sit behind Access must never be routable (a DNS record, its own or a wildcard
covering it, pointing at a tunnel whose configuration has a rule for it) while no Access application has it as its
domain. Used by the kill-at-every-write runs (:mod:`harness.kill_at_write`) and the soak (:mod:`harness.soak`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection
from typing import Any

WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
TUNNEL_SUFFIX = ".cfargotunnel.com"


def _covers(record_name: str, hostname: str) -> bool:
    if record_name == hostname:
        return True
    return record_name.startswith("*.") and hostname.endswith(record_name[1:]) and "." not in hostname[
        : len(hostname) - len(record_name) + 1]


def routable_without_access(state: dict[str, Any], protected: Collection[str]) -> list[str]:
    """The hostnames of `protected` that `state` (a sandbox snapshot) makes routable without their Access app."""
    if not protected:
        return []
    rules: dict[str, set[str]] = {}
    for tunnel_id, config in state["tunnel_configs"].items():
        tunnel = state["tunnels"].get(tunnel_id)
        if tunnel is None or tunnel.get("deleted_at"):
            continue
        ingress = ((config or {}).get("config") or {}).get("ingress") or []
        rules[tunnel_id] = {str(rule["hostname"]) for rule in ingress if rule.get("hostname")}
    guarded = {app.get("domain") for app in state["access_apps"].values()}
    records = [r for zone in state["dns_records"].values() for r in zone if r.get("type") == "CNAME"]
    found = []
    for hostname in sorted(set(protected) - guarded):
        for record in records:
            target = str(record.get("content") or "")
            if (_covers(str(record["name"]), hostname) and target.endswith(TUNNEL_SUFFIX)
                    and hostname in rules.get(target[: -len(TUNNEL_SUFFIX)], ())):
                found.append(hostname)
                break
    return found


class ProtectionWatch:
    """Call it with each of the emulator's ResponseEvents (its ``on_response`` hook, or from one): after every write
    applied (answered or dropped), it records the protected hostnames routable without Access at that moment.
    `protected` answers which hostnames are meant to be protected right now (called on the emulator's thread)."""

    def __init__(self, cf: Any, protected: Callable[[], Collection[str]]) -> None:
        self.cf, self.protected = cf, protected
        self.moments: list[str] = []
        self.checked = 0
        self._lock = threading.Lock()

    def __call__(self, event: Any) -> None:
        if event.method not in WRITE_METHODS or event.status >= 400:
            return
        found = routable_without_access(self.cf.snapshot(), self.protected())
        with self._lock:
            self.checked += 1
            if found:
                self.moments.append(f"after {event.method} {event.op}{' (dropped)' if event.dropped else ''} at "
                                    f"{time.strftime('%H:%M:%S')}.{int(time.time() * 1000) % 1000:03d}: {found}")
