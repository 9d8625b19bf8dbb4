"""Benchmark: a burst of N session Pods, then their deletion, with one and with two operator replicas.

This process runs the Kubernetes emulator and the Cloudflare emulator (pro zone example.net, 20 ms added
to every Cloudflare request); each replica is `chutes run --sessions --standalone` in a process of its
own, like the seed's sidecars, with its own API token so that calls can be told apart. Pods are created
(then deleted) by 8 client threads as fast as the emulator takes them.

Prints, per phase: Cloudflare calls in total, per session and by operation (counted from the first Pod
write until every replica has gone quiet, verification passes included), the time from each Pod's
creation to its session being fully published (DNS record + tunnel rule + both IngressRoutes; p50, p99,
max) or from its deletion to everything gone, and the peak RSS of each replica.

Run: .venv/bin/python bench/sessions.py [N [REPLICAS...]]   (default: 500 1 2; BENCH_VERBOSE=1 logs each pass)

The totals above depend on how many passes the burst takes (the Pods' timing, the machine's load). `--passes [N]`
(default 200) drives one publisher in this process, one pass at a time, and prints the calls of each: N Pods
published, the verification and a steady pass, then the Pods deleted and removed, and the verification. Those
figures do not depend on timing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "operator"), str(ROOT / "tests")]

from kubernetes_asyncio import config as kube_config  # noqa: E402

from chutes.claims import ClaimStore  # noqa: E402
from chutes.cloudflare_core import CloudflareCore  # noqa: E402
from chutes.frontdoors.sessions.config import load_config  # noqa: E402
from chutes.frontdoors.sessions.reconcile import PodEvents, SessionPublisher  # noqa: E402
from chutes.sandbox.cloudflare import SandboxConfig, SandboxThread  # noqa: E402
from chutes.sandbox.kubernetes import KubeSandbox  # noqa: E402
from harness import sessions as h  # noqa: E402
from harness.processes import free_port  # noqa: E402
from harness.waiting import wait_for  # noqa: E402

LATENCY = 0.02
CLIENT_THREADS = 8
POLL = 0.1
QUIET = 3.0  # no Cloudflare call for this long: every replica is done (verification included)
TARGET_CALLS = 20
TARGET_P99 = 5.0


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident set size of this process, in MiB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def wait_quiet(cf: Any, deadline: float = 60.0) -> None:
    start, last, seen = time.monotonic(), time.monotonic(), len(cf.requests)
    while time.monotonic() - last < QUIET:
        time.sleep(0.1)
        if len(cf.requests) != seen:
            seen, last = len(cf.requests), time.monotonic()
        if time.monotonic() - start > deadline:
            raise TimeoutError("the replicas never went quiet")


def track(check: Callable[[h.Published], set[str]], cf: Any, api: Any, tunnel: str, started: dict[str, float],
          timeout: float = 60.0) -> dict[str, float]:
    """Seconds from `started[hash]` until `check` first reports the hash done."""
    done: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(done) < len(started):
        now = time.monotonic()
        for session_hash in check(h.published(cf, api, tunnel)) & set(started) - set(done):
            done[session_hash] = now - started[session_hash]
        if now > deadline:
            raise TimeoutError(f"only {len(done)} of {len(started)} sessions done after {timeout} s")
        time.sleep(POLL)
    return done


def fan_out(action: Callable[[str], None], hashes: list[str], stamp: dict[str, float]) -> None:
    def run(session_hash: str) -> None:
        stamp[session_hash] = time.monotonic()
        action(session_hash)

    with concurrent.futures.ThreadPoolExecutor(CLIENT_THREADS) as pool:
        list(pool.map(run, hashes))


def report(phase: str, n: int, cf: Any, tokens: dict[str, str], seconds: dict[str, float], wall: float) -> int:
    calls = Counter(record.op for record in cf.requests)
    total = sum(calls.values())
    by_op = ", ".join(f"{op}={count} ({count / n:.4f}/session)" for op, count in sorted(calls.items()))
    per_replica = Counter(record.token_name for record in cf.requests)
    replicas = ", ".join(f"{name}={per_replica[name]}" for name in tokens)
    values = list(seconds.values())
    current, peak = rss_mb()  # the bench process: both emulators and the client
    print(f"  {phase:<8} calls={total:<3} per-session={total / n:.3f}  by replica: {replicas}")
    print(f"           by operation: {by_op}")
    measured = "created->published" if phase == "publish" else "deleted->gone"
    print(f"           {measured}: p50={statistics.median(values):.2f}s p99={percentile(values, 0.99):.2f}s"
          f" max={max(values):.2f}s  burst wall={wall:.2f}s  emulators' RSS={current:.0f} MiB (peak {peak:.0f} MiB)")
    return total


def process_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) / 1024


@contextlib.contextmanager
def replicas(cf: Any, kube: Any, tunnel: str, tokens: dict[str, str]) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Each replica is `chutes run --sessions` in a process of its own, as the seed's sidecars are."""
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for token in tokens.values():
            port = free_port()
            env = {key: value for key, value in os.environ.items() if not key.startswith(("CF_", "CHUTES_", "CLOUD"))}
            env.update(h.session_env(cf, tunnel, port), CF_API_TOKEN=token, KUBECONFIG=kube.kubeconfig,
                       PYTHONPATH=str(ROOT / "operator"), CHUTES_LOG_LEVEL=os.environ.get("BENCH_LOG", "WARNING"))
            command = [sys.executable, "-m", "chutes", "run", "--sessions", "--no-chutes", "--no-httproutes",
                       "--standalone", f"--cloudflare-base-url={cf.base_url}"]
            processes.append(subprocess.Popen(command, env=env))
            wait_for(f"replica health on port {port}", functools.partial(healthy, port), timeout=30)
        yield processes
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def run(n: int, replica_count: int) -> tuple[int, int, float]:
    tokens = {f"replica-{chr(ord('a') + i)}": f"bench-token-{i}-{'x' * 24}" for i in range(replica_count)}
    config = SandboxConfig.from_dict({"tokens": [{"name": name, "value": value} for name, value in tokens.items()]})
    with KubeSandbox(namespaces=["default", h.NAMESPACE]) as kube, SandboxThread(config) as cf:
        os.environ["KUBECONFIG"] = kube.kubeconfig
        tunnel = h.create_tunnel(cf, [{"hostname": "foreign.example.net", "service": "http://foreign:80"}])
        api = h.kube_client(kube)
        hashes = [f"{i:012x}" for i in range(0x8b6cc2aa0000, 0x8b6cc2aa0000 + n)]
        with replicas(cf, kube, tunnel, tokens) as processes:
            wait_quiet(cf)
            cf.faults.latency = LATENCY
            cf.reset_log()
            print(f"N={n} sessions, {replica_count} replica(s), {LATENCY * 1000:.0f} ms per Cloudflare request")

            created: dict[str, float] = {}
            started = time.monotonic()
            fan_out(lambda x: h.create_pod(api, h.pod(f"session-{x}", x)), hashes, created)
            wall = time.monotonic() - started
            latency = track(lambda state: set(state.sessions()), cf, api, tunnel, created)
            wait_quiet(cf)
            state = h.published(cf, api, tunnel)
            assert state.sessions() == set(hashes) and state.duplicates == 0, "not exactly the desired state"
            publish = report("publish", n, cf, tokens, latency, wall)
            p99 = percentile(list(latency.values()), 0.99)

            cf.reset_log()
            deleted: dict[str, float] = {}
            started = time.monotonic()
            fan_out(lambda x: h.delete_pod(api, f"session-{x}"), hashes, deleted)
            wall = time.monotonic() - started

            def gone(state: h.Published) -> set[str]:
                present = {name.split(".")[0][: -len(h.SUFFIX)] for name in state.records | state.rules}
                present |= {name.removeprefix("opencode-session-").rsplit("-", 2)[0] for name in state.routes}
                return set(hashes) - present

            latency = track(gone, cf, api, tunnel, deleted)
            wait_quiet(cf)
            state = h.published(cf, api, tunnel)
            assert not state.records and not state.rules and not state.routes, "something was left behind"
            assert state.ingress == ({"hostname": "foreign.example.net", "service": "http://foreign:80"},
                                     {"service": "http_status:404"}), "the foreign rule or the catch-all changed"
            remove = report("remove", n, cf, tokens, latency, wall)
            print("  replica peak RSS: " + ", ".join(f"{name}={process_rss_mb(process.pid):.0f} MiB"
                                                  for name, process in zip(tokens, processes, strict=True)))
    return publish, remove, p99


def passes(n: int) -> int:
    """The Cloudflare calls of each pass, passes driven one at a time (see the module)."""

    async def no_event(*_: Any) -> None:
        return None

    with KubeSandbox(namespaces=["default", h.NAMESPACE]) as kube, SandboxThread(SandboxConfig.from_dict({})) as cf:
        tunnel = h.create_tunnel(cf, [{"hostname": "foreign.example.net", "service": "http://foreign:80"}])
        hashes = [f"{i:012x}" for i in range(0x8b6cc2aa0000, 0x8b6cc2aa0000 + n)]
        pods = h.kube_client(kube)
        for value in hashes:
            h.create_pod(pods, h.pod(f"session-{value}", value))

        async def drive() -> None:
            api = await kube_config.new_client_from_config(config_file=kube.kubeconfig)
            core = CloudflareCore(cf.token, cf.base_url)
            publisher = SessionPublisher(load_config(h.session_env(cf, tunnel)), api, core, PodEvents(no_event),
                                         claims=ClaimStore(api, "default", core.owner_id))
            await publisher.account_id()
            cf.reset_log()
            gone = set(hashes)
            for name in ("publish", "verify", "steady", "remove", "verify"):
                if name == "remove":
                    for value in hashes:
                        h.delete_pod(pods, f"session-{value}")
                result = await publisher.run_pass(explained=lambda: gone)
                ops = Counter(record.op for record in cf.requests)
                print(f"  {name:<8} calls={sum(ops.values())}  " + ", ".join(f"{op}={count}" for op, count in
                                                                         sorted(ops.items())) +
                      f"  (published {len(result.published)}, removed {result.removed})")
                cf.reset_log()
            await api.close()

        print(f"N={n} sessions, one pass at a time")
        asyncio.run(drive())
    return 0


def main(n: int, replica_counts: list[int]) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(relativeCreated)8.0f %(threadName)s %(message)s")
    if os.environ.get("BENCH_VERBOSE"):  # log every pass that wrote, with its steps' durations
        logging.getLogger("chutes.frontdoors.sessions").setLevel(logging.INFO)
    verdicts = []
    for count in replica_counts:
        publish, remove, p99 = run(n, count)
        ok = publish <= TARGET_CALLS and remove <= TARGET_CALLS and p99 <= TARGET_P99
        verdicts.append(ok)
        print(f"  target (N=500): <= {TARGET_CALLS} calls each way, p99 <= {TARGET_P99:.0f} s -> "
              f"{publish} / {remove} calls, p99 {p99:.2f} s: {'OK' if ok else 'OVER TARGET'}")
    return 0 if all(verdicts) else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["--passes"]:
        sys.exit(passes(int(sys.argv[2]) if len(sys.argv) > 2 else 200))
    args = [int(arg) for arg in sys.argv[1:]]
    sys.exit(main(args[0] if args else 500, args[1:] or [1, 2]))
