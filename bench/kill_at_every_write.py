"""Issue 16 §2, for every front door: a kill at every write.

For each door, one lifecycle (harness/kill_lifecycles.py: ChuteGateway, annotated HTTPRoute, Tunnel and
TunnelBinding, session Pods, router-hosts HostMappings and IngressRoutes) is run once with nothing killed,
recording the sequence of writes its door makes (to Cloudflare; to the router-hosts server for the hosts door).
Then, for every position k of that sequence, it runs again on fresh emulators with the operator (`chutes run`, a
process of its own) killed with SIGKILL right after write k has been applied (the emulator's response hook: the
write is in its state, the answer never reaches the operator), restarted at once, and the lifecycle carried on.

Checked for every run: it converges (each phase completes); no duplicate (one tunnel, Access application, policy,
identity provider, DNS record, tunnel rule, router-hosts entry per name) after any write answered nor at the end of
a phase; at the end, nothing left of the lifecycle (no orphan: each lifecycle waits for it) and the same end state
as the run without a kill (both servers and the ledger's claims, by name); no phase slower than 50 s (a resume must
not wait for a periodic pass: the ChuteConfig sweep's first comes 60 s after a start, a tenant's HTTPRoute sweep's
at the start, while a dead holder's tunnel Lease lapses in 30 s; rerun a slow one alone before believing it: a
loaded machine is slow too); and at no moment (checked after every Cloudflare write answered) was a protected
hostname routable (its CNAME and its tunnel rule present) without its Access application. KILL_AT_WRITE_LOG=FILE
keeps the operators' output (CHUTES_LOG_LEVEL: ERROR).

Run: `.venv/bin/python bench/kill_at_every_write.py [--door all|gateway|httproute|tunnel|session|hosts]... [--only
K]`. Prints one line per run and, per door, the writes in its lifecycle, the positions run, how many passed, and
each failure with why. A figure printer, not a test (a run takes seconds: a door's every position takes minutes).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "operator"))
sys.path.insert(0, str(REPO / "tests"))

from harness.kill_at_write import SLOW_PHASE, run_once  # noqa: E402
from harness.kill_lifecycles import DOORS  # noqa: E402


def one_door(door: str, only: int | None) -> str:
    """Run `door`'s positions; its summary line (and the failures, each with why)."""
    started = time.monotonic()
    reference = run_once(None, door)
    print(f"[{door}] reference run: {len(reference.writes)} writes in {reference.seconds:.1f} s: "
          f"{' '.join(reference.writes)}", flush=True)
    if reference.problems or reference.unprotected:
        print(f"    problems: {reference.problems} unprotected: {reference.unprotected[:3]}")
    positions = [only] if only else list(range(1, len(reference.writes) + 1))
    failures = []
    for k in positions:
        run = run_once(k, door)
        differs = run.end != reference.end
        why = (([f"problems {run.problems}"] if run.problems else [])
               + ([f"unprotected {run.unprotected[:2]}"] if run.unprotected else [])
               + ([f"end state differs: {run.end} vs {reference.end}"] if differs else [])
               + ([f"kills {run.kills}"] if run.kills != 1 else [])
               + [f"phase {what!r} converged only after {seconds:.0f} s (a periodic pass?)"
                  for what, seconds in run.phases if seconds > SLOW_PHASE])
        write = reference.writes[k - 1] if k <= len(reference.writes) else "?"
        if why:
            failures.append(f"    k={k} ({write}): {'; '.join(why)}")
        slowest = max(run.phases, key=lambda phase: phase[1], default=("-", 0.0))
        print(f"[{door}] kill after write {k:>2} ({write:<26}) {'FAIL' if why else 'ok  '} {run.seconds:5.1f} s "
              f"(slowest phase: {slowest[0]}, {slowest[1]:.1f} s), {len(run.writes)} writes"
              + (f": {'; '.join(why)}" if why else ""), flush=True)
    return "\n".join([f"{door:<10} {len(reference.writes):>6} {len(positions):>9} {len(positions) - len(failures):>6} "
                      f"{len(failures):>6} {time.monotonic() - started:>7.0f} s", *failures])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", type=int, help="run only the kill after write K (and the reference run)")
    parser.add_argument("--door", action="append", choices=["all", *DOORS],
                        help="the door(s) to run (repeatable; default: all)")
    args = parser.parse_args()
    doors = list(DOORS) if not args.door or "all" in args.door else args.door
    summaries = [one_door(door, args.only) for door in doors]
    print(f"\n{'door':<10} {'writes':>6} {'positions':>9} {'passed':>6} {'failed':>6} {'time':>9}")
    print("\n".join(summaries))


if __name__ == "__main__":
    main()
