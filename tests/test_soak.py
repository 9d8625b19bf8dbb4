"""The bounded soak (issue 16 §1; the long one: bench/soak.py --events 1000): two `chutes run` replicas as processes,
every front door on but the router-hosts one, foreign objects in place, faults all along, replicas killed with
SIGKILL and restarted, another writer editing the shared tunnel, ~150 seeded random events; then the end state, read
from the emulators, is a clean run's, with no orphan, no duplicate, every foreign object byte-identical, no moment
at which a protected hostname was routable without Access, no secret in the logs, Events or status, and no crash.
A failure names the seed: `bench/soak.py --events 150 --seed <seed> --pace 0.1 --keep-logs DIR` replays the same
events (the timing differs) and keeps the replicas' logs, the journal and the request log.

Every kind of event is on, Tunnel t1 deleted and restored and annotated Services switched between Tunnels included
(they found two defects, fixed: a Service moved to another tunnel left its rule in the old one; a Tunnel deleted while
a Service moved from it took the Service's new CNAME: see tests/test_tunnels_moved.py).

Not covered: the router-hosts door (HostMappings, Traefik hosts); two sources asking for one hostname (each source
has hostnames of its own, so that a clean run of the final objects is the reference); the request budget (the
emulator's limit is lifted: issue 16 §4 measures it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.soak import run

SEED = 16
EVENTS = 150


@pytest.mark.first(80)
def test_a_soak_of_150_random_events_under_faults_ends_exactly_as_a_clean_run(tmp_path: Path) -> None:
    report = run(EVENTS, SEED, tmp_path, pace=0.1)
    found = {name: lines[:5] for name, lines in report.checks.items() if lines}
    assert not found, f"soak seed {report.seed} (bench/soak.py --events {EVENTS} --seed {report.seed}): {found}"
    assert report.events == EVENTS and len(report.kills) >= 4 and report.faults["5xx"] > 0
    assert report.seconds <= 240, f"soak seed {report.seed} took {report.seconds:.0f} s"  # a hang, not a figure
