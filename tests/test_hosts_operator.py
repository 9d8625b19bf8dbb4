"""The router-hosts front door: the real operator (kopf, in-process) against the Kubernetes emulator and the
router-hosts emulator over mutual TLS. Mirrors upstream's HostMapping and IngressRoute checklists (reference
§9), plus the gaps upstream leaves open."""

from __future__ import annotations

from harness.hosts import FINALIZER, HostsWorld, hosts_fixture  # noqa: F401  (hosts_fixture: a fixture)
from harness.waiting import wait_for


def test_a_hostmapping_is_registered_and_synced(hosts: HostsWorld) -> None:
    hosts.mapping(aliases=["files.lan"], tags=["storage"])
    body = hosts.synced(reason="Created")
    [entry] = hosts.entries("k8s:home/nas")
    assert (entry.ip, entry.hostname, entry.aliases, entry.tags) == ("192.168.1.10", "nas.lan", ("files.lan",),
                                                                     ("storage",))
    status = body["status"]
    assert (status["hostId"], status["hostVersion"], status["message"]) == (entry.id, entry.version, "Created")
    assert status["lastSyncTime"] and hosts.condition(body)["status"] == "True"
    assert FINALIZER in body["metadata"]["finalizers"]
    assert hosts.wait_event("nas", "HostEntryCreated")[0] == "Normal"


def test_an_update_writes_every_field_and_removed_aliases_and_tags_are_cleared(hosts: HostsWorld) -> None:
    hosts.mapping(aliases=["files.lan"], tags=["storage"])
    created = hosts.synced(reason="Created")
    hosts.replace_spec({"hostname": "nas.lan", "ip": "192.168.1.11"})  # aliases and tags removed
    body = hosts.synced(reason="Updated")
    [entry] = hosts.entries("k8s:home/nas")
    assert (entry.ip, entry.aliases, entry.tags) == ("192.168.1.11", (), ())
    assert entry.id == created["status"]["hostId"] and body["status"]["hostVersion"] == entry.version
    assert hosts.writes() == ["AddHost", "UpdateHost"]
    hosts.wait_event("nas", "HostEntryUpdated")


def test_in_sync_is_a_fixed_point_and_keeps_the_last_sync_time(hosts: HostsWorld) -> None:
    hosts.mapping()
    created = hosts.synced(reason="Created")
    body = hosts.synced(reason="AlreadyInSync")  # the resync (2 s) found nothing to do
    assert body["status"]["message"] == "Already in sync"
    assert body["status"]["lastSyncTime"] == created["status"]["lastSyncTime"]
    assert hosts.writes() == ["AddHost"]


def test_a_renamed_hostmapping_keeps_its_entry_id(hosts: HostsWorld) -> None:
    hosts.mapping()
    created = hosts.synced(reason="Created")
    hosts.patch_mapping({"spec": {"hostname": "storage.lan"}})
    hosts.synced(reason="Updated")
    [entry] = hosts.entries("k8s:home/nas")
    assert (entry.id, entry.hostname) == (created["status"]["hostId"], "storage.lan")


def test_a_deleted_hostmapping_takes_its_entry_and_only_its_entry(hosts: HostsWorld) -> None:
    foreign = hosts.rh.put_entry("192.168.1.99", "other.lan", "hand made")
    hosts.mapping()
    hosts.synced()
    hosts.delete_mapping()
    wait_for("HostMapping gone", lambda: not hosts.mapping_exists())
    assert [e.id for e in hosts.entries()] == [foreign]
    hosts.wait_event("nas", "HostEntryRemoved")


def test_an_entry_already_gone_does_not_wedge_the_deletion(hosts: HostsWorld) -> None:
    hosts.mapping()
    body = hosts.synced()
    hosts.stop()
    assert hosts.rh.remove_entry(body["status"]["hostId"])
    hosts.delete_mapping()  # held by the finalizer while the operator is away
    hosts.start()
    wait_for("HostMapping gone", lambda: not hosts.mapping_exists())
    assert hosts.entries() == []


def test_an_entry_deleted_behind_our_back_is_recreated_with_upstreams_event(hosts: HostsWorld) -> None:
    hosts.mapping()
    first = hosts.synced()["status"]["hostId"]
    hosts.rh.remove_entry(first)
    wait_for("a new entry", lambda: [e.id for e in hosts.entries("k8s:home/nas")] not in ([], [first]))
    assert hosts.wait_event("nas", "Recreated")[0] == "Normal"
    wait_for("status names the new entry", lambda: hosts.get_mapping()["status"]["hostId"]
             == hosts.entries("k8s:home/nas")[0].id)


def test_drift_is_repaired_at_the_version_read(hosts: HostsWorld) -> None:
    hosts.mapping()
    entry_id = hosts.synced()["status"]["hostId"]
    [entry] = hosts.entries("k8s:home/nas")
    hosts.rh.put_entry("10.9.9.9", entry.hostname, entry.comment, version=int(entry.version) + 1, host_id=entry_id)
    wait_for("ip put back", lambda: [e.ip for e in hosts.entries("k8s:home/nas")] == ["192.168.1.10"])
    assert [r.rpc for r in hosts.rh.requests].count("AddHost") == 1


def test_a_stale_version_is_read_again_and_written(hosts: HostsWorld) -> None:
    import grpc

    hosts.mapping()
    hosts.synced()
    hosts.rh.faults.fail(1, rpc="UpdateHost", code=grpc.StatusCode.ABORTED)
    hosts.patch_mapping({"spec": {"ip": "192.168.1.12"}})
    hosts.synced(reason="Updated")
    assert [e.ip for e in hosts.entries("k8s:home/nas")] == ["192.168.1.12"]
    assert hosts.writes().count("UpdateHost") == 2


def test_a_foreign_entry_for_the_name_is_reported_once_and_never_touched(hosts: HostsWorld) -> None:
    foreign = hosts.rh.put_entry("192.168.1.99", "nas.lan", "made by hand")  # (our comment would prove it ours:
    # an orphan of a HostMapping elsewhere/nas, for the sweep at start)
    hosts.mapping()
    body = hosts.synced(phase="Error", reason="HostnameConflict")
    assert foreign in body["status"]["message"] and hosts.condition(body)["status"] == "False"
    hosts.synced(phase="Error", reason="HostnameConflict")
    wait_for("two resyncs", lambda: [r.rpc for r in hosts.rh.requests].count("SearchHosts") >= 6)
    assert hosts.writes() == [] and [e.id for e in hosts.entries()] == [foreign]
    warnings = [e for e in hosts.events("nas") if e[0] == "Warning"]
    assert [w[1] for w in warnings] == ["HostnameConflict"]


def test_a_foreign_entry_of_this_very_ip_and_name_is_not_adopted(hosts: HostsWorld) -> None:
    hosts.rh.put_entry("192.168.1.10", "nas.lan", "made by hand")
    hosts.mapping()
    hosts.synced(phase="Error", reason="AdoptionRefused")
    assert hosts.writes() == []


def test_an_entry_with_our_comment_is_taken_over_without_a_duplicate(hosts: HostsWorld) -> None:
    """The switch from upstream: its finalizer, its status and its entry, all ours already."""
    hosts.stop()
    existing = hosts.rh.put_entry("192.168.1.10", "nas.lan", "k8s:home/nas", aliases=("old.lan",), version=4)
    hosts.mapping(meta={"finalizers": [FINALIZER]}, status={"phase": "Synced", "hostId": existing,
                                                            "hostVersion": "4"})
    hosts.start()
    body = hosts.synced(reason="Updated")
    assert [e.id for e in hosts.entries()] == [existing] and body["status"]["hostId"] == existing
    assert hosts.entries()[0].aliases == ()
    assert body["metadata"]["finalizers"] == [FINALIZER]


def test_what_admission_cannot_see_is_refused_by_the_operator(hosts: HostsWorld) -> None:
    hosts.mapping(aliases=["Files.lan", "files.lan"])  # duplicated regardless of case
    body = hosts.synced(phase="Error", reason="InvalidSpec")
    assert "duplicate alias" in body["status"]["message"]
    hosts.mapping("bad", ip="192.168.01.1")  # the emulated API server has no schema admission
    assert "invalid IP address" in hosts.synced("bad", phase="Error", reason="InvalidSpec")["status"]["message"]
    assert hosts.writes() == []
    hosts.wait_event("nas", "InvalidSpec")


def test_an_unreadable_server_fails_closed_and_converges_when_back(hosts: HostsWorld) -> None:
    hosts.rh.faults.fail(10_000, rpc="SearchHosts")
    hosts.mapping()
    body = hosts.synced(phase="Error", reason="PreflightReadFailed")
    assert "unavailable" in body["status"]["message"].lower()
    assert hosts.writes() == []
    hosts.rh.faults.clear()
    hosts.synced(reason="Created")
    assert len(hosts.entries("k8s:home/nas")) == 1
