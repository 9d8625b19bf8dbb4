"""The router-hosts door when things go wrong or are set to hold back: the server down (fail closed, nothing
deleted, /readyz says so, converges when back), a lost answer, a restart in the middle, the write policies and
dry-run (the change set filtered as a whole), and the orphan sweep (entries of sources gone while nobody
watched; the cap and its Warning Event)."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from harness.hosts import FINALIZER, INGRESS_IP, NS, ROUTE_TAGS, HostsWorld, opened, running
from harness.processes import free_port
from harness.waiting import wait_for

COMMENT = "k8s-ingress:home/web"


def readyz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.fixture()
def metrics_port() -> int:
    return free_port()


@pytest.fixture()
def hosts(kube: Any, routerhosts: Any, metrics_port: int) -> Iterator[HostsWorld]:
    yield from opened(kube, routerhosts, resync_interval=1.0, metrics_port=metrics_port)


def test_the_server_down_deletes_nothing_says_not_ready_and_converges_when_back(hosts: HostsWorld,
                                                                                  metrics_port: int) -> None:
    hosts.route("web", "Host(`a.lan`)")
    hosts.mapping()
    hosts.wait_hostnames(COMMENT, ["a.lan"])
    hosts.synced()
    wait_for("ready", lambda: readyz(metrics_port)[0] == 200)
    hosts.rh.faults.fail(1_000_000)  # every call: UNAVAILABLE
    hosts.delete_route("web")
    hosts.patch_mapping({"spec": {"ip": "192.168.1.20"}})
    hosts.synced(phase="Error", reason="PreflightReadFailed")
    status, text = readyz(metrics_port)
    assert status == 503 and "router-hosts server" in text
    [entry] = hosts.entries("k8s:home/nas")
    assert hosts.hostnames(COMMENT) == ["a.lan"] and entry.ip == "192.168.1.10"
    hosts.rh.faults.clear()
    hosts.wait_hostnames(COMMENT, [])
    # Synced for the new generation, its entry updated in place. (Not the reason "Updated" itself: the next
    # resync, a second later, says "Already in sync", and a loaded machine may be that late to look.)
    hosts.synced()
    hosts.wait_event("nas", "HostEntryUpdated")
    assert [(e.id, e.ip) for e in hosts.entries("k8s:home/nas")] == [(entry.id, "192.168.1.20")]
    wait_for("ready again", lambda: readyz(metrics_port)[0] == 200)


def test_a_lost_answer_does_not_make_a_duplicate(hosts: HostsWorld) -> None:
    hosts.rh.faults.fail(1, rpc="AddHost", after=True)  # the entry is made, the answer lost
    hosts.mapping()
    hosts.synced()
    assert len(hosts.entries("k8s:home/nas")) == 1


def test_a_restart_in_the_middle_converges_without_duplicates(hosts: HostsWorld) -> None:
    for n in range(12):
        hosts.mapping(f"h{n}")
    hosts.route("web", *(f"Host(`r{n}.lan`)" for n in range(6)))
    wait_for("a few entries", lambda: len(hosts.entries()) >= 3)
    hosts.stop()
    hosts.start(resync_interval=1.0)
    for n in range(12):
        hosts.synced(f"h{n}")
    hosts.wait_hostnames(COMMENT, [f"r{n}.lan" for n in range(6)])
    names = [e.hostname for e in hosts.entries()]
    assert len(names) == len(set(names)) == 18


def test_a_route_deleted_while_the_operator_was_down_loses_its_entries_at_the_restart(kube: Any,
                                                                                       routerhosts: Any) -> None:
    # Found by the kill at every write (issue 16): IngressRoutes carry no finalizer, so a route deleted while no
    # replica watched was left to the orphan sweep's first pass, a minute after the restart.
    world = HostsWorld(kube, routerhosts)
    try:
        world.start()  # the default sweep interval (600 s)
        world.route("web", "Host(`a.lan`)")
        world.mapping()
        world.wait_hostnames(COMMENT, ["a.lan"])
        world.synced()
        world.stop()
        world.delete_route("web")
        world.start()
        wait_for("the deleted route's entry gone", lambda: not world.entries(COMMENT), timeout=20)
        assert world.hostnames("k8s:home/nas") == ["nas.lan"]
    finally:
        world.close()


def test_upsert_only_keeps_entries_when_their_sources_go(kube: Any, routerhosts: Any) -> None:
    with running(kube, routerhosts, policy="upsert-only", resync_interval=1.0) as world:
        world.mapping()
        world.route("web", "Host(`a.lan`) || Host(`b.lan`)")
        world.synced()
        world.wait_hostnames(COMMENT, ["a.lan", "b.lan"])
        world.set_matches("web", "Host(`a.lan`)")
        world.delete_mapping()
        wait_for("the HostMapping gone (its entry kept by the policy)", lambda: not world.mapping_exists())
        world.delete_route("web")
        wait_for("annotation settled", lambda: not world.route_exists("web"))
        assert "DeleteHost" not in world.writes()
        assert sorted(e.hostname for e in world.entries()) == ["a.lan", "b.lan", "nas.lan"]


def test_create_only_leaves_a_changed_entry_and_says_so(kube: Any, routerhosts: Any) -> None:
    with running(kube, routerhosts, policy="create-only") as world:
        world.mapping()
        world.synced()
        world.patch_mapping({"spec": {"ip": "192.168.1.20"}})
        body = world.synced(phase="Pending", reason="PolicyForbidsUpdate")
        assert "192.168.1.20" in body["status"]["message"]
        assert world.writes() == ["AddHost"]


def test_dry_run_writes_nothing_anywhere_in_the_server(kube: Any, routerhosts: Any) -> None:
    existing = routerhosts.put_entry("10.0.0.1", "gone.lan", "k8s:home/gone")  # an orphan: kept
    made = routerhosts.put_entry("192.168.1.10", "kept.lan", "k8s:home/kept")
    with running(kube, routerhosts, dry_run=True, resync_interval=1.0, sweep_interval=1.0) as world:
        world.mapping("kept")
        world.synced("kept", reason="AlreadyInSync")
        world.delete_mapping("kept")  # its entry would be deleted: it waits for a real run
        world.mapping()
        world.route("web", "Host(`a.lan`)")
        body = world.synced(phase="Pending", reason="DryRun")
        assert "+ create host entry nas.lan -> 192.168.1.10" in body["status"]["message"]
        assert FINALIZER in body["metadata"]["finalizers"]
        world.delete_mapping()  # nothing of it in the server: it goes
        wait_for("the HostMapping gone", lambda: not world.mapping_exists())
        wait_for("two sweeps", lambda: routerhosts.counters["ListHosts"] >= 2)
        assert world.writes() == [] and sorted(e.id for e in world.entries()) == sorted([existing, made])
        assert world.mapping_exists("kept") and world.get_mapping("kept")["metadata"]["deletionTimestamp"]


def test_the_sweep_removes_entries_of_sources_gone_unseen_within_the_cap(kube: Any, routerhosts: Any) -> None:
    environ = {"POD_ID": "chutes-operator-0", "OPERATOR_NAMESPACE": "ns1"}
    for name in ("gone1", "gone2"):
        routerhosts.put_entry(INGRESS_IP, f"{name}.lan", f"k8s-ingress:{NS}/{name}", tags=ROUTE_TAGS)
    unproven = routerhosts.put_entry(INGRESS_IP, "x.lan", f"k8s-ingress:{NS}/gone3")  # no tags: not proven ours
    elsewhere = routerhosts.put_entry(INGRESS_IP, "y.lan", "k8s:unwatched/y")
    hand_made = routerhosts.put_entry(INGRESS_IP, "z.lan", "made by hand")
    world = HostsWorld(kube, routerhosts)
    try:
        world.namespace(NS)
        world.route("live", "Host(`live.lan`)")
        world.run_operator(environ, chutes=False, httproutes=False, tunnels=False,
                           router_hosts_address=routerhosts.address,
                           router_hosts_tls_ca=routerhosts.ca, router_hosts_tls_cert=routerhosts.cert,
                           router_hosts_tls_key=routerhosts.key, default_ingress_ip=INGRESS_IP,
                           namespaces=[NS, "ns1"], sweep_interval=1.0, sweep_max_deletions=1)
        wait_for("orphans removed", lambda: not world.entries("k8s-ingress:home/gone1")
                 and not world.entries("k8s-ingress:home/gone2"))
        assert world.wait_event("chutes-operator-0", "SweepCapReached", "ns1")[0] == "Warning"
        assert {e.id for e in world.entries()} >= {unproven, elsewhere, hand_made}
        assert world.hostnames("k8s-ingress:home/live") == ["live.lan"]
    finally:
        world.close()
