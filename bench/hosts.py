"""Benchmark: the router-hosts door with N HostMappings (default 1,000) and M IngressRoutes of 3 hosts each
(default 200), applied at once against the Kubernetes emulator and the router-hosts emulator (mutual TLS).

Prints the time until every HostMapping is Synced and every route host registered, the router-hosts RPCs by
method (per object), what label-only changes cost (nothing: the watch's echo filter), the deletion of everything,
and the process's peak RSS.
Run: `.venv/bin/python bench/hosts.py [--mappings N] [--routes M] [--latency 0.002]`. A figure printer, not a
test.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "operator"))

from chutes.sandbox.kubernetes import KubeSandbox  # noqa: E402
from chutes.sandbox.routerhosts import RouterHostsSandbox  # noqa: E402
from chutes.sandbox.runner import OperatorThread  # noqa: E402
from chutes.settings import load_settings  # noqa: E402

GROUP, VERSION, NS = "router-hosts.fzymgc.house", "v1alpha1", "bench"
INGRESS_IP = "192.168.1.80"


def rpcs(server: Any, since: int) -> Counter[str]:
    return Counter(record.rpc for record in server.requests[since:])


def wait(what: str, done: Callable[[], bool], timeout: float) -> float:
    started = time.monotonic()
    while not done():
        if time.monotonic() - started > timeout:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)
    return time.monotonic() - started


def report(title: str, calls: Counter[str], objects: int, seconds: float) -> None:
    total = sum(calls.values())
    print(f"{title}: {seconds:.2f} s, {total} RPCs, {total / objects:.2f} per object")
    for rpc, count in sorted(calls.items()):
        print(f"    {rpc:<12} {count:>6}   {count / objects:.2f}/object")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mappings", type=int, default=1000)
    parser.add_argument("--routes", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.002, help="seconds added to every router-hosts call")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()
    n, m = args.mappings, args.routes
    objects, hostnames = n + m, n + 3 * m

    with RouterHostsSandbox() as server, KubeSandbox(namespaces=["default", NS]) as kube:
        os.environ["KUBECONFIG"] = kube.kubeconfig
        client = kubernetes.config.new_client_from_config(config_file=kube.kubeconfig)
        custom = kubernetes.client.CustomObjectsApi(client)
        if args.latency:
            server.faults.delay(args.latency)
        settings = load_settings({}, standalone=True, chutes=False, httproutes=False, tunnels=False, sessions=False,
                                 router_hosts_address=server.address, router_hosts_tls_ca=server.ca,
                                 router_hosts_tls_cert=server.cert, router_hosts_tls_key=server.key,
                                 default_ingress_ip=INGRESS_IP, resync_interval=3600, sweep_interval=3600,
                                 log_level="ERROR")
        with OperatorThread(settings, {}, timeout=60):
            since = len(server.requests)
            started = time.monotonic()
            for i in range(n):
                custom.create_namespaced_custom_object(GROUP, VERSION, NS, "hostmappings", {
                    "apiVersion": f"{GROUP}/{VERSION}", "kind": "HostMapping", "metadata": {"name": f"h{i}"},
                    "spec": {"hostname": f"h{i}.lan", "ip": f"10.{i // 250}.{i % 250}.1", "tags": ["bench"]}})
            for i in range(m):
                custom.create_namespaced_custom_object("traefik.io", "v1alpha1", NS, "ingressroutes", {
                    "apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute", "metadata": {"name": f"r{i}"},
                    "spec": {"routes": [{"match": f"Host(`r{i}a.lan`, `r{i}b.lan`) || Host(`r{i}c.lan`)",
                                         "kind": "Rule", "services": [{"name": "web", "port": 80}]}]}})
            applied = time.monotonic() - started

            def all_synced() -> bool:
                items = custom.list_namespaced_custom_object(GROUP, VERSION, NS, "hostmappings")["items"]
                synced = sum((item.get("status") or {}).get("phase") == "Synced" for item in items)
                return synced == n and len(server.entries()) == hostnames

            wait("every HostMapping Synced and every route host registered", all_synced, args.timeout)
            report(f"apply {n} HostMappings + {m} IngressRoutes x 3 hosts (applied in {applied:.1f} s)",
                   rpcs(server, since), objects, time.monotonic() - started)

            since = len(server.requests)
            started = time.monotonic()
            for i in range(n):  # touch a label: no generation change, no pass (an echo)
                custom.patch_namespaced_custom_object(GROUP, VERSION, NS, "hostmappings", f"h{i}",
                                                      {"metadata": {"labels": {"bench": "touched"}}})
            time.sleep(2.0)
            report("label-only changes of every HostMapping (echo filter)", rpcs(server, since), n,
                   time.monotonic() - started)

            since = len(server.requests)
            started = time.monotonic()
            for i in range(n):
                custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "hostmappings", f"h{i}")
            for i in range(m):
                custom.delete_namespaced_custom_object("traefik.io", "v1alpha1", NS, "ingressroutes", f"r{i}")

            def all_gone() -> bool:
                left = custom.list_namespaced_custom_object(GROUP, VERSION, NS, "hostmappings")["items"]
                return not left and not server.entries()

            wait("everything deleted", all_gone, args.timeout)
            report("delete everything", rpcs(server, since), objects, time.monotonic() - started)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of the process (operator, both emulators, this script): {peak:.0f} MiB")


if __name__ == "__main__":
    main()
