"""An annotated Service or a TunnelBinding switched to another Tunnel (found by the soak, issue 16 §1).

- Its rule leaves the tunnel it was in: the claim records one rule, so the old one is removed (as the claim proves
  it) before the new one is written; the move used to overwrite the claim's entry and leave the old rule behind,
  unprovable (an orphan, and a conflict for the move back).
"""

from __future__ import annotations

from harness.protection import ProtectionWatch
from harness.tunnels import NS, World, world_fixture  # noqa: F401  (world_fixture: a fixture)
from harness.waiting import wait_for, wait_quiet

CR = "tunnels.networking.cfargotunnel.com/"
ACCESS = "chutes.troubleshat.com/access-allowed-emails"
HOST = "moved.example.com"


def _tunnels(world: World) -> dict[str, str]:
    """Tunnels t1 and t2 (each a new tunnel of its own), Ready: their tunnel ids by name."""
    world.api_secret()
    for name in ("t1", "t2"):
        world.tunnel(name)
    return {name: str(world.ready_tunnel(name)["status"]["tunnelId"]) for name in ("t1", "t2")}


def _service(world: World, tunnel: str) -> None:
    world.core.create_namespaced_service(NS, {"metadata": {"name": "moved", "annotations": {
        CR + "cr": tunnel, CR + "fqdn": HOST, ACCESS: "alice@example.org"}},
        "spec": {"ports": [{"port": 80}], "selector": {"app": "moved"}}})


def _switch(world: World, tunnel: str) -> None:
    world.core.patch_namespaced_service("moved", NS, {"metadata": {"annotations": {CR + "cr": tunnel}}})


def _routed(world: World, ids: dict[str, str]) -> dict[str, int]:
    """How many rules for HOST each tunnel has."""
    return {name: len([r for r in world.ingress(tunnel_id) if r.get("hostname") == HOST])
            for name, tunnel_id in ids.items()}


def _published_in(world: World, ids: dict[str, str], name: str) -> bool:
    return (_routed(world, ids) == {n: int(n == name) for n in ids}
            and [r["content"] for r in world.records(HOST)] == [f"{ids[name]}.cfargotunnel.com"]
            and len(world.apps_for(HOST)) == 1)


def test_a_service_switched_between_tunnels_leaves_no_rule_in_the_one_it_left(world: World) -> None:
    ids = _tunnels(world)
    watch = ProtectionWatch(world.cf, lambda: (HOST,))
    world.cf.on_response = watch
    _service(world, "t1")
    wait_for("published in t1", lambda: _published_in(world, ids, "t1"))
    for there in ("t2", "t1", "t2"):  # and back: its own rule left behind would now refuse it as not provably ours
        _switch(world, there)
        wait_for(f"published in {there} alone", lambda there=there: _published_in(world, ids, there))  # type: ignore[misc]
    wait_quiet("Cloudflare", lambda: len(world.cf.requests), quiet=1.0)
    world.cf.on_response = None
    assert _published_in(world, ids, "t2") and watch.moments == []
    reasons = [reason for _, reason, _ in world.events("moved", NS)]
    assert reasons.count("TunnelRuleRemoved") == 3 and "HostnameConflict" not in reasons


def test_a_binding_switched_between_tunnels_leaves_no_rule_in_the_one_it_left(world: World) -> None:
    ids = _tunnels(world)
    world.service("web")
    world.binding("moved", [{"name": "web", "spec": {"fqdn": HOST}}], tunnel="t1")
    wait_for("routed in t1", lambda: _routed(world, ids) == {"t1": 1, "t2": 0})
    world.patch_binding("moved", {"tunnelRef": {"kind": "Tunnel", "name": "t2"}})
    wait_for("routed in t2 alone", lambda: _routed(world, ids) == {"t1": 0, "t2": 1}
             and [r["content"] for r in world.records(HOST)] == [f"{ids['t2']}.cfargotunnel.com"])


def test_a_service_switched_amid_deletes_and_recreates_ends_with_its_one_rule_in_its_tunnel(world: World) -> None:
    ids = _tunnels(world)
    watch = ProtectionWatch(world.cf, lambda: (HOST,))
    world.cf.on_response = watch
    _service(world, "t1")
    wait_for("published in t1", lambda: _published_in(world, ids, "t1"))
    world.cf.faults.latency = 0.02
    there = "t1"
    for _ in range(3):
        there = "t2" if there == "t1" else "t1"
        _switch(world, there)
        world.core.delete_namespaced_service("moved", NS, _preload_content=False)
        _service(world, there)
        there = "t2" if there == "t1" else "t1"
        _switch(world, there)
    wait_for(f"published in {there} alone", lambda: _published_in(world, ids, there))
    wait_quiet("Cloudflare", lambda: len(world.cf.requests), quiet=2.0, timeout=60)
    world.cf.on_response = None
    assert _published_in(world, ids, there) and watch.moments == []
