"""The router-hosts door with two replicas and kopf peering: the standby hears no watch event and writes
nothing; when the active replica stops it takes over, and what was registered stays single."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from chutes.sandbox.runner import OperatorThread
from chutes.settings import load_settings
from harness.hosts import INGRESS_IP, HostsWorld
from harness.waiting import wait_for

PEERING = "hosts-ha"
RESUMING = "Resuming operations after the pause"


def replica(routerhosts: Any, name: str, priority: int) -> OperatorThread:
    settings = load_settings({}, chutes=False, httproutes=False, tunnels=False, sessions=False, peering=PEERING,
                             priority=priority,
                             router_hosts_address=routerhosts.address, router_hosts_tls_ca=routerhosts.ca,
                             router_hosts_tls_cert=routerhosts.cert, router_hosts_tls_key=routerhosts.key,
                             default_ingress_ip=INGRESS_IP)
    return OperatorThread(settings, {}, name=name)


def said(caplog: pytest.LogCaptureFixture, name: str, text: str) -> int:
    return sum(1 for r in caplog.records if r.threadName == name and text in r.getMessage())


def test_the_standby_stays_idle_and_takes_over_without_duplicates(kube: Any, routerhosts: Any,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="kopf")
    world = HostsWorld(kube, routerhosts)
    kube.seed("kopf.dev/v1/clusterkopfpeerings", {"metadata": {"name": PEERING}})
    active = replica(routerhosts, "hosts-active", 20).start()
    standby: OperatorThread | None = None
    try:
        wait_for("the first replica active", lambda: said(caplog, "hosts-active", RESUMING))
        standby = replica(routerhosts, "hosts-standby", 10).start()
        world.mapping()
        world.route("web", "Host(`a.lan`, `b.lan`)")
        world.synced()
        world.wait_hostnames("k8s-ingress:home/web", ["a.lan", "b.lan"])
        assert said(caplog, "hosts-standby", RESUMING) == 0
        writes = world.writes()

        active.stop()
        wait_for("the standby resumed", lambda: said(caplog, "hosts-standby", RESUMING) == 1)
        world.mapping("printer")
        world.synced("printer")
        assert world.writes() == [*writes, "AddHost"]  # the takeover re-checked everything, rewrote nothing
        names = [e.hostname for e in world.entries()]
        assert sorted(names) == ["a.lan", "b.lan", "nas.lan", "printer.lan"]
    finally:
        if standby is not None:
            standby.stop()
        if active.alive:
            active.stop()
        world.close()
