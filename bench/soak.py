"""Issue 16 §1: the soak. Two `chutes run` replicas (processes, kopf peering, every front door on) against the
Kubernetes, Cloudflare and router-hosts (gRPC over mutual TLS) emulators, foreign objects and entries in place, faults
all along (Cloudflare: ≈5 % 5xx, ≈2 % 429 with Retry-After, ≈1 % of writes applied and their answer dropped, 20 ms
latency; router-hosts: ≈3 % UNAVAILABLE, ≈2 % INTERNAL, ≈5 % of writes applied and their answer lost, 20 ms latency),
a replica killed with SIGKILL and restarted every 20 to 40 events (once both at once), another writer editing the
shared tunnel's configuration and another admin a foreign router-hosts entry every 15 events, and N seeded random
events over ChuteGateways, annotated HTTPRoutes, TunnelBindings, annotated Services, session Pods, HostMappings,
IngressRoutes, an IngressRouteTCP and the Secrets, tenant and Tunnel they stand on. Then faults off, and the end
state checked by reading the emulators (see tests/harness/soak.py, soak_checks.py and soak_hosts.py).

Run: `.venv/bin/python bench/soak.py --events 1000 [--seed S] [--pace SECONDS] [--quiet]`. Prints the events (unless
--quiet), then: events by kind, faults injected by kind, kills, Cloudflare and router-hosts calls, the time to converge
after the last event, and each check's result. Exit code 1 when a check failed.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "operator"))
sys.path.insert(0, str(REPO / "tests"))

from harness.soak import run  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--pace", type=float, default=0.15, help="seconds between events (default 0.15)")
    parser.add_argument("--quiet", action="store_true", help="do not print each event")
    parser.add_argument("--careless-writer", action="store_true",
                        help="the shared tunnel's other writer reads, then PUTs through the API (default: at once)")
    parser.add_argument("--no-tunnel-deletes", action="store_true", help="never delete and restore Tunnel t1")
    parser.add_argument("--no-service-moves", action="store_true",
                        help="never switch an annotated Service to another Tunnel")
    parser.add_argument("--keep-logs", type=Path, help="a folder for the replicas' logs (default: a temporary one)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1_000_000)
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        workdir = args.keep_logs or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        report = run(args.events, seed, workdir, pace=args.pace, careless_writer=args.careless_writer,
                     tunnel_deletes=not args.no_tunnel_deletes, service_moves=not args.no_service_moves,
                     say=(lambda _: None) if args.quiet else (lambda line: print(line, flush=True)))
    print(f"\nseed {report.seed}: {report.events} events in {report.events_seconds:.0f} s "
          f"({report.seconds:.0f} s in all)")
    print("events by kind: " + ", ".join(f"{k} {n}" for k, n in sorted(report.event_kinds.items())))
    print("faults injected: " + (", ".join(f"{k} {n}" for k, n in sorted(report.faults.items())) or "none"))
    print(f"kills: {len(report.kills)} ({'; '.join(report.kills)})")
    print("Cloudflare calls: " + ", ".join(f"{k} {n}" for k, n in sorted(report.calls.items())
                                         if not k.startswith("router-hosts")))
    print("router-hosts calls: " + ", ".join(f"{k.removeprefix('router-hosts').strip() or 'all'} {n}"
                                           for k, n in sorted(report.calls.items()) if k.startswith("router-hosts")))
    converge = f"{report.converge_seconds:.1f} s" if report.converge_seconds is not None else "not converged"
    print(f"time to converge after the last event: {converge}")
    print(f"protection checked after {report.protected_checks} writes; {report.schema_checks} Cloudflare answers "
          f"validated against Cloudflare's published schema ({report.schema_seconds:.1f} s)")
    for name, found in report.checks.items():
        print(f"check {name}: {'FAIL' if found else 'ok'}" + "".join(f"\n    {line}" for line in found[:20])
              + (f"\n    ... {len(found) - 20} more" if len(found) > 20 else ""))
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
