"""High availability with kopf peering: two replicas, one active. When the active one stops, the standby
takes over and converges: what was published stays single, what was created meanwhile gets published."""

from __future__ import annotations

import logging
import socket
import urllib.error
import urllib.request
from typing import Any

import pytest

from chutes.sandbox.runner import OperatorThread
from chutes.settings import load_settings
from test_gateways_operator import World, wait_for

PEERING = "chutes-ha"
RESUMING = "Resuming operations after the pause"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def readyz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def replica(cloudflare: Any, name: str, priority: int, metrics_port: int) -> OperatorThread:
    settings = load_settings({}, cloudflare_base_url=cloudflare.base_url, httproutes=False, sessions=False,
                             peering=PEERING, priority=priority, metrics_port=metrics_port)
    return OperatorThread(settings, {}, name=name)


def said(caplog: pytest.LogCaptureFixture, replica_name: str, text: str) -> int:
    """How often a replica (its thread) logged ``text``. kopf starts every replica paused until it has
    read the peering object, so "resuming" is how a replica becomes active."""
    return sum(1 for r in caplog.records if r.threadName == replica_name and text in r.getMessage())


def peers(world: World) -> dict[str, Any]:
    peering = world.custom.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", PEERING)
    return dict(peering.get("status") or {})


def test_the_standby_takes_over_when_the_active_replica_stops(kube: Any, cloudflare: Any,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="kopf")
    world = World(kube, cloudflare)
    kube.seed("kopf.dev/v1/clusterkopfpeerings", {"metadata": {"name": PEERING}})
    ports = {"active": free_port(), "standby": free_port()}
    active = replica(cloudflare, "active", 20, ports["active"]).start()
    standby: OperatorThread | None = None
    try:
        wait_for("the first replica announced", lambda: [p["priority"] for p in peers(world).values()] == [20])
        wait_for("the first replica active", lambda: said(caplog, "active", RESUMING))
        standby = replica(cloudflare, "standby", 10, ports["standby"]).start()
        wait_for("both replicas announced", lambda: sorted(p["priority"] for p in peers(world).values()) == [10, 20])
        # A paused replica is still ready: readiness must not stall a rollout on a standby by design.
        wait_for("both ready", lambda: readyz(ports["active"]) == readyz(ports["standby"]) == 200)

        world.ready_config()
        world.service()
        world.gateway("blog")
        world.ready_gateway("blog")
        assert said(caplog, "standby", RESUMING) == 0, "the standby must stay paused while the active one lives"
        assert "Possibly conflicting operators" not in caplog.text

        active.stop()
        wait_for("the active replica left the peering", lambda: [p["priority"] for p in peers(world).values()] == [10])
        wait_for("the standby resumed", lambda: said(caplog, "standby", RESUMING) == 1)

        world.gateway("wiki")  # created after the stop: only the former standby can publish it
        wiki = world.ready_gateway("wiki")
        assert wiki["status"]["url"] == "https://wiki.example.com"
        assert sorted(t["name"] for t in world.live_tunnels()) == ["chute-team-a-blog", "chute-team-a-wiki"]
        assert sorted(r["name"] for r in world.records()) == ["blog.example.com", "wiki.example.com"]
        assert len(world.state()["access_apps"]) == 2
        assert world.get_gateway("blog")["status"]["ready"] is True
    finally:
        if active.alive:
            active.stop()
        if standby is not None:
            standby.stop()
        world.client.close()
