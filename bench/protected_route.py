"""Benchmark: one new protected HTTPRoute at a time on an idle operator (issue 17's "single new protected route").

Against both emulators (20 ms added to every Cloudflare call by default), with a tenant and a reusable policy in
place and the operator warmed up, it creates an HTTPRoute behind Access, waits until its hostname is routable in
the Cloudflare emulator (Access application, tunnel rule and CNAME all present) and the route is Ready, then
deletes it and waits until everything is gone, N times (default 50). Prints the Cloudflare calls of each publish
by operation (min, max, total) and the time from the create to routable (p50, p99, max). A figure printer, not a
test: `.venv/bin/python bench/protected_route.py [--tries 50] [--latency 0.02]`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "operator"))

from chutes.sandbox.cloudflare import SandboxConfig, SandboxThread
from chutes.sandbox.kubernetes import KubeSandbox
from chutes.sandbox.runner import OperatorThread
from chutes.settings import load_settings
from httproutes import NS, OPNS, RG, RV, P, counts, ready, tenant_home


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def routable(cf: Any, zone: str, tunnel: str, hostname: str) -> bool:
    state = cf.snapshot()
    app = any(a.get("domain") == hostname for a in state["access_apps"].values())
    rule = any(r.get("hostname") == hostname
               for r in (state["tunnel_configs"].get(tunnel) or {}).get("config", {}).get("ingress", []))
    record = any(r["name"] == hostname for r in state["dns_records"][zone])
    return app and rule and record


def gone(cf: Any, zone: str, tunnel: str, hostname: str) -> bool:
    state = cf.snapshot()
    return not (any(a.get("domain") == hostname for a in state["access_apps"].values())
                or any(r["name"] == hostname for r in state["dns_records"][zone])
                or any(r.get("hostname") == hostname
                       for r in (state["tunnel_configs"].get(tunnel) or {}).get("config", {}).get("ingress", [])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tries", type=int, default=50)
    parser.add_argument("--latency", type=float, default=0.02, help="seconds added to every Cloudflare call")
    args = parser.parse_args()

    with SandboxThread(SandboxConfig.default()) as cf, KubeSandbox(namespaces=["default", NS, OPNS]) as kube:
        client, _, custom, sdk, tunnel = tenant_home(cf, kube)
        zone = cf.zone_id("example.com")
        cf.faults.latency = args.latency
        settings = load_settings({}, standalone=True, cloudflare_base_url=cf.base_url, chutes=False, sessions=False,
                                 log_level="ERROR")
        seconds: list[float] = []
        calls: list[Counter[str]] = []
        with OperatorThread(settings, {"OPERATOR_NAMESPACE": OPNS}):
            for i in range(-1, args.tries):  # the first (-1) warms the operator up: not counted
                name, hostname = f"p{i + 1}", f"p{i + 1}.example.com"
                time.sleep(0.5)  # idle: nothing in flight
                start_log, started = len(cf.requests), time.monotonic()
                custom.create_namespaced_custom_object(RG, RV, NS, "httproutes", {
                    "apiVersion": f"{RG}/{RV}", "kind": "HTTPRoute",
                    "metadata": {"name": name, "annotations": {
                        P + "enabled": "true", P + "tenant": "home", P + "hostname": hostname,
                        P + "access.enabled": "true", P + "access.existingPolicyNames": "Team"}},
                    "spec": {"rules": [{"backendRefs": [{"name": "web", "port": 80}]}]}})
                while not routable(cf, zone, tunnel.id, hostname):
                    if time.monotonic() - started > 60:
                        sys.exit(f"{hostname} not routable after 60 s")
                    time.sleep(0.005)
                elapsed = time.monotonic() - started
                while not ready(custom.get_namespaced_custom_object(RG, RV, NS, "httproutes", name)):
                    time.sleep(0.01)
                time.sleep(0.3)  # anything the reconcile still does after Ready counts too
                if i >= 0:
                    seconds.append(elapsed)
                    calls.append(counts(cf, start_log))
                custom.delete_namespaced_custom_object(RG, RV, NS, "httproutes", name)
                while not gone(cf, zone, tunnel.id, hostname):
                    time.sleep(0.02)
        sdk.close()
        client.close()

    totals = [sum(c.values()) for c in calls]
    print(f"{args.tries} protected HTTPRoutes, one at a time on an idle operator, {args.latency * 1000:.0f} ms added "
          "Cloudflare latency")
    print(f"Cloudflare calls per publish: min {min(totals)}, max {max(totals)}, mean {sum(totals) / len(totals):.2f}")
    every: Counter[str] = Counter()
    for c in calls:
        every.update(c)
    for op, count in sorted(every.items()):
        print(f"    {op:<28} {count / len(calls):.2f}/route")
    p50, p99 = percentile(seconds, 0.5) * 1000, percentile(seconds, 0.99) * 1000
    print(f"create → routable: p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {max(seconds) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
