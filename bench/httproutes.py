"""Benchmark: N annotated HTTPRoutes (default 200) on one CloudflareZeroTrustTenant, half of them behind
Access (a reusable policy by name), against both emulators; with `--tokens K`, the first K routes behind Access
also carry a service token (``serviceToken.enabled``: a token, and its Secret).

Prints the time until every route is Ready and the Cloudflare calls per route by operation; then one whole
resync pass of the tenant's timer (every route re-checked against Cloudflare, nothing written in the steady
state: the calls between two consecutive passes' ``lastSyncTime`` stamps, once everything is Ready); then the
deletion of all of them; and the process's peak RSS. Run:
`.venv/bin/python bench/httproutes.py [--routes N] [--tokens K] [--latency 0.02] [--resync-interval 30]`. A figure
printer, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import cloudflare
import kubernetes

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "operator"))

from chutes.sandbox.cloudflare import SandboxConfig, SandboxThread  # noqa: E402
from chutes.sandbox.kubernetes import KubeSandbox  # noqa: E402
from chutes.sandbox.runner import OperatorThread  # noqa: E402
from chutes.settings import load_settings  # noqa: E402

GROUP, VERSION, OPNS, NS = "cfzt.cloudflare.com", "v1alpha1", "cloudflare-zero-trust", "bench"
RG, RV, P = "gateway.networking.k8s.io", "v1", "cfzt.cloudflare.com/"
WRITES = ("create", "update", "edit", "delete", "batch", "put", "rotate")


def counts(sandbox: Any, since: int) -> Counter[str]:
    return Counter(r.op for r in sandbox.requests[since:])


def report(title: str, calls: Counter[str], n: int, seconds: float) -> None:
    total = sum(calls.values())
    writes = sum(count for op, count in calls.items() if op.rsplit(".", 1)[-1] in WRITES)
    print(f"{title}: {seconds:.2f} s, {total} Cloudflare calls ({writes} writes), {total / n:.2f} per route",
          flush=True)
    for op, count in sorted(calls.items()):
        print(f"    {op:<28} {count:>5}   {count / n:.2f}/route")


def ready(route: dict[str, Any]) -> bool:
    conditions = json.loads(route["metadata"].get("annotations", {}).get(P + "conditions") or "[]")
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def wait_all(custom: Any, predicate: Any, what: str, timeout: float = 1800.0) -> None:
    started = time.monotonic()
    while True:
        items = custom.list_namespaced_custom_object(RG, RV, NS, "httproutes")["items"]
        if predicate(items):
            return
        if time.monotonic() - started > timeout:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.1)


def synced(custom: Any) -> str:
    """The tenant "home"'s ``status.lastSyncTime``: when its last resync pass ended."""
    tenant = custom.get_namespaced_custom_object(GROUP, VERSION, OPNS, "cloudflarezerotrusttenants", "home")
    return str((tenant.get("status") or {}).get("lastSyncTime") or "")


def next_sync(custom: Any, after: str, timeout: float) -> str:
    """Wait for the end of the tenant's resync pass after the one stamped `after`; its stamp."""
    deadline = time.monotonic() + timeout
    while (stamp := synced(custom)) == after:
        if time.monotonic() > deadline:
            sys.exit("timed out waiting for a resync pass")
        time.sleep(0.05)
    return stamp


def tenant_home(cf: Any, kube: Any) -> tuple[Any, Any, Any, Any, Any]:
    """The Kubernetes clients (api client, core, custom objects), an SDK client and the shared tunnel, with a
    reusable policy "Team", the token Secret and the tenant "home" in place."""
    os.environ["KUBECONFIG"] = kube.kubeconfig
    client = kubernetes.config.new_client_from_config(config_file=kube.kubeconfig)
    core, custom = kubernetes.client.CoreV1Api(client), kubernetes.client.CustomObjectsApi(client)
    sdk = cloudflare.Cloudflare(api_token=cf.token, base_url=cf.base_url, max_retries=0)
    tunnel = sdk.zero_trust.tunnels.cloudflared.create(account_id=cf.account_id, name="home", config_src="cloudflare")
    sdk.zero_trust.access.policies.create(account_id=cf.account_id, name="Team", decision="allow",
                                          include=[{"everyone": {}}])
    core.create_namespaced_secret(OPNS, {"metadata": {"name": "cf"}, "stringData": {"token": cf.token}})
    custom.create_namespaced_custom_object(GROUP, VERSION, OPNS, "cloudflarezerotrusttenants", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "CloudflareZeroTrustTenant", "metadata": {"name": "home"},
        "spec": {"accountId": cf.account_id, "tunnelId": tunnel.id, "credentialRef": {"name": "cf"}}})
    return client, core, custom, sdk, tunnel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--routes", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=0, help="routes behind Access that carry a service token")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds added to every Cloudflare call")
    parser.add_argument("--resync-interval", type=float, default=30.0, help="the operator's resync interval (s)")
    parser.add_argument("--zone", default="", help="example.com (Free plan: 200 records at most, as Cloudflare) or "
                        "example.net (Pro: 3,500); default: the Free zone up to 190 routes, else the Pro one")
    args = parser.parse_args()
    n = args.routes
    zone = args.zone or ("example.com" if n <= 190 else "example.net")

    with SandboxThread(SandboxConfig.default()) as cf, KubeSandbox(namespaces=["default", NS, OPNS]) as kube:
        client, core, custom, sdk, tunnel = tenant_home(cf, kube)
        custom.create_namespaced_custom_object(GROUP, VERSION, OPNS, "cloudflarezerotrusttemplates", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "CloudflareZeroTrustTemplate",
            "metadata": {"name": "base-home"},
            "spec": {"originService": {"url": "https://traefik.traefik.svc:443",
                                       "originTLS": {"noTLSVerify": True}}}})
        cf.faults.latency = args.latency
        settings = load_settings({}, standalone=True, cloudflare_base_url=cf.base_url, chutes=False, sessions=False,
                                 log_level="ERROR", resync_interval=args.resync_interval, sweep_interval=3600.0)
        with OperatorThread(settings, {"OPERATOR_NAMESPACE": OPNS}):
            time.sleep(0.5)
            start_log = len(cf.requests)
            started = time.monotonic()
            for i in range(n):
                annotations = {P + "enabled": "true", P + "tenant": "home", P + "hostname": f"r{i}.{zone}"}
                if i % 2 == 0:
                    annotations |= {P + "access.enabled": "true", P + "access.existingPolicyNames": "Team"}
                    if i // 2 < args.tokens:
                        annotations[P + "serviceToken.enabled"] = "true"
                custom.create_namespaced_custom_object(RG, RV, NS, "httproutes", {
                    "apiVersion": f"{RG}/{RV}", "kind": "HTTPRoute",
                    "metadata": {"name": f"r{i}", "annotations": annotations},
                    "spec": {"rules": [{"backendRefs": [{"name": "web", "port": 80}]}]}})
            wait_all(custom, lambda items: len(items) == n and all(ready(i) for i in items), "all Ready")
            publish_seconds = time.monotonic() - started
            published = counts(cf, start_log)

            def next_pass(after: str) -> str:
                return next_sync(custom, after, 3 * args.resync_interval + 600)

            tokens = min(args.tokens, (n + 1) // 2)
            print(f"{n} HTTPRoutes on one tenant ({(n + 1) // 2} behind Access, {tokens} with a service token) in "
                  f"{zone}, {args.latency * 1000:.0f} ms added Cloudflare latency", flush=True)
            report("all Ready", published, n, publish_seconds)
            stamp = next_pass(synced(custom))  # a pass that may have begun before everything was Ready
            start_log = len(cf.requests)
            started = time.monotonic()
            next_pass(stamp)  # the next one, whole
            resync_seconds = time.monotonic() - started
            resynced = counts(cf, start_log)
            report(f"one resync pass (timer, every {args.resync_interval:.0f} s; steady state)", resynced, n,
                   resync_seconds)
            if os.environ.get("BENCH_DEBUG"):
                for r in cf.requests[start_log:]:
                    print("   ", r.op, r.query)

            start_log = len(cf.requests)
            started = time.monotonic()
            for i in range(n):
                custom.delete_namespaced_custom_object(RG, RV, NS, "httproutes", f"r{i}")
            while (core.list_namespaced_config_map(OPNS).items or cf.snapshot()["access_apps"]
                   or cf.snapshot()["service_tokens"]):
                if time.monotonic() - started > 600 + n:  # deleting 2,000 routes waits on Cloudflare's rate limit
                    sys.exit("timed out deleting")
                time.sleep(0.1)
            delete_seconds = time.monotonic() - started
            deleted = counts(cf, start_log)
            left = cf.snapshot()
        sdk.close()
        client.close()

    report("all deleted", deleted, n, delete_seconds)
    records = [r for r in left["dns_records"][cf.zone_id(zone)]]
    print(f"left in Cloudflare: {len(records)} DNS records, {len(left['access_apps'])} Access apps, "
          f"{len(left['service_tokens'])} service tokens, "
          f"{len((left['tunnel_configs'].get(tunnel.id) or {}).get('config', {}).get('ingress', [])) - 1} rules")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS (emulators + operator in one process): {rss:.0f} MiB")


if __name__ == "__main__":
    main()
