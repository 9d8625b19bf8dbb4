"""Benchmark: N router-hosts entries added, read and deleted through the real client, over mutual TLS.

GrpcHostsBackend against the in-process router-hosts emulator (its own thread), in two runs: one call at a time
(latency per RPC: p50, p95, max) and all N at once with asyncio.gather (throughput). Prints RPCs by method (from
the emulator's log), timings and the process's peak RSS. Run: .venv/bin/python bench/hosts_backend.py [N ...]
"""

from __future__ import annotations

import asyncio
import resource
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "operator"))

from chutes.hosts_core import GrpcHostsBackend, HostSpec
from chutes.sandbox.routerhosts import RouterHostsSandbox


def spec(i: int) -> HostSpec:
    return HostSpec(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", f"host-{i}.lan", f"k8s:bench/host-{i}",
                    (f"alias-{i}",), ("bench",))


def latencies(label: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[int(len(ordered) * 0.95) - 1] if len(ordered) > 1 else ordered[0]
    return (f"{label} p50={statistics.median(ordered) * 1000:.2f}ms p95={p95 * 1000:.2f}ms "
            f"max={ordered[-1] * 1000:.2f}ms")


async def sequential(client: GrpcHostsBackend, n: int) -> None:
    timings: dict[str, list[float]] = {"add": [], "get": [], "delete": []}

    async def timed(name: str, call: Callable[[], Awaitable[Any]]) -> Any:
        started = time.perf_counter()
        result = await call()
        timings[name].append(time.perf_counter() - started)
        return result

    started = time.perf_counter()
    ids = [(await timed("add", lambda i=i: client.add(spec(i)))).id for i in range(n)]
    for host_id in ids:
        await timed("get", lambda h=host_id: client.get(h))
    for host_id in ids:
        await timed("delete", lambda h=host_id: client.delete(h))
    wall = time.perf_counter() - started
    print(f"  sequential  wall={wall:6.2f}s  {3 * n / wall:7.0f} RPC/s")
    for name, samples in timings.items():
        print("   ", latencies(f"{name:<6}", samples))


async def concurrent(client: GrpcHostsBackend, n: int) -> None:
    started = time.perf_counter()
    entries = await asyncio.gather(*(client.add(spec(i)) for i in range(n)))
    added = time.perf_counter()
    await asyncio.gather(*(client.get(entry.id) for entry in entries))
    read = time.perf_counter()
    await asyncio.gather(*(client.delete(entry.id) for entry in entries))
    done = time.perf_counter()
    print(f"  concurrent  wall={done - started:6.2f}s  add={added - started:.2f}s get={read - added:.2f}s "
          f"delete={done - read:.2f}s  {3 * n / (done - started):7.0f} RPC/s")


async def run(server: Any, n: int) -> None:
    async with GrpcHostsBackend(server.address, server.ca, server.cert, server.key) as client:
        await client.list_all()  # connect (TLS handshake) before timing
        server.reset_log()
        await sequential(client, n)
        await concurrent(client, n)
        assert await client.list_all() == []
    counts = server.counters
    codes = {record.code for record in server.requests}
    print(f"  RPCs {sum(counts.values())}: " + ", ".join(f"{rpc}={count}" for rpc, count in sorted(counts.items()))
          + f"  codes={sorted(codes)}")


def main(sizes: list[int]) -> None:
    for n in sizes:
        print(f"N={n} (add, get, delete each; client and emulator in one process)")
        with RouterHostsSandbox() as server:
            asyncio.run(run(server, n))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {rss:.0f} MiB")


if __name__ == "__main__":
    main([int(arg) for arg in sys.argv[1:]] or [1000])
