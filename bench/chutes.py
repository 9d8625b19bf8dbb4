"""Benchmark: N ChuteGateways applied at once (default 50) against both emulators.

Prints the time until every gateway is Ready, Cloudflare calls per gateway by operation (and those beyond
each gateway's own tunnel: issue 17's target), the deletion of all of them, and the process's peak RSS.
Run: `.venv/bin/python bench/chutes.py [--gateways N] [--latency 0.02]`. A figure printer, not a test.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from collections import Counter
from pathlib import Path

import kubernetes

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "operator"))

from chutes.sandbox.cloudflare import SandboxConfig, SandboxThread  # noqa: E402
from chutes.sandbox.kubernetes import KubeSandbox  # noqa: E402
from chutes.sandbox.runner import OperatorThread  # noqa: E402
from chutes.settings import load_settings  # noqa: E402

GROUP, VERSION, NS = "chutes.troubleshat.com", "v1alpha1", "bench"


def counts(sandbox: object, since: int) -> Counter[str]:
    return Counter(r.op for r in sandbox.requests[since:])  # type: ignore[attr-defined]


# What a gateway's own tunnel costs whatever else it publishes: its create, its connector token, the PUT of its
# configuration (its rule: written on publish, removed on delete) and its delete. Everything else (lookups, the
# configuration's read, Access, DNS) is what issue 17 counts "beyond its tunnel's own" (target: <= 4 per gateway).
TUNNEL_OWN = frozenset({"tunnels.create", "tunnels.token", "tunnels.config.put", "tunnels.delete"})
TARGET_BEYOND = 4.0


def report(title: str, calls: Counter[str], n: int, seconds: float) -> None:
    total = sum(calls.values())
    own = sum(count for op, count in calls.items() if op in TUNNEL_OWN)
    beyond = total - own
    verdict = "OK" if beyond / n <= TARGET_BEYOND else "OVER TARGET"
    print(f"{title}: {seconds:.2f} s, {total} Cloudflare calls, {total / n:.2f} per gateway")
    print(f"    the tunnel's own {own}, beyond it {beyond}: {beyond / n:.2f}/gateway "
          f"(target <= {TARGET_BEYOND:g}: {verdict})")
    for op, count in sorted(calls.items()):
        mark = "  (tunnel's own)" if op in TUNNEL_OWN else ""
        print(f"    {op:<28} {count:>5}   {count / n:.2f}/gateway{mark}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gateways", type=int, default=50)
    parser.add_argument("--latency", type=float, default=0.02, help="seconds added to every Cloudflare call")
    args = parser.parse_args()
    n = args.gateways

    with SandboxThread(SandboxConfig.default()) as cf, KubeSandbox(namespaces=["default", NS, "chute-system"]) as kube:
        os.environ["KUBECONFIG"] = kube.kubeconfig
        client = kubernetes.config.new_client_from_config(config_file=kube.kubeconfig)
        core, apps = kubernetes.client.CoreV1Api(client), kubernetes.client.AppsV1Api(client)
        custom = kubernetes.client.CustomObjectsApi(client)
        cf.faults.latency = args.latency
        settings = load_settings({}, standalone=True, cloudflare_base_url=cf.base_url, httproutes=False,
                                 sessions=False, log_level="ERROR")
        with OperatorThread(settings, {}):
            core.create_namespaced_secret("chute-system", {"metadata": {"name": "cf"},
                                                           "stringData": {"apiToken": cf.token}})
            core.create_namespaced_service(NS, {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}})
            custom.create_cluster_custom_object(GROUP, VERSION, "chuteconfigs", {
                "apiVersion": f"{GROUP}/{VERSION}", "kind": "ChuteConfig", "metadata": {"name": "default"},
                "spec": {"apiTokenSecretRef": {"name": "cf", "namespace": "chute-system"},
                         "accountId": cf.account_id, "zoneId": cf.zone_id("example.com"), "domain": "example.com"}})
            while not custom.get_cluster_custom_object(GROUP, VERSION, "chuteconfigs", "default").get(
                    "status", {}).get("ready"):
                time.sleep(0.05)

            start_log = len(cf.requests)
            started = time.monotonic()
            for i in range(n):
                custom.create_namespaced_custom_object(GROUP, VERSION, NS, "chutegateways", {
                    "apiVersion": f"{GROUP}/{VERSION}", "kind": "ChuteGateway", "metadata": {"name": f"g{i}"},
                    "spec": {"configRef": "default", "hostname": f"g{i}", "service": {"name": "web", "port": 80},
                             "access": {"allowedEmails": ["a@example.org"]}, "replicas": 1}})
            pending = {f"g{i}" for i in range(n)}
            available: set[str] = set()
            while pending:
                for deployment in apps.list_namespaced_deployment(NS).items:
                    name = deployment.metadata.labels["chutes.troubleshat.com/gateway"]
                    if name not in available:
                        apps.patch_namespaced_deployment_status(deployment.metadata.name, NS, {
                            "status": {"replicas": 1, "availableReplicas": 1, "readyReplicas": 1}})
                        available.add(name)
                for item in custom.list_namespaced_custom_object(GROUP, VERSION, NS, "chutegateways")["items"]:
                    if item.get("status", {}).get("ready"):
                        pending.discard(item["metadata"]["name"])
                if time.monotonic() - started > 300:
                    sys.exit(f"timed out with {len(pending)} gateways not Ready")
                time.sleep(0.05)
            publish_seconds = time.monotonic() - started
            published = counts(cf, start_log)

            start_log = len(cf.requests)
            started = time.monotonic()
            for i in range(n):
                custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "chutegateways", f"g{i}")
            while custom.list_namespaced_custom_object(GROUP, VERSION, NS, "chutegateways")["items"]:
                if time.monotonic() - started > 300:
                    sys.exit("timed out deleting")
                time.sleep(0.05)
            delete_seconds = time.monotonic() - started
            deleted = counts(cf, start_log)
        client.close()

    print(f"{n} ChuteGateways, {args.latency * 1000:.0f} ms added Cloudflare latency")
    report("all Ready", published, n, publish_seconds)
    report("all deleted", deleted, n, delete_seconds)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS (emulators + operator in one process): {rss:.0f} MiB")


if __name__ == "__main__":
    main()
