"""An annotated Service or a TunnelBinding switched to another Tunnel (found by the soak, issue 16 §1).

- Its rule leaves the tunnel it was in: the claim records one rule, so the old one is removed (as the claim proves
  it) before the new one is written; the move used to overwrite the claim's entry and leave the old rule behind,
  unprovable (an orphan, and a conflict for the move back).
- A Tunnel deleted while a Service moves from its tunnel to another one: the deletion tears down the claims routed
  into its tunnel as it read them, so it takes the turn of each of their sources first; it used to tear down the
  claim the Service was moving meanwhile (its new CNAME and Access application, the entry proving its new rule).
- A Service whose claim shows its publication incomplete in its tunnel (what that race left: the rule recorded,
  the CNAME not) is published again by the Tunnel's resync: an annotated Service has no timer of its own.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import cloudflare as cloudflare_sdk

from chutes.claims import claim_name
from harness.protection import ProtectionWatch
from harness.tunnels import GROUP, NS, OPERATOR_NS, World, world_fixture  # noqa: F401  (world_fixture: a fixture)
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


def _published_in_t1(world: World) -> tuple[dict[str, str], ProtectionWatch]:
    """Tunnels t1 and t2, the Service behind Access published in t1, watched from before it was (no moment
    routable without its Access application)."""
    ids = _tunnels(world)
    watch = ProtectionWatch(world.cf, lambda: (HOST,))
    world.cf.on_response = watch
    _service(world, "t1")
    wait_for("published in t1", lambda: _published_in(world, ids, "t1"))
    return ids, watch


def test_a_service_switched_between_tunnels_leaves_no_rule_in_the_one_it_left(world: World) -> None:
    ids, watch = _published_in_t1(world)
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
    ids, watch = _published_in_t1(world)
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


def test_a_tunnel_deleted_while_a_service_moves_from_it_leaves_the_service_published_in_the_other(
        world: World) -> None:
    ids, watch = _published_in_t1(world)
    wait_quiet("Cloudflare", lambda: len(world.cf.requests), quiet=1.0)
    # The deletion's first Cloudflare call (proving its credentials reach the account's tunnels) waits until the
    # Service's move has made its CNAME in t2 (within a few seconds: the deletion no longer lets it, see below).
    in_flight, moved = threading.Event(), threading.Event()
    moved_cname = [f"{ids['t2']}.cfargotunnel.com"]

    def seen(event: Any) -> None:
        watch(event)
        if [r["content"] for r in world.records(HOST)] == moved_cname:
            moved.set()

    async def hold() -> None:
        in_flight.set()
        await asyncio.to_thread(moved.wait, 4.0)

    world.cf.on_response = seen
    world.cf.faults.before("tunnels.list", hold)
    world.custom.delete_namespaced_custom_object(GROUP, "v1alpha2", NS, "tunnels", "t1")
    wait_for("the deletion under way (its claims read)", in_flight.is_set)
    _switch(world, "t2")
    wait_for("Tunnel t1 gone", lambda: not [t for t in world.custom.list_namespaced_custom_object(
        GROUP, "v1alpha2", NS, "tunnels")["items"] if t["metadata"]["name"] == "t1"])
    wait_quiet("Cloudflare", lambda: len(world.cf.requests), quiet=2.0, timeout=60)
    world.cf.on_response = None
    assert _routed(world, {"t2": ids["t2"]}) == {"t2": 1}
    assert [r["content"] for r in world.records(HOST)] == moved_cname
    assert len(world.apps_for(HOST)) == 1 and watch.moments == []


def test_a_service_whose_cname_a_teardown_took_is_published_again_by_its_tunnels_resync(
        kube: Any, cloudflare: Any) -> None:
    """The state that race left (another replica's teardown, which no turn of this process holds back): the claim
    records the rule in t2, its CNAME and Access application are gone and forgotten. Nothing changes on the Service:
    Tunnel t2's resync finds its publication incomplete and publishes it again, Access before the CNAME."""
    world = World(kube, cloudflare)
    try:
        world.start(resync_interval=1.0)
        ids = _tunnels(world)
        _service(world, "t2")
        wait_for("published in t2", lambda: _published_in(world, ids, "t2"))
        wait_quiet("Cloudflare", lambda: len(world.cf.requests), quiet=0.5)  # between two resyncs (1 s apart)
        watch = ProtectionWatch(world.cf, lambda: (HOST,))
        world.cf.on_response = watch
        with cloudflare_sdk.Cloudflare(api_token=world.cf.token, base_url=world.cf.base_url, max_retries=0) as sdk:
            [record] = world.records(HOST)
            sdk.dns.records.delete(record["id"], zone_id=world.zone)
            [app] = world.apps_for(HOST)
            sdk.zero_trust.access.applications.delete(app["id"], account_id=world.account)
        world.core.patch_namespaced_config_map(claim_name("default", "hostname", HOST), OPERATOR_NS, {"data": {
            "dns": None, "access_app": None, "access_policy": None}})
        wait_for("published again in t2", lambda: _published_in(world, ids, "t2"), timeout=20)
        world.cf.on_response = None
        assert watch.moments == []
    finally:
        world.close()
