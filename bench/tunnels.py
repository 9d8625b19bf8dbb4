"""Benchmark: N Services (default 200) bound to one Tunnel at once, then unbound, against both emulators.

`--mode each` (default): one TunnelBinding per Service, all applied at once; `--mode one`: one TunnelBinding
listing every Service; `--mode annotated`: the blog-era form, N Services annotated
``tunnels.networking.cfargotunnel.com/cr`` made at once, then deleted. Prints the time until every hostname is
routed (rule and CNAME), Cloudflare calls by operation each way (target: <= 10 for the N each way, thanks to the
coalesced tunnel configuration and the DNS batch), cloudflared restarts (changes of its Deployment's pod template:
target 0) and the peak RSS.

"At once": `--clients` (default 16) creates and deletes are in flight together, as several clients applying a
manifest would send them. With `--clients 1` they go one after the other from this process, which shares its CPU
with both emulators and the operator: the deletions then trickle in over most of the run (20-30 s for 200 on a
loaded machine), and so do the operator's passes.
Run: `.venv/bin/python bench/tunnels.py [--services N] [--mode each|one|annotated] [--clients 16] [--latency 0.02]`.
A figure printer, not a test.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import kubernetes

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "operator"))

from chutes.sandbox.cloudflare import SandboxConfig, SandboxThread  # noqa: E402
from chutes.sandbox.kubernetes import KubeSandbox  # noqa: E402
from chutes.sandbox.runner import OperatorThread  # noqa: E402
from chutes.settings import load_settings  # noqa: E402

GROUP, NS = "networking.cfargotunnel.com", "bench"
ACCESS_EMAILS = "chutes.troubleshat.com/access-allowed-emails"
SERVICE_CR = "tunnels.networking.cfargotunnel.com/cr"
TARGET = 10


def counts(sandbox: Any, since: int) -> Counter[str]:
    return Counter(r.op for r in sandbox.requests[since:])


def report(title: str, calls: Counter[str], seconds: float) -> None:
    writes = sum(count for op, count in calls.items() if not op.endswith((".get", ".list")))
    print(f"{title}: {seconds:.2f} s, {sum(calls.values())} Cloudflare calls ({writes} writes; target <= {TARGET} "
          f"calls: {'OK' if sum(calls.values()) <= TARGET else 'OVER TARGET'})")
    for op, count in sorted(calls.items()):
        print(f"    {op:<28} {count:>5}")


def wait(what: str, done: Any, started: float) -> None:
    while not done():
        if time.monotonic() - started > 300:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.05)


def put_tunnel(cf: Any, core: Any, custom: Any, apps: Any, domain: str) -> str:
    """Tunnel "web" in namespace NS (a new tunnel, in `domain`) with its token Secret, once the operator (running)
    has made it and its cloudflared Deployment; returns its tunnel id."""
    core.create_namespaced_secret(NS, {"metadata": {"name": "cloudflare-secrets"},
                                       "stringData": {"CLOUDFLARE_API_TOKEN": cf.token}})
    custom.create_namespaced_custom_object(GROUP, "v1alpha2", NS, "tunnels", {
        "apiVersion": f"{GROUP}/v1alpha2", "kind": "Tunnel", "metadata": {"name": "web"},
        "spec": {"newTunnel": {"name": "bench"}, "cloudflare": {
            "domain": domain, "secret": "cloudflare-secrets", "accountId": cf.account_id}}})
    wait("the tunnel", lambda: custom.get_namespaced_custom_object(GROUP, "v1alpha2", NS, "tunnels", "web")
         .get("status", {}).get("tunnelId"), time.monotonic())
    wait("cloudflared", lambda: apps.list_namespaced_deployment(NS).items, time.monotonic())
    return str(custom.get_namespaced_custom_object(GROUP, "v1alpha2", NS, "tunnels", "web")["status"]["tunnelId"])


def binding(name: str, subjects: list[dict[str, Any]], access: bool = False) -> dict[str, Any]:
    """A TunnelBinding of `subjects` (Services) to Tunnel "web"; `access`: behind Access (an allowed email)."""
    meta: dict[str, Any] = {"name": name}
    if access:
        meta["annotations"] = {ACCESS_EMAILS: "ops@example.com"}
    return {"apiVersion": f"{GROUP}/v1alpha1", "kind": "TunnelBinding", "metadata": meta,
            "subjects": subjects, "tunnelRef": {"kind": "Tunnel", "name": "web"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--mode", choices=["each", "one", "annotated"], default="each")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds added to every Cloudflare call")
    parser.add_argument("--clients", type=int, default=16,
                        help="how many of the creates and deletes the bench sends at once (1: one after the other)")
    parser.add_argument("--access", type=int, default=0,
                        help="how many of the bindings (mode each) put Access in front (an allow policy by email)")
    args = parser.parse_args()
    n = args.services
    protected = min(args.access, n) if args.mode == "each" else 0

    with SandboxThread(SandboxConfig.default()) as cf, KubeSandbox(namespaces=["default", NS]) as kube:
        os.environ["KUBECONFIG"] = kube.kubeconfig
        client = kubernetes.config.new_client_from_config(config_file=kube.kubeconfig)
        core, apps = kubernetes.client.CoreV1Api(client), kubernetes.client.AppsV1Api(client)
        custom = kubernetes.client.CustomObjectsApi(client)
        cf.faults.latency = args.latency
        zone = cf.zone_id("example.com")
        settings = load_settings({}, standalone=True, cloudflare_base_url=cf.base_url, chutes=False,
                                 httproutes=False, sessions=False, log_level="ERROR")
        with OperatorThread(settings, {}):
            tunnel_id = put_tunnel(cf, core, custom, apps, "example.com")
            template = apps.read_namespaced_deployment("web-cloudflared", NS).spec.template.to_dict()

            def service(i: int) -> dict[str, Any]:
                meta: dict[str, Any] = {"name": f"s{i}"}
                if args.mode == "annotated":
                    meta["annotations"] = {SERVICE_CR: "web"}
                return {"metadata": meta, "spec": {"ports": [{"port": 80}]}}

            if args.mode != "annotated":
                for i in range(n):
                    core.create_namespaced_service(NS, service(i))

            def routed() -> int:
                state = cf.snapshot()
                rules = (state["tunnel_configs"].get(tunnel_id) or {}).get("config", {}).get("ingress", [])
                records = [r for r in state["dns_records"].get(zone, []) if r["type"] == "CNAME"]
                return min(len(rules) - 1, len(records))

            def at_once(request: Any, count: int = n) -> None:
                """`request(i)` for each i < count, `args.clients` at a time (as many clients apply them)."""
                with ThreadPoolExecutor(max(1, args.clients)) as pool:
                    list(pool.map(request, range(count)))

            def protected_ready() -> bool:
                apps_now = [a for a in cf.snapshot()["access_apps"].values()]
                return len(apps_now) >= protected

            start_log, started = len(cf.requests), time.monotonic()
            if args.mode == "annotated":
                at_once(lambda i: core.create_namespaced_service(NS, service(i)))
            elif args.mode == "one":
                custom.create_namespaced_custom_object(GROUP, "v1alpha1", NS, "tunnelbindings", binding(
                    "all", [{"name": f"s{i}"} for i in range(n)]))
            else:
                at_once(lambda i: custom.create_namespaced_custom_object(
                    GROUP, "v1alpha1", NS, "tunnelbindings", binding(f"b{i}", [{"name": f"s{i}"}], i < protected)))
            wait("every hostname routed", lambda: routed() >= n and protected_ready(), started)
            publish_seconds, published = time.monotonic() - started, counts(cf, start_log)

            start_log, started = len(cf.requests), time.monotonic()
            if args.mode == "annotated":
                at_once(lambda i: core.delete_namespaced_service(f"s{i}", NS, _preload_content=False))
            names = [item["metadata"]["name"] for item in custom.list_namespaced_custom_object(
                GROUP, "v1alpha1", NS, "tunnelbindings")["items"]]
            at_once(lambda i: custom.delete_namespaced_custom_object(GROUP, "v1alpha1", NS, "tunnelbindings",
                                                                     names[i]), len(names))
            wait("every hostname unrouted", lambda: routed() <= 0 and not cf.snapshot()["access_apps"]
                 and not custom.list_namespaced_custom_object(GROUP, "v1alpha1", NS, "tunnelbindings")["items"],
                 started)
            delete_seconds, deleted = time.monotonic() - started, counts(cf, start_log)
            restarts = int(apps.read_namespaced_deployment("web-cloudflared", NS).spec.template.to_dict() != template)
        client.close()

    how = {"one": "one binding", "each": "a binding each", "annotated": "annotated Services"}[args.mode]
    print(f"{n} Services bound to one Tunnel ({args.mode}: {how}"
          f"{f'; {protected} behind Access' if protected else ''}; {args.clients} requests at once), "
          f"{args.latency * 1000:.0f} ms added Cloudflare latency")
    report("all routed", published, publish_seconds)
    report("all removed", deleted, delete_seconds)
    print(f"cloudflared restarts (pod template changed): {restarts}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS (emulators + operator in one process): {rss:.0f} MiB")


if __name__ == "__main__":
    main()
