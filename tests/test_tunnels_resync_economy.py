"""The Tunnel door's resync reads each zone and tunnel per pass, not per TunnelBinding (issue 16 §4, found by
bench/scale.py: each binding's resync timer listed its hostnames' records by name and the whole zone, one binding
after another). A binding published in full is re-checked as a drift repair: the coalescing writers answer it from
the pass's listings when it finds everything in place (`chutes.cloudflare_core.dns`), and a write it makes is
counted as a repair."""

from __future__ import annotations

from typing import Any

from harness.tunnels import World
from harness.waiting import wait_for

BINDINGS = 6


def test_resyncs_of_published_bindings_list_the_zone_not_each_hostname(kube: Any, cloudflare: Any) -> None:
    with_access = {"chutes.troubleshat.com/access-allowed-emails": "ops@example.com"}
    for world in World.opened(kube, cloudflare, start=True, resync_interval=4.0):
        world.api_secret()
        world.tunnel()
        world.ready_tunnel()
        for i in range(BINDINGS):
            world.service(f"web-{i}", 80)
            world.binding(f"b{i}", [{"name": f"web-{i}"}], annotations=with_access if i == 0 else None)
        for i in range(BINDINGS):
            world.ready_binding(f"b{i}")
        cloudflare.reset_log()  # a first pass: the timers that fired before their binding's status came back
        wait_for("a resync pass", lambda: cloudflare.calls(op="tunnels.token"), timeout=40)
        cloudflare.reset_log()
        # three passes of the Tunnel's own resync (one token read each): every binding's timer, on the same
        # interval, ran at least twice meanwhile
        wait_for("three resync passes", lambda: len(cloudflare.calls(op="tunnels.token")) >= 3, timeout=40)
        listings = cloudflare.calls(op="dns.list")
        assert [c.query for c in listings if "name.exact" in c.query] == []
        assert len(listings) < 2 * BINDINGS  # a listing per pass, not one (or two) per binding and pass
        assert world.writes() == []
        for i in range(BINDINGS):
            assert len(world.records(f"web-{i}.example.com")) == 1
