"""Issue 16 §2, for the ChuteGateway and HTTPRoute doors: a kill at every write.

One lifecycle (a ChuteConfig; a protected ChuteGateway published; its hostname changed; the gateway deleted) is
run once with nothing killed, recording the sequence of Cloudflare writes. Then, for every position k of that
sequence, it runs again on fresh emulators with the operator (`chutes run`, a process of its own) killed with
SIGKILL right after write k has been applied (the Cloudflare emulator's response hook: the write is in its state,
the answer never reaches the operator), restarted at once, and the lifecycle carried on.

Checked for every run: it converges (each phase completes); at the end of each phase, no duplicate (one tunnel,
Access application and DNS record per name) and, at the end, nothing left in Cloudflare but what the run started
with (no orphan) and the same end state as the run without a kill; and at no moment (checked after every request
the emulator answered) was the protected hostname routable (its CNAME and its tunnel rule present) without its
Access application.

Run: `.venv/bin/python bench/kill_at_every_write.py [--door gateway|httproute] [--only K]` (the HTTPRoute
lifecycle: a tenant on a shared tunnel, an annotated route behind Access published, its hostname changed, deleted).
Prints one line per run and a summary. A figure printer, not a test (one run takes a few seconds: the whole sequence
takes minutes).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "operator"))
sys.path.insert(0, str(REPO / "tests"))

from harness.kill_at_write import LIFECYCLES, run_once  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", type=int, help="run only the kill after write K (and the reference run)")
    parser.add_argument("--door", choices=sorted(LIFECYCLES), default="gateway")
    args = parser.parse_args()
    reference = run_once(None, args.door)
    print(f"reference run: {len(reference.writes)} writes in {reference.seconds:.1f} s: {' '.join(reference.writes)}")
    if reference.problems or reference.unprotected:
        print(f"    problems: {reference.problems} unprotected: {reference.unprotected[:3]}")
    positions = [args.only] if args.only else list(range(1, len(reference.writes) + 1))
    failed = 0
    for k in positions:
        run = run_once(k, args.door)
        differs = run.end != reference.end
        bad = run.problems or run.unprotected or differs or run.kills != 1
        failed += bool(bad)
        write = reference.writes[k - 1] if k <= len(reference.writes) else "?"
        print(f"kill after write {k:>2} ({write:<26}) {'FAIL' if bad else 'ok  '} {run.seconds:5.1f} s, "
              f"{len(run.writes)} writes" + (f": problems {run.problems}" if run.problems else "")
              + (f" unprotected {run.unprotected[:2]}" if run.unprotected else "")
              + (f" end state differs: {run.end} vs {reference.end}" if differs else "")
              + (f" kills {run.kills}" if run.kills != 1 else ""), flush=True)
    print(f"{len(positions)} runs, {failed} failed")


if __name__ == "__main__":
    main()
