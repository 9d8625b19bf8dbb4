"""The session door's deletion cap: removals the Pod watch did not see coming (Pods deleted while no operator
ran) are an orphan sweep, at most `sweep_max_deletions` per pass with a Warning Event; removals of Pods the
watch saw go are never held back."""

from __future__ import annotations

from typing import Any

import sessions_harness as h
from sessions_harness import api_fixture, fast_timing_fixture  # noqa: F401  (pytest fixtures)

OPERATOR_POD = "chutes-sidecar-0"
HASHES = ("aaaa00000001", "aaaa00000002", "aaaa00000003", "aaaa00000004", "aaaa00000005")


def published_hashes(cloudflare: Any, api: Any, tunnel: str) -> frozenset[str]:
    return h.published(cloudflare, api, tunnel).sessions()


def deleted_per_batch(cloudflare: Any) -> list[int]:
    return [len((r.body or {}).get("deletes") or []) for r in cloudflare.requests
            if r.op == "dns.batch" and r.status == 200]


def cap_events(api: Any) -> list[Any]:
    return [e for e in h.events_for(api, OPERATOR_POD) if e.reason == "SweepCapReached"]


def test_sessions_gone_while_down_are_removed_at_most_cap_per_pass_with_a_warning(
    cloudflare: Any, kube: Any, api: Any
) -> None:
    tunnel = h.create_tunnel(cloudflare)
    environ = h.session_env(cloudflare, tunnel, h.free_port(), POD_ID=OPERATOR_POD)
    with h.operator(cloudflare, environ):
        for value in HASHES:
            h.create_pod(api, h.pod(f"session-{value}", value))
        h.wait_for(lambda: published_hashes(cloudflare, api, tunnel) == frozenset(HASHES), what="all published")
    for value in HASHES:  # while no operator watches
        h.delete_pod(api, f"session-{value}")
    cloudflare.reset_log()

    with h.operator(cloudflare, environ, sweep_max_deletions=2, resync_interval=1.0):
        h.wait_for(lambda: not h.published(cloudflare, api, tunnel).records, timeout=30, what="all removed")
        events = h.wait_for(lambda: cap_events(api), what="a SweepCapReached Event")
    batches = [n for n in deleted_per_batch(cloudflare) if n]
    assert batches == [2, 2, 1], batches  # three passes: the cap held the rest back twice
    assert h.published(cloudflare, api, tunnel).rules == frozenset()  # a held record kept its rule until it went
    assert {e.type for e in events} == {"Warning"}
    assert "sweep_max_deletions=2" in events[0].message and "wait for the next pass" in events[0].message


def test_sessions_the_watch_saw_go_are_removed_at_once_whatever_the_cap(
    cloudflare: Any, kube: Any, api: Any
) -> None:
    tunnel = h.create_tunnel(cloudflare)
    environ = h.session_env(cloudflare, tunnel, h.free_port(), POD_ID=OPERATOR_POD)
    with h.operator(cloudflare, environ, sweep_max_deletions=1):
        for value in HASHES:
            h.create_pod(api, h.pod(f"session-{value}", value))
        h.wait_for(lambda: published_hashes(cloudflare, api, tunnel) == frozenset(HASHES), what="all published")
        cloudflare.reset_log()
        for value in HASHES:
            h.delete_pod(api, f"session-{value}")
        h.wait_for(lambda: not h.published(cloudflare, api, tunnel).records, timeout=30, what="all removed")
    assert sum(deleted_per_batch(cloudflare)) == len(HASHES)
    assert cap_events(api) == []
