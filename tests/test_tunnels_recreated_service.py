"""An annotated Service behind Access deleted and made again at once with the same name (found by the soak, issue 16
§1): the old one's withdrawal and the new one's publication run at the same time for one source name. The hostname
must never be routable without its Access application meanwhile, and it ends published, behind Access."""

from __future__ import annotations

import pytest

from harness.protection import ProtectionWatch
from harness.tunnels import NS, World, world_fixture  # noqa: F401
from harness.waiting import wait_for, wait_quiet

CR = "tunnels.networking.cfargotunnel.com/"
ACCESS = "chutes.troubleshat.com/access-allowed-emails"
HOST = "admin.example.com"


def _service(world: World) -> None:
    world.core.create_namespaced_service(NS, {"metadata": {"name": "admin", "annotations": {
        CR + "cr": "web", CR + "fqdn": HOST, ACCESS: "alice@example.org"}},
        "spec": {"ports": [{"port": 80}], "selector": {"app": "admin"}}})


@pytest.mark.parametrize("latency", [0.0, 0.05])
def test_a_protected_service_recreated_at_once_is_never_routable_without_access(world: World, latency: float) -> None:
    world.api_secret()
    world.tunnel()
    world.ready_tunnel()
    watch = ProtectionWatch(world.cf, lambda: (HOST,))
    world.cf.on_response = watch
    _service(world)
    wait_for("published", lambda: len(world.records(HOST)) == 1 and world.apps_for(HOST))
    world.cf.faults.latency = latency
    for _ in range(4):
        world.core.delete_namespaced_service("admin", NS, _preload_content=False)
        _service(world)
    wait_quiet("Cloudflare", lambda: len(world.cf.requests), quiet=2.0, timeout=60)
    world.cf.on_response = None
    assert watch.moments == []
    assert len(world.records(HOST)) == 1 and len(world.apps_for(HOST)) == 1
