"""Traefik IngressRoutes and IngressRouteTCPs in the router-hosts door: the real operator against the
Kubernetes emulator and the router-hosts emulator over mutual TLS. Upstream's IngressRoute checklist
(reference §9), and the gaps it leaves open: the multi-argument Host(), an IngressRoute and an
IngressRouteTCP of one name, NOT_FOUND on delete, a route left without hosts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from chutes.observability.metrics import REFUSALS
from harness.hosts import (
    HOST_IDS,
    INGRESS_IP,
    ROUTE_FINALIZER,
    ROUTE_TAGS,
    HostsWorld,
    hosts_fixture,  # noqa: F401  (a fixture)
    opened,
)
from harness.waiting import wait_for

COMMENT = "k8s-ingress:home/web"


def test_every_host_of_a_route_is_registered_and_recorded_byte_compatibly(hosts: HostsWorld) -> None:
    hosts.route("web", "Host(`a.lan`, `b.lan`) && PathPrefix(`/`)", "Host(`c.lan`) || HostSNI(`*`)")
    entries = hosts.wait_hostnames(COMMENT, ["a.lan", "b.lan", "c.lan"])
    assert {(e.ip, e.tags) for e in entries} == {(INGRESS_IP, ROUTE_TAGS)}
    ids = {e.hostname: e.id for e in entries}
    wait_for("host-ids", lambda: hosts.host_ids() == json.dumps(ids, sort_keys=True, separators=(",", ":")))
    route = hosts.get_route()
    assert not route["metadata"].get("finalizers")  # level-based: no finalizer on routes
    assert set(route["metadata"]["annotations"]) == {HOST_IDS}  # and nothing of kopf's
    assert [e[1] for e in hosts.events("web") if e[0] == "Normal"].count("HostEntryCreated") == 3


def test_an_ingressroute_and_an_ingressroutetcp_of_one_name_are_both_served(hosts: HostsWorld) -> None:
    hosts.route("web", "Host(`a.lan`)", "Host(`shared.lan`)")
    hosts.route("web", "HostSNI(`db.lan`)", "HostSNI(`shared.lan`)", kind="IngressRouteTCP")
    hosts.wait_hostnames(COMMENT, ["a.lan", "db.lan", "shared.lan"])
    hosts.delete_route("web", kind="IngressRoute")
    hosts.wait_hostnames(COMMENT, ["db.lan", "shared.lan"])  # what the TCP route still wants stays
    wait_for("the TCP route's ids", lambda: set(json.loads(hosts.host_ids(kind="IngressRouteTCP") or "{}"))
             == {"db.lan", "shared.lan"})
    assert hosts.writes().count("AddHost") == 3


def test_a_dropped_hostname_loses_its_entry_and_a_route_left_without_hosts_loses_all(hosts: HostsWorld) -> None:
    hosts.route("web", "Host(`a.lan`) || Host(`b.lan`)")
    hosts.wait_hostnames(COMMENT, ["a.lan", "b.lan"])
    hosts.set_matches("web", "Host(`b.lan`)")
    hosts.wait_hostnames(COMMENT, ["b.lan"])
    hosts.set_matches("web", "PathPrefix(`/`)")
    hosts.wait_hostnames(COMMENT, [])
    wait_for("annotation removed", lambda: hosts.host_ids() is None)


def test_a_deleted_route_takes_its_entries_and_nothing_else(hosts: HostsWorld) -> None:
    hand_made = hosts.rh.put_entry("10.0.0.9", "hand.lan", "made by hand", tags=ROUTE_TAGS)
    hosts.route("other", "Host(`other.lan`)")
    hosts.route("web", "Host(`a.lan`)")
    [other] = hosts.wait_hostnames("k8s-ingress:home/other", ["other.lan"])
    hosts.wait_hostnames(COMMENT, ["a.lan"])
    hosts.delete_route("web")
    hosts.wait_hostnames(COMMENT, [])
    assert sorted(e.id for e in hosts.entries()) == sorted([hand_made, other.id])


def test_an_entry_deleted_behind_our_back_does_not_wedge_the_deletion(hosts: HostsWorld) -> None:
    """Upstream keeps retrying NOT_FOUND forever, its finalizer never goes (its backlog 999.16)."""
    hosts.stop()
    gone = hosts.rh.put_entry(INGRESS_IP, "a.lan", COMMENT, tags=ROUTE_TAGS)
    kept = hosts.rh.put_entry(INGRESS_IP, "b.lan", COMMENT, tags=ROUTE_TAGS)
    ids = json.dumps({"a.lan": gone, "b.lan": kept}, sort_keys=True, separators=(",", ":"))
    hosts.route("web", "Host(`a.lan`) || Host(`b.lan`)", annotations={HOST_IDS: ids},
                finalizers=[ROUTE_FINALIZER])
    hosts.rh.remove_entry(gone)
    hosts.delete_route("web")  # held by upstream's finalizer
    hosts.start(resync_interval=2.0)
    wait_for("the route gone", lambda: not hosts.route_exists("web"))
    assert hosts.entries() == []


def test_the_switch_from_upstream_converges_without_duplicates(hosts: HostsWorld) -> None:
    """Objects carrying upstream's finalizer and annotation, entries with its comment and tags."""
    hosts.stop()
    a = hosts.rh.put_entry(INGRESS_IP, "a.lan", COMMENT, tags=ROUTE_TAGS, version=2)
    ids = json.dumps({"a.lan": a}, sort_keys=True, separators=(",", ":"))
    hosts.route("web", "Host(`a.lan`, `b.lan`)", annotations={HOST_IDS: ids}, finalizers=[ROUTE_FINALIZER])
    hosts.start(resync_interval=2.0)
    entries = hosts.wait_hostnames(COMMENT, ["a.lan", "b.lan"])
    assert a in {e.id for e in entries}
    wait_for("both ids", lambda: set(json.loads(hosts.host_ids() or "{}")) == {"a.lan", "b.lan"})
    assert hosts.writes() == ["AddHost"]
    assert hosts.get_route()["metadata"]["finalizers"] == [ROUTE_FINALIZER]  # not ours to remove while live
    hosts.delete_route("web")
    wait_for("the route gone", lambda: not hosts.route_exists("web"))
    assert hosts.entries() == []


def test_an_untagged_entry_with_our_comment_is_not_adopted(hosts: HostsWorld) -> None:
    hosts.rh.put_entry(INGRESS_IP, "a.lan", COMMENT, tags=("kubernetes",))
    hosts.route("web", "Host(`a.lan`) || Host(`b.lan`)")
    hosts.wait_hostnames(COMMENT, ["a.lan", "b.lan"])
    hosts.wait_event("web", "AdoptionRefused")
    assert hosts.writes() == ["AddHost"]  # b.lan only: a.lan's entry is someone else's


def test_a_corrupt_annotation_is_reported_and_rebuilt_never_blocking(hosts: HostsWorld) -> None:
    hosts.route("web", "Host(`a.lan`)", annotations={HOST_IDS: "{not json"})
    [entry] = hosts.wait_hostnames(COMMENT, ["a.lan"])
    wait_for("rebuilt", lambda: hosts.host_ids() == json.dumps({"a.lan": entry.id}, separators=(",", ":")))
    assert hosts.wait_event("web", "InvalidAnnotation")[0] == "Warning"


def test_invalid_hostnames_are_skipped_with_a_warning(hosts: HostsWorld) -> None:
    hosts.route("web", "Host(`bad_name.lan`) || Host(`ok.lan`)")
    hosts.wait_hostnames(COMMENT, ["ok.lan"])
    assert "bad_name.lan" in hosts.wait_event("web", "InvalidHostname")[2]


def test_an_ignored_route_is_not_registered_and_opting_out_removes_its_entries(hosts: HostsWorld) -> None:
    hosts.route("skip", "Host(`skip.lan`)", labels={"router-hosts.fzymgc.house/ignore": "true"})
    hosts.route("web", "Host(`a.lan`)")
    hosts.wait_hostnames(COMMENT, ["a.lan"])
    hosts.patch_route("web", {"metadata": {"labels": {"router-hosts.fzymgc.house/ignore": "true"}}})
    hosts.wait_hostnames(COMMENT, [])
    assert hosts.entries() == [] and hosts.writes() == ["AddHost", "DeleteHost"]


@pytest.fixture()
def without_ip(kube: Any, routerhosts: Any) -> Iterator[HostsWorld]:
    yield from opened(kube, routerhosts, default_ingress_ip="", resync_interval=0.5)


def passes() -> float:
    """Reconcile passes of the door so far (this process)."""
    labels = {"front_door": "hosts", "outcome": "success"}
    return REGISTRY.get_sample_value("chutes_reconcile_duration_seconds_count", labels) or 0.0


def test_without_an_ingress_ip_routes_are_refused_once_and_nothing_is_registered(without_ip: HostsWorld) -> None:
    world = without_ip
    world.route("web", "Host(`a.lan`)")
    assert world.wait_event("web", "IngressIPMissing")[0] == "Warning"
    wait_for("the refusal counted", lambda: REFUSALS.count("hosts", "IngressIPMissing") == 1)
    seen = passes()
    wait_for("three more passes (resyncs)", lambda: passes() >= seen + 3)
    assert world.writes() == [] and world.rh.counters["SearchHosts"] == 0  # nothing to read for a refusal
    assert [e[1] for e in world.events("web")] == ["IngressIPMissing"]


def test_the_shipped_examples_register_what_their_comments_say(hosts: HostsWorld) -> None:
    from chutes.sandbox.manifests import load
    from harness.manifests import REPO

    for doc in load([REPO / "examples" / "hosts"]):
        if doc["kind"] == "Namespace":
            hosts.namespace(doc["metadata"]["name"])
            continue
        group, version = doc["apiVersion"].split("/")
        plural = {"HostMapping": "hostmappings", "IngressRoute": "ingressroutes",
                  "IngressRouteTCP": "ingressroutetcps"}[doc["kind"]]
        hosts.custom.create_namespaced_custom_object(group, version, doc["metadata"]["namespace"], plural, doc)
    hosts.wait_hostnames("k8s-ingress:home/media", ["dlna.lan", "jellyfin.lan", "media.lan"])
    hosts.synced("nas")
    hosts.synced("printer")
    assert sorted(e.hostname for e in hosts.entries()) == ["dlna.lan", "jellyfin.lan", "media.lan", "nas.lan",
                                                           "printer.lan"]
    assert hosts.entries(hostname="nas.lan")[0].aliases == ("files.lan", "backup.lan")


@pytest.fixture()
def home_only(kube: Any, routerhosts: Any) -> Iterator[HostsWorld]:
    yield from opened(kube, routerhosts, namespaces=["home"], resync_interval=1.0)


def test_only_the_watched_namespaces_are_served(home_only: HostsWorld) -> None:
    world = home_only
    world.mapping("elsewhere", namespace="other")
    world.route("tcp", "HostSNI(`db.lan`)", kind="IngressRouteTCP", namespace="other")
    world.mapping()
    world.route("tcp", "HostSNI(`db.lan`)", kind="IngressRouteTCP")
    world.synced()
    [entry] = world.wait_hostnames("k8s-ingress:home/tcp", ["db.lan"])
    wait_for("the TCP route's ids", lambda: world.host_ids("tcp", kind="IngressRouteTCP")
             == json.dumps({"db.lan": entry.id}, separators=(",", ":")))
    assert sorted(e.hostname for e in world.entries()) == ["db.lan", "nas.lan"]
    assert "status" not in world.get_mapping("elsewhere", "other")
