"""The Tunnel door's orphan sweep within the one deletion cap every door obeys, and its hostnames in the
``chutes_managed_hostnames`` gauge, read from the operator's /metrics: the real operator against both emulators."""

from __future__ import annotations

import re
import time
import urllib.request
from typing import Any

from chutes.claims import LABEL_SOURCE_KIND as SOURCE_KIND
from harness.processes import free_port
from harness.tunnels import NS, OPERATOR_NS, World, world_fixture  # noqa: F401  (world_fixture: a fixture)
from harness.waiting import wait_for

SWEPT = [f"old-{i}" for i in range(5)]
ACCESS = "chutes.troubleshat.com/access-allowed-emails"
CR = "tunnels.networking.cfargotunnel.com/"


def annotated_service(world: World, name: str, port: int = 80, **annotations: str) -> None:
    world.namespace(NS)
    world.core.create_namespaced_service(NS, {"metadata": {
        "name": name, "annotations": {f"tunnels.networking.cfargotunnel.com/{k}": v for k, v in annotations.items()}},
        "spec": {"ports": [{"port": port}], "selector": {"app": name}}})


def records_left(world: World) -> list[str]:
    return [name for name in SWEPT if world.records(f"{name}.example.com")]


def test_the_sweep_withdraws_orphans_within_the_deletion_cap_and_says_what_waits(kube: Any, cloudflare: Any) -> None:
    world = World(kube, cloudflare)
    try:
        world.start()
        world.api_secret()
        world.tunnel()
        tunnel_id = str(world.ready_tunnel()["status"]["tunnelId"])
        for name in SWEPT:
            annotated_service(world, name, cr="web")
        wait_for("all routed", lambda: len(records_left(world)) == len(SWEPT))
        world.stop()
        for name in SWEPT:  # gone while no operator watched: only the sweep can find them
            world.core.delete_namespaced_service(name, NS, _preload_content=False)
        world.start(resync_interval=1.0, sweep_max_deletions=2, sweep_interval=600.0)
        wait_for("the cap reached", lambda: [e for e in world.events("web", NS)
                                            if e[:2] == ("Warning", "SweepCapReached")])
        time.sleep(3.0)  # three more resyncs: the window is 600 s, so nothing more may go
        assert len(records_left(world)) == len(SWEPT) - 2
        rules = [r.get("hostname") for r in world.ingress(tunnel_id)]
        assert sorted(h for h in rules if h) == sorted(f"{n}.example.com" for n in records_left(world))
        [warning] = {e[2] for e in world.events("web", NS) if e[:2] == ("Warning", "SweepCapReached")}
        assert warning.startswith("3 orphaned hostname(s) routed into this tunnel wait for the next window of the "
                                  "deletion cap (sweep_max_deletions=2 per sweep_interval=600 s)"), warning
        assert len([e for e in world.events("web", NS) if e[1] == "OrphansRemoved"]) >= 1
    finally:
        world.close()


def managed_hostnames(port: int) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    found = re.search(r'^chutes_managed_hostnames\{front_door="tunnels"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else None


def test_the_doors_hostnames_are_in_the_managed_hostnames_gauge(kube: Any, cloudflare: Any) -> None:
    port = free_port()
    world = World(kube, cloudflare)
    try:
        world.start(metrics_port=port)
        world.api_secret()
        world.tunnel()
        world.ready_tunnel()
        for name in ("one", "two"):
            world.service(name)
        world.binding("pair", [{"name": "one"}, {"name": "two"}])
        annotated_service(world, "blog", cr="web")
        wait_for("three hostnames", lambda: managed_hostnames(port) == 3.0)
        world.patch_binding("pair", {"subjects": [{"name": "one"}]})
        wait_for("a subject removed", lambda: managed_hostnames(port) == 2.0)
        world.core.delete_namespaced_service("blog", NS, _preload_content=False)
        wait_for("the Service withdrawn", lambda: managed_hostnames(port) == 1.0)
        world.custom.delete_namespaced_custom_object("networking.cfargotunnel.com", "v1alpha1", NS, "tunnelbindings",
                                                     "pair")
        wait_for("the binding withdrawn", lambda: managed_hostnames(port) == 0.0)
    finally:
        world.close()


def _service_claims(world: World) -> list[Any]:
    return list(world.core.list_namespaced_config_map(OPERATOR_NS, label_selector=f"{SOURCE_KIND}=Service").items)


def test_a_service_deleted_before_its_rule_was_written_has_its_access_application_swept(world: World) -> None:
    """Found by the soak: the operator died right after a Service's Access application was created (the claim
    records it), before the intent of its rule; the Service was deleted while no operator watched. The sweep judged
    only claims whose rule is in the Tunnel's tunnel: nothing ever removed the application (an orphan)."""
    world.api_secret()
    world.tunnel()
    world.ready_tunnel()
    world.cf.faults.fail(op="tunnels.config.put", status=400, count=100_000)  # every rule refused: Access alone
    world.namespace(NS)
    world.core.create_namespaced_service(NS, {"metadata": {"name": "early", "annotations": {
        CR + "cr": "web", CR + "fqdn": "early.example.com", ACCESS: "alice@example.org"}},
        "spec": {"ports": [{"port": 80}], "selector": {"app": "early"}}})
    wait_for("its Access application", lambda: len(world.apps_for("early.example.com")) == 1)
    world.stop()
    [claim] = _service_claims(world)
    # the ledger as the crash left it: the application recorded, no rule (the refusals' retries may have left an
    # intent of the rule, which the Tunnel's sweep would find)
    world.core.patch_namespaced_config_map(claim.metadata.name, OPERATOR_NS, {"data": {"tunnel_rule": None}})
    world.core.delete_namespaced_service("early", NS, _preload_content=False)
    world.cf.faults.clear()
    world.start(resync_interval=1.0)
    wait_for("the application swept", lambda: world.apps_for("early.example.com") == [])
    wait_for("the claim released", lambda: _service_claims(world) == [])
    # the sweep's Event is posted once its pass is done, after the claim's release: under load, a moment later
    wait_for("the sweep's Event", lambda: [e for e in world.events("web", NS) if e[1] == "OrphansRemoved"])
