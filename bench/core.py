"""Benchmark: publish then remove N hostnames through the Cloudflare core, all at once.

Each hostname is one tunnel ingress rule + one proxied CNAME, published (and then removed)
concurrently with asyncio.gather against the in-process Cloudflare emulator (pro zone
example.net, 20 ms added latency per request). Prints the Cloudflare calls by operation,
calls per hostname and wall time. Run: .venv/bin/python bench/core.py [N ...]
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "operator"))

from chutes.cloudflare_core import CloudflareCore, DesiredRecord, IngressRule, Recorded, RequestBudget
from chutes.sandbox.cloudflare import CloudflareSandbox, SandboxConfig

LATENCY = 0.02
ZONE = "example.net"


def report(phase: str, n: int, counters: Counter[str], seconds: float) -> None:
    total = sum(counters.values())
    by_op = ", ".join(f"{op}={count}" for op, count in sorted(counters.items()))
    print(f"  {phase:<8} calls={total:<3} per-hostname={total / n:<7.3f} wall={seconds:6.3f}s  [{by_op}]")


async def run(n: int) -> tuple[int, int]:
    sandbox = CloudflareSandbox(SandboxConfig.default())
    await sandbox.start(host="127.0.0.1", port=0)
    try:
        account, zone = sandbox.account_id, sandbox.zone_id(ZONE)
        async with CloudflareCore(sandbox.token, sandbox.base_url, owner_id="bench", budget=RequestBudget()) as core:
            # The proofs a door's ledger would give: the intent to create the tunnel, recorded first, and
            # the hostnames whose (path-less) rules it writes.
            intent = Recorded(since=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
            tunnel = await core.ensure_tunnel(account, "bench-tunnel", intent)
            _ = core.client.sdk.dns.records, core.client.sdk.zones  # import the SDK's lazy modules now
            target = f"{tunnel.id}.cfargotunnel.com"
            hostnames = [f"host-{i}.{ZONE}" for i in range(n)]
            ours = set(hostnames)

            def owns(rule: Mapping[str, Any]) -> bool:
                return rule.get("hostname") in ours and not rule.get("path")

            sandbox.reset_log()
            sandbox.faults.latency = LATENCY

            async def publish(hostname: str) -> None:
                rule = IngressRule(hostname, "http://web.default.svc:80")
                await core.set_ingress_rule(account, tunnel.id, rule, owns)
                desired = DesiredRecord(hostname, "CNAME", target, source=f"Pod/bench/{hostname}")
                await core.ensure_dns_record(zone, desired)

            async def remove(hostname: str) -> None:
                await core.delete_dns_record(zone, hostname, "CNAME", f"Pod/bench/{hostname}")
                await core.remove_ingress_rule(account, tunnel.id, hostname, None, owns)

            started = time.perf_counter()
            await asyncio.gather(*(publish(h) for h in hostnames))
            published = time.perf_counter() - started
            publish_calls = Counter(sandbox.counters)
            state = sandbox.snapshot()
            records = [r for r in state["dns_records"][zone] if r["name"] in set(hostnames)]
            rules = state["tunnel_configs"][tunnel.id]["config"]["ingress"]
            assert len(records) == n and len(rules) == n + 1, (len(records), len(rules))

            sandbox.reset_log()
            started = time.perf_counter()
            await asyncio.gather(*(remove(h) for h in hostnames))
            removed = time.perf_counter() - started
            remove_calls = Counter(sandbox.counters)
            state = sandbox.snapshot()
            assert state["dns_records"][zone] == []
            assert len(state["tunnel_configs"][tunnel.id]["config"]["ingress"]) == 1

        print(f"N={n} hostnames (latency {LATENCY * 1000:.0f} ms/request, zone {ZONE})")
        report("publish", n, publish_calls, published)
        report("remove", n, remove_calls, removed)
        return sum(publish_calls.values()), sum(remove_calls.values())
    finally:
        await sandbox.stop()


async def main(sizes: list[int]) -> int:
    results = {n: await run(n) for n in sizes}
    if 500 in results:
        publish, remove = results[500]
        verdict = "OK" if publish <= 20 and remove <= 20 else "OVER TARGET"
        print(f"target for N=500: publish <= 20 calls, remove <= 20 calls -> {publish} / {remove}: {verdict}")
        return 0 if verdict == "OK" else 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main([int(a) for a in sys.argv[1:]] or [1, 100, 500])))
