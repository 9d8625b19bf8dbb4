"""The session door's deletion cap: removals the Pod watch did not see coming (Pods deleted while no operator
ran) are an orphan sweep, at most `sweep_max_deletions` per `sweep_interval` (however many passes run) with a
Warning Event; removals of Pods the watch saw go are never held back."""

from __future__ import annotations

import datetime
import re
from typing import Any

from chutes.sweep.cap import RemovalBudget
from harness import sessions as h
from harness.sessions import api_fixture, fast_timing_fixture  # noqa: F401  (pytest fixtures)
from harness.waiting import wait_for

OPERATOR_POD = "chutes-sidecar-0"
HASHES = ("aaaa00000001", "aaaa00000002", "aaaa00000003", "aaaa00000004", "aaaa00000005")


def published_hashes(cloudflare: Any, api: Any, tunnel: str) -> frozenset[str]:
    return h.published(cloudflare, api, tunnel).sessions()


def deleted_per_batch(cloudflare: Any) -> list[int]:
    return [len((r.body or {}).get("deletes") or []) for r in cloudflare.requests
            if r.op == "dns.batch" and r.status == 200]


def cap_events(api: Any) -> list[Any]:
    return [e for e in h.events_for(api, OPERATOR_POD) if e.reason == "SweepCapReached"]


def passes(cloudflare: Any) -> int:
    """Passes run so far (each lists the zone's records once)."""
    return sum(r.op == "dns.list" for r in cloudflare.requests)


def test_sessions_gone_while_down_are_removed_at_most_cap_per_window_with_a_warning(
    cloudflare: Any, kube: Any, api: Any
) -> None:
    tunnel = h.create_tunnel(cloudflare)
    environ = h.session_env(cloudflare, tunnel, POD_ID=OPERATOR_POD)
    with h.operator(cloudflare, environ):
        for value in HASHES:
            h.create_pod(api, h.pod(f"session-{value}", value))
        wait_for("all published", lambda: published_hashes(cloudflare, api, tunnel) == frozenset(HASHES))
    for value in HASHES:  # while no operator watches
        h.delete_pod(api, f"session-{value}")
    cloudflare.reset_log()

    with h.operator(cloudflare, environ, sweep_max_deletions=2, sweep_interval=1.0, resync_interval=300.0):
        wait_for("all removed", lambda: not h.published(cloudflare, api, tunnel).records, timeout=30)
        events = wait_for("a SweepCapReached Event", lambda: cap_events(api))
    batches = [n for n in deleted_per_batch(cloudflare) if n]
    assert batches == [2, 2, 1], batches  # three windows: the cap held the rest back twice
    assert h.published(cloudflare, api, tunnel).rules == frozenset()  # a held record kept its rule until it went
    assert {e.type for e in events} == {"Warning"}
    assert "sweep_max_deletions=2 per sweep_interval=1 s" in events[0].message
    assert "wait for the next window" in events[0].message


def test_the_cap_holds_for_the_whole_sweep_interval_whatever_the_passes_in_between(
    cloudflare: Any, kube: Any, api: Any
) -> None:
    """One removal per 600 s: the verification pass after it and the resyncs (every second here) remove nothing
    more, and the Warning says when the next one goes."""
    tunnel = h.create_tunnel(cloudflare)
    environ = h.session_env(cloudflare, tunnel, POD_ID=OPERATOR_POD)
    with h.operator(cloudflare, environ):
        for value in HASHES[:3]:
            h.create_pod(api, h.pod(f"session-{value}", value))
        wait_for("all published", lambda: len(published_hashes(cloudflare, api, tunnel)) == 3)
    for value in HASHES[:3]:  # while no operator watches
        h.delete_pod(api, f"session-{value}")
    cloudflare.reset_log()

    before = datetime.datetime.now(datetime.UTC)
    with h.operator(cloudflare, environ, sweep_max_deletions=1, sweep_interval=600.0, resync_interval=0.5):
        wait_for("the first removal", lambda: sum(deleted_per_batch(cloudflare)) == 1, timeout=20)
        seen = passes(cloudflare)
        wait_for("four more passes", lambda: passes(cloudflare) >= seen + 4, timeout=30)
        events = wait_for("a SweepCapReached Event", lambda: cap_events(api))
        assert sum(deleted_per_batch(cloudflare)) == 1
        assert len(h.published(cloudflare, api, tunnel).records) == 2
    assert len(events) == 1, [e.message for e in events]  # said once, not once per pass
    message = events[0].message
    assert "2 session hostname(s)" in message and "sweep_max_deletions=1 per sweep_interval=600 s" in message
    found = re.search(r"from (\S+Z):", message)
    assert found, message
    when = datetime.datetime.strptime(found[1], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    assert before + datetime.timedelta(seconds=590) <= when <= before + datetime.timedelta(seconds=630)


def test_the_budget_allows_the_cap_per_window_and_says_when_it_has_room_again() -> None:
    now = [1000.0]
    budget = RemovalBudget(2, 600.0, clock=lambda: now[0])
    assert budget.available() == 2
    budget.spend(1)
    now[0] += 100
    budget.spend(1)
    assert budget.available() == 0 and budget.opens_at() == 1600.0
    now[0] = 1599.0
    assert budget.available() == 0
    now[0] = 1600.5
    assert budget.available() == 1 and budget.opens_at() == 1600.5
    now[0] = 1700.5
    assert budget.available() == 2
    assert RemovalBudget(0, 600.0).opens_at() is None  # 0: report only, never


def test_sessions_the_watch_saw_go_are_removed_at_once_whatever_the_cap(
    cloudflare: Any, kube: Any, api: Any
) -> None:
    tunnel = h.create_tunnel(cloudflare)
    environ = h.session_env(cloudflare, tunnel, POD_ID=OPERATOR_POD)
    with h.operator(cloudflare, environ, sweep_max_deletions=1):
        for value in HASHES:
            h.create_pod(api, h.pod(f"session-{value}", value))
        wait_for("all published", lambda: published_hashes(cloudflare, api, tunnel) == frozenset(HASHES))
        cloudflare.reset_log()
        for value in HASHES:
            h.delete_pod(api, f"session-{value}")
        wait_for("all removed", lambda: not h.published(cloudflare, api, tunnel).records, timeout=30)
    assert sum(deleted_per_batch(cloudflare)) == len(HASHES)
    assert cap_events(api) == []
