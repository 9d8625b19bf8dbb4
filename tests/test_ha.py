"""High availability with kopf peering: two replicas, one active. When the active one stops, the standby
takes over and converges: what was published stays single, what was created meanwhile gets published."""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from typing import Any

import pytest

from chutes.sandbox.runner import OperatorThread
from chutes.settings import load_settings
from harness.gateways import World
from harness.processes import free_port
from harness.waiting import wait_for

PEERING = "chutes-ha"
RESUMING = "Resuming operations after the pause"


def readyz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def replica(cloudflare: Any, name: str, priority: int | str, metrics_port: int,
            environ: dict[str, str] | None = None) -> OperatorThread:
    settings = load_settings({}, cloudflare_base_url=cloudflare.base_url, httproutes=False, sessions=False,
                             peering=PEERING, priority=priority, metrics_port=metrics_port)
    return OperatorThread(settings, environ or {}, name=name)


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
        world.close()


# Pod names of one Deployment before and after a rolling update; the new name's hash is the higher, so a
# priority from the Pod name alone would let the new Pod take over while the old one still works.
OLD_POD, NEW_POD = "chutes-operator-5d8c7f-old", "chutes-operator-7b9f4d-new"


def test_a_rolling_update_keeps_the_running_replica_active_until_it_has_gone(
    kube: Any, cloudflare: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """CHUTES_PRIORITY=auto, as the chart sets it: the Pod started during the rollout waits on standby while
    the running one works, and takes over once it has stopped."""
    caplog.set_level(logging.INFO, logger="kopf")
    world = World(kube, cloudflare)
    kube.seed("kopf.dev/v1/clusterkopfpeerings", {"metadata": {"name": PEERING}})
    old = replica(cloudflare, "old", "auto", free_port(), {"POD_ID": OLD_POD}).start()
    new: OperatorThread | None = None
    try:
        wait_for("the running replica active", lambda: said(caplog, "old", RESUMING))
        world.ready_config()
        new = replica(cloudflare, "new", "auto", free_port(), {"POD_ID": NEW_POD}).start()
        wait_for("both replicas announced", lambda: len(peers(world)) == 2)
        world.service()
        world.gateway("blog")  # during the rollout: the running replica publishes it
        assert world.ready_gateway("blog")["status"]["url"] == "https://blog.example.com"
        assert said(caplog, "new", RESUMING) == 0, "the new Pod must stay on standby while the old one runs"
        assert said(caplog, "old", "Pausing") == 0, "the running replica must not pause for the new Pod"
        assert "Possibly conflicting operators" not in caplog.text

        old.stop()  # the rollout ends: the old Pod goes
        wait_for("the old replica left the peering", lambda: len(peers(world)) == 1)
        wait_for("the new replica resumed", lambda: said(caplog, "new", RESUMING) == 1)
        world.gateway("wiki")
        assert world.ready_gateway("wiki")["status"]["url"] == "https://wiki.example.com"
        assert sorted(r["name"] for r in world.records()) == ["blog.example.com", "wiki.example.com"]
    finally:
        if old.alive:
            old.stop()
        if new is not None:
            new.stop()
        world.close()
