"""The router-hosts front door: the real operator (kopf, in-process) against the Kubernetes emulator and the
router-hosts emulator over mutual TLS. Mirrors upstream's HostMapping and IngressRoute checklists (reference
§9), plus the gaps upstream leaves open."""

from __future__ import annotations

from harness.hosts import FINALIZER, NS, HostsWorld, hosts_fixture  # noqa: F401  (hosts_fixture: a fixture)


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
