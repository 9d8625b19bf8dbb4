"""An HTTPRoute resync that finds everything in place writes nothing to the cluster either (issue 16 §4, found by
bench/scale.py: each pass rewrote every route's state ConfigMap, only to move its ``last_reconcile`` stamp: one
Kubernetes write per route and pass). ``last_reconcile`` is the time of the last reconcile that changed the state."""

from __future__ import annotations

import pytest

from harness.httproutes import OPNS, World, home, wait_resyncs, world_fixture  # noqa: F401


def test_a_resync_that_finds_everything_in_place_rewrites_no_state(world: World,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    home(world, resync=0.5)
    world.route("web", "web.example.com")
    world.wait_ready("web")
    wait_resyncs(caplog)  # what publishing wrote is written

    def versions() -> tuple[str, str]:
        state = world.core.read_namespaced_config_map("cfzt-apps-web", OPNS).metadata
        route = world.custom.get_namespaced_custom_object("gateway.networking.k8s.io", "v1", "apps", "httproutes",
                                                          "web")["metadata"]
        return state.resource_version, route["resourceVersion"]

    before, stamp = versions(), world.state("web")["last_reconcile"]  # type: ignore[index]
    world.cf.reset_log()
    wait_resyncs(caplog, passes=2)
    assert versions() == before
    assert world.state("web")["last_reconcile"] == stamp  # type: ignore[index]
    assert world.ops(writes=True) == []
