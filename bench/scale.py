"""Benchmark (issue 16 §4): N exposures across the front doors, against both emulators, the operator (`chutes run
--standalone`, every door but ChuteGateways and router-hosts) in a process of its own.

The world: half of N are session Pods (zone example.net, their own tunnel), 45 % annotated HTTPRoutes (one tenant,
its own tunnel, zone routes.example.org, one in ten behind Access by a reusable policy), 5 % TunnelBindings (one
Service each, to one Tunnel, zone bind.example.org); `--shares` changes the mix. The zones' record quotas are raised
(as Cloudflare does for Enterprise zones on request) so that each door's hostnames fit in one zone. An object is
published when its CNAME and its tunnel rule are in the Cloudflare emulator and its Kubernetes side is done (a
session's two IngressRoutes, a route's or a binding's Ready condition). Four phases:

1. publish: every object created at once (8 client threads), Cloudflare's limit off (emulator and operator); prints
   the time to all published (p50, p99, worst per object), Cloudflare calls by operation, the operator's
   Kubernetes calls, and its RSS (target <= 300 MB).
2. resync: with everything published and the operator idle, one whole resync pass: from the end of the tenant's
   resync pass to the end of the next (the session door and every TunnelBinding resync as often); prints its
   Cloudflare calls by operation (target: 0 writes, listings per zone/tunnel, not per object), the operator's
   Kubernetes calls and the seconds in which it made calls.
3. restart: the limit enforced by the emulator (default Cloudflare's 1,200 calls per 5 minutes per token) and given
   to the operator (CHUTES_RATE_LIMIT/CHUTES_RATE_WINDOW), the operator restarted (kopf resumes every object, as
   in a rolling update): its calls until idle.
4. burst: B new hostnames, split across the doors as above, created at once under that limit; prints the time to
   all published, the 429s (requests refused for the budget: target 0) and the per-object latency (no object
   starved: every one published). Exit code 1 on a 429 or an object not published within --timeout.

The full size (`--exposures 10000 --burst 2000`) takes tens of minutes on two cores (the HTTPRoutes' Kubernetes
side dominates) and a few GB in this process (the emulators); develop with e.g. `--exposures 1000 --burst 200
--resync-interval 20 --rate-limit 120 --rate-window 30` (the same rate, shorter windows).
Run: `.venv/bin/python bench/scale.py [--exposures N] [--burst B] [--shares S,R,B] [--resync-interval S]
[--rate-limit L] [--rate-window W] [--latency S] [--keep-log FILE] [--operator-env KEY=VALUE]... [--publish-only]`
(`--publish-only`: the first phase alone, e.g. to compare `--operator-env CHUTES_MAX_RECONCILES=0` with the default).
A figure printer, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "operator"), str(ROOT / "tests")]
os.environ["ZYGOTE_LEAN"] = "1"  # the operator's process imports what `chutes run` without router-hosts does, no more

from chutes.sandbox.cloudflare import SandboxConfig, SandboxThread  # noqa: E402
from chutes.sandbox.kubernetes import KubeSandbox  # noqa: E402
from chutes.sandbox.kubernetes.kubeconfig import OPERATOR_TOKEN  # noqa: E402
from harness import sessions as h  # noqa: E402
from harness.processes import free_port, run_env  # noqa: E402
from harness.replicas import Replica  # noqa: E402
from harness.waiting import wait_for  # noqa: E402
from httproutes import NS, OPNS, RG, RV, WRITES, P, next_sync, ready, synced, tenant_home  # noqa: E402
from sessions import fan_out, healthy, percentile  # noqa: E402
from tunnels import GROUP, binding, put_tunnel  # noqa: E402

ROUTE_ZONE, BIND_ZONE = "routes.example.org", "bind.example.org"
QUOTA = 100_000
UNLIMITED = 1_000_000_000
POLL = 1.0
QUIET = 5.0  # no Cloudflare call for this long: the operator is idle
RESTART_QUIET = 20.0  # after a restart: kopf resumes every object, the session door's first pass comes later
BURST_SETTLE = 60.0  # after the burst is published: the longest wait for a quiet window


@dataclass
class Door:
    """One front door's share of the exposures: how to create the i-th object and its hostname."""

    name: str
    share: float
    create: Callable[[int], None]
    hostname: Callable[[int], str]
    tunnel: str
    finished: Callable[[], set[str]]  # the hostnames whose Kubernetes side is done (IngressRoutes, Ready)
    made: int = 0

    def hostnames(self, first: int, count: int) -> list[tuple[str, int]]:
        return [(self.hostname(i), i) for i in range(first, first + count)]


@dataclass
class Phase:
    """The Cloudflare requests of a phase (from index `since` of the emulator's log) and the Kubernetes calls (the
    emulator's audit counts at its start)."""

    since: int
    kube_before: Counter[Any]
    started: float = field(default_factory=time.monotonic)

    def calls(self, cf: Any) -> list[Any]:
        return cf.requests[self.since:]

    def kube_calls(self, kube: Any) -> Counter[str]:
        """The operator's Kubernetes calls since the phase began, by verb and resource."""
        calls: Counter[str] = Counter()
        for call, count in (kube.api_calls(OPERATOR_TOKEN) - self.kube_before).items():
            if call.resource:
                calls[f"{call.verb} {call.resource}{'/' + call.subresource if call.subresource else ''}"] += count
        return calls


def split(n: int, doors: list[Door]) -> list[int]:
    """`n` shared by the doors' shares (the first takes the rounding)."""
    counts = [int(n * door.share) for door in doors]
    counts[0] += n - sum(counts)
    return counts


def rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident set size of process `pid`, in MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def pid(replica: Replica) -> int:
    assert replica.process is not None, "the operator is not running"
    return replica.process.pid


def busy_seconds(cf: Any, kube: Any, done: Callable[[], bool]) -> float:
    """Watch the operator until `done()`; the seconds (to 0.5 s) in which it made a Cloudflare or Kubernetes call
    (but its Leases' renewals)."""
    busy, seen = 0.0, activity(cf, kube)
    while not done():
        time.sleep(0.5)
        if (now := activity(cf, kube)) != seen:
            seen, busy = now, busy + 0.5
    return busy


def print_kube(calls: Counter[str], n: int) -> None:
    total = sum(calls.values())
    print(f"  the operator's Kubernetes calls: {total}, {total / max(n, 1):.1f} per exposure: "
          + ", ".join(f"{what} {count}" for what, count in calls.most_common(12)), flush=True)


def print_calls(title: str, records: list[Any], seconds: float, n: int) -> None:
    calls = Counter(str(r.op) for r in records)
    writes = sum(count for op, count in calls.items() if op.rsplit(".", 1)[-1] in WRITES)
    refused = sum(1 for r in records if r.status == 429)
    print(f"{title}: {seconds:.1f} s, {len(records)} Cloudflare calls ({writes} writes, {refused} refused with 429), "
          f"{len(records) / max(n, 1):.3f} per exposure", flush=True)
    for op, count in sorted(calls.items()):
        print(f"    {op:<32} {count:>6}")


def published(cf: Any, wanted: dict[str, str]) -> set[str]:
    """The hostnames of `wanted` (hostname -> tunnel id) with both their CNAME and their rule in that tunnel."""
    state = cf.snapshot()
    records = {r["name"] for zone in state["dns_records"].values() for r in zone if r["type"] == "CNAME"}
    rules = {(tid, r.get("hostname")) for tid, c in state["tunnel_configs"].items()
             for r in (c.get("config") or {}).get("ingress") or []}
    return {name for name, tunnel in wanted.items() if name in records and (tunnel, name) in rules}


def track(cf: Any, all_doors: list[Door], created: dict[str, float], wanted: dict[str, str],
          timeout: float) -> dict[str, float]:
    """Seconds from each hostname's creation (`created`) until it is published in Cloudflare and its object is
    done in Kubernetes; stops at `timeout`."""
    done: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    poll = max(POLL, len(wanted) / 500)  # listings of every object (the emulators' work): less often when many
    while len(done) < len(wanted) and time.monotonic() < deadline:
        now = time.monotonic()
        finished = set().union(*(door.finished() for door in all_doors))
        for name in published(cf, {k: v for k, v in wanted.items() if k not in done and k in finished}):
            done[name] = now - created[name]
        time.sleep(poll)
    return done


def activity(cf: Any, kube: Any) -> tuple[int, int]:
    """(Cloudflare requests, the operator's Kubernetes calls but its Leases' renewals and watches) so far; -1 for
    the latter when the Kubernetes emulator is too busy to count them (busy, then)."""
    try:
        calls = kube.api_calls(OPERATOR_TOKEN)
    except TimeoutError:
        return len(cf.requests), -1
    return len(cf.requests), sum(count for call, count in calls.items()
                                 if call.resource != "leases" and call.verb != "watch")


def wait_idle(cf: Any, kube: Any, timeout: float, quiet: float = QUIET) -> float:
    """Wait until the operator made no Cloudflare nor Kubernetes call for `quiet` s; returns when it last made one
    (monotonic)."""
    last, seen, start = time.monotonic(), activity(cf, kube), time.monotonic()
    while time.monotonic() - last < quiet:
        time.sleep(0.5)
        if (now := activity(cf, kube)) != seen:
            seen, last = now, time.monotonic()
        if time.monotonic() - start > timeout:
            print(f"  (never idle for {quiet:.0f} s within {timeout:.0f} s)")
            break
    return last


def sandbox_config() -> SandboxConfig:
    return SandboxConfig.from_dict({
        "zones": [{"name": "example.com", "plan": "free"},
                  *({"name": name, "plan": "enterprise", "record_quota": QUOTA}
                    for name in (h.ZONE, ROUTE_ZONE, BIND_ZONE))],
        "tokens": [{"name": "operator"}],
        "rate_limit": {"requests": UNLIMITED, "period": 300},
    })


def operator_env(kube: Any, cf: Any, session_tunnel: str, health: int, args: argparse.Namespace,
                 limited: bool) -> dict[str, str]:
    return run_env(kube, cf) | h.session_env(cf, session_tunnel, health) | {
        "KUBECONFIG": kube.operator_kubeconfig,  # a token of its own: its calls are told apart
        "OPERATOR_NAMESPACE": OPNS, "CHUTES_CHUTES": "false", "CHUTES_HTTPROUTES": "true", "CHUTES_TUNNELS": "true",
        "CHUTES_SESSIONS": "true", "CHUTES_RESYNC_INTERVAL": str(args.resync_interval),
        "CHUTES_SWEEP_INTERVAL": str(args.sweep_interval), "CHUTES_LOG_LEVEL": args.log_level,
        "CHUTES_RATE_LIMIT": str(args.rate_limit if limited else UNLIMITED),
        "CHUTES_RATE_WINDOW": str(args.rate_window),
    } | dict(pair.split("=", 1) for pair in args.operator_env)


def doors(cf: Any, kube: Any, api: Any, session_tunnel: str) -> tuple[Any, list[Door]]:
    """The doors' worlds (tenant, Tunnel; the operator must run for the Tunnel) and how to make their objects."""
    client, core, custom, _sdk, tenant_tunnel = tenant_home(cf, kube)
    apps = kubernetes.client.AppsV1Api(client)
    bind_tunnel = put_tunnel(cf, core, custom, apps, BIND_ZONE)

    def session(i: int) -> None:
        h.create_pod(api, h.pod(f"session-{i}", f"{i:012x}"))

    def route(i: int) -> None:
        annotations = {P + "enabled": "true", P + "tenant": "home", P + "hostname": f"r{i}.{ROUTE_ZONE}"}
        if i % 10 == 0:
            annotations |= {P + "access.enabled": "true", P + "access.existingPolicyNames": "Team"}
        custom.create_namespaced_custom_object(RG, RV, NS, "httproutes", {
            "apiVersion": f"{RG}/{RV}", "kind": "HTTPRoute", "metadata": {"name": f"r{i}", "annotations": annotations},
            "spec": {"rules": [{"backendRefs": [{"name": "web", "port": 80}]}]}})

    def bound(i: int) -> None:
        core.create_namespaced_service(NS, {"metadata": {"name": f"s{i}"}, "spec": {"ports": [{"port": 80}]}})
        custom.create_namespaced_custom_object(GROUP, "v1alpha1", NS, "tunnelbindings",
                                               binding(f"b{i}", [{"name": f"s{i}"}]))

    def sessions_routed() -> set[str]:
        response = custom.list_namespaced_custom_object(
            "traefik.io", "v1alpha1", h.NAMESPACE, "ingressroutes", _preload_content=False)
        names = {item["metadata"]["name"] for item in json.loads(response.data)["items"]}
        return {h.hostname(name.removeprefix("opencode-session-").removesuffix(f"{h.SUFFIX}-app"))
                for name in names if name.endswith("-app") and f"{name[:-4]}-signin" in names}

    def routes_ready() -> set[str]:
        items = custom.list_namespaced_custom_object(RG, RV, NS, "httproutes")["items"]
        return {i["metadata"]["annotations"][P + "hostname"] for i in items if ready(i)}

    def bindings_ready() -> set[str]:
        items = custom.list_namespaced_custom_object(GROUP, "v1alpha1", NS, "tunnelbindings")["items"]
        return {f"{i['subjects'][0]['name']}.{BIND_ZONE}" for i in items
                if any(c["type"] == "Ready" and c["status"] == "True" for c in (i.get("status") or {}).get(
                    "conditions", []))}

    return custom, [Door("sessions", 0.50, session, lambda i: h.hostname(f"{i:012x}"), session_tunnel, sessions_routed),
            Door("httproutes", 0.45, route, lambda i: f"r{i}.{ROUTE_ZONE}", str(tenant_tunnel.id), routes_ready),
            Door("tunnelbindings", 0.05, bound, lambda i: f"s{i}.{BIND_ZONE}", bind_tunnel, bindings_ready)]


def create(all_doors: list[Door], n: int) -> tuple[dict[str, float], dict[str, str]]:
    """`n` new objects across the doors, at once; (hostname -> when created, hostname -> its tunnel)."""
    jobs: list[tuple[Door, str, int]] = []
    for door, count in zip(all_doors, split(n, all_doors), strict=True):
        jobs += [(door, name, i) for name, i in door.hostnames(door.made, count)]
        door.made += count
    stamps: dict[str, float] = {}
    by_name = {name: (door, i) for door, name, i in jobs}
    fan_out(lambda name: by_name[name][0].create(by_name[name][1]), [name for _, name, _ in jobs], stamps)
    return stamps, {name: door.tunnel for door, name, _ in jobs}


def latency_line(done: dict[str, float], wanted: dict[str, str]) -> str:
    values = list(done.values()) or [0.0]
    worst = max(done, key=lambda k: done[k]) if done else "-"
    missing = sorted(set(wanted) - set(done))
    line = (f"created->published p50={percentile(values, 0.5):.1f}s p99={percentile(values, 0.99):.1f}s "
            f"worst={max(values):.1f}s ({worst}); {len(done)} of {len(wanted)} published")
    if missing:
        line += f"; NOT PUBLISHED (starved?): {len(missing)}, e.g. {', '.join(missing[:5])}"
    return line


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exposures", type=int, default=10_000)
    parser.add_argument("--burst", type=int, default=2_000)
    parser.add_argument("--resync-interval", type=float, default=60.0, help="the operator's (s)")
    parser.add_argument("--sweep-interval", type=float, default=3600.0, help="the operator's (s)")
    parser.add_argument("--rate-limit", type=int, default=1200, help="calls per window in the burst phase")
    parser.add_argument("--rate-window", type=float, default=300.0, help="seconds")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every Cloudflare call")
    parser.add_argument("--timeout", type=float, default=3600.0, help="per phase (s)")
    parser.add_argument("--log-level", default="WARNING", help="the operator's")
    parser.add_argument("--shares", default="0.5,0.45,0.05",
                        help="the shares of session Pods, HTTPRoutes and TunnelBindings (default 0.5,0.45,0.05)")
    parser.add_argument("--operator-env", action="append", default=[], metavar="KEY=VALUE",
                        help="more of the operator's settings environment (CHUTES_*), repeatable; the operator is "
                             "forked from a zygote that did its imports, so what Python or malloc read at a "
                             "process's start (PYTHONTRACEMALLOC, MALLOC_ARENA_MAX) must be set in this script's own "
                             "environment")
    parser.add_argument("--show-resync", action="store_true", help="print every call of the resync window")
    parser.add_argument("--publish-only", action="store_true",
                        help="stop after the first phase (e.g. to compare CHUTES_MAX_RECONCILES values)")
    parser.add_argument("--keep-log", type=Path, help="where the operator's stderr goes (default: a temporary file)")
    args = parser.parse_args()
    n, burst = args.exposures, args.burst
    log = args.keep_log or Path(tempfile.mkstemp(prefix="scale-", suffix=".log")[1])

    with SandboxThread(sandbox_config()) as cf, KubeSandbox(namespaces=["default", NS, OPNS, h.NAMESPACE]) as kube:
        os.environ["KUBECONFIG"] = kube.kubeconfig
        api = h.kube_client(kube)
        session_tunnel = h.create_tunnel(cf)
        health = free_port()
        replica = Replica("operator", operator_env(kube, cf, session_tunnel, health, args, limited=False),
                          ("--standalone",), log)
        replica.start()
        try:
            wait_for("the operator's health", lambda: healthy(health), timeout=60)
            custom, all_doors = doors(cf, kube, api, session_tunnel)
            for door, share in zip(all_doors, args.shares.split(","), strict=True):
                door.share = float(share)
            cf.faults.latency = args.latency
            shares = ", ".join(f"{d.name} {c}" for d, c in zip(all_doors, split(n, all_doors), strict=True))
            print(f"{n} exposures ({shares}); operator log: {log}", flush=True)

            phase = Phase(len(cf.requests), kube.api_calls(OPERATOR_TOKEN))
            created, wanted = create(all_doors, n)
            print(f"  created in {time.monotonic() - phase.started:.1f} s", flush=True)
            done = track(cf, all_doors, created, wanted, args.timeout)
            seconds = time.monotonic() - phase.started
            last = wait_idle(cf, kube, args.timeout)
            print_calls("publish (all created at once)", phase.calls(cf), seconds, n)
            print_kube(phase.kube_calls(kube), n)
            print("  " + latency_line(done, wanted))
            print(f"  idle {time.monotonic() - last:.0f} s after; operator RSS now {rss_mb(pid(replica))[0]:.0f} MiB, "
                  f"peak {rss_mb(pid(replica))[1]:.0f} MiB (target <= 300 MB)", flush=True)
            if args.publish_only:
                return 0 if len(done) == len(wanted) else 1

            # one whole pass of the tenant's resync (the session door's and every binding's timer run as often)
            stamp = next_sync(custom, synced(custom), 3 * args.resync_interval + args.timeout)
            phase = Phase(len(cf.requests), kube.api_calls(OPERATOR_TOKEN))
            busy = busy_seconds(cf, kube, lambda: synced(custom) != stamp)
            print_calls(f"one resync pass (from the end of the tenant's pass to the next one's, "
                        f"{time.monotonic() - phase.started:.0f} s; every {args.resync_interval:.0f} s; steady "
                        "state)", phase.calls(cf), busy, n)
            print_kube(phase.kube_calls(kube), n)
            print(f"  (the time above: seconds in which the operator made calls); operator RSS "
                  f"{rss_mb(pid(replica))[0]:.0f} MiB", flush=True)
            if args.show_resync:
                for record in phase.calls(cf):
                    print(f"    {record.op} {record.method} {record.path} {record.query}")

            replica.stop()
            cf.set_rate_limit(args.rate_limit, args.rate_window)
            replica.env = operator_env(kube, cf, session_tunnel, health, args, limited=True)
            phase = Phase(len(cf.requests), kube.api_calls(OPERATOR_TOKEN))
            replica.start()
            wait_for("the operator's health", lambda: healthy(health), timeout=60)
            wait_for("the restarted operator's first call", lambda: len(cf.requests) > phase.since, timeout=120)
            last = wait_idle(cf, kube, args.timeout, min(RESTART_QUIET, args.resync_interval / 2))
            print_calls(f"restart under the limit ({args.rate_limit} per {args.rate_window:.0f} s; a full resync)",
                        phase.calls(cf), last - phase.started, n)
            print_kube(phase.kube_calls(kube), n)

            phase = Phase(len(cf.requests), kube.api_calls(OPERATOR_TOKEN))
            created, wanted = create(all_doors, burst)
            done = track(cf, all_doors, created, wanted, args.timeout)
            seconds = time.monotonic() - phase.started
            print("  " + latency_line(done, wanted), flush=True)
            refused = sum(1 for r in cf.requests[phase.since:] if r.status == 429)
            print(f"  requests refused with 429 until all were published: {refused}", flush=True)
            # At 10,000 the resync passes (every --resync-interval) keep the operator busy: no quiet window may come.
            wait_idle(cf, kube, min(args.timeout, BURST_SETTLE))
            print_calls(f"burst of {burst} new hostnames (calls until idle, or {BURST_SETTLE:.0f} s after)",
                        phase.calls(cf), seconds, burst)
            print_kube(phase.kube_calls(kube), burst)
            current, peak = rss_mb(pid(replica))
            print(f"  operator RSS {current:.0f} MiB (peak since restart {peak:.0f} MiB); crashes: "
                  f"{replica.crashes or 'none'}", flush=True)
            refused = sum(1 for r in cf.requests[phase.since:] if r.status == 429)
            return 1 if refused or len(done) < len(wanted) else 0
        finally:
            replica.stop()
            api.close()


if __name__ == "__main__":
    sys.exit(main())
