"""The soak's router-hosts checks (tests/harness/soak_hosts.py) find what they are there to find: on the emulators,
with entries put in place by hand as the operator would write them (no operator runs), an end state as wanted passes,
and each defect is named: a host missing, a duplicate, an entry with other content, an orphan, an entry of ours on a
name an older foreign entry holds, a foreign entry changed or deleted, the client key in a log."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from chutes.sandbox.kubernetes import KubeSandbox
from chutes.sandbox.routerhosts import RouterHostsSandbox
from harness import soak_checks, soak_hosts
from harness.soak_world import HOSTS_NS, INGRESS_IP, NAMESPACES, SESSION_NS, Foreign, Kube

ROUTE_TAGS = ("kubernetes", "traefik", "ingress")
HOSTMAPPINGS = (soak_hosts.GROUP, soak_hosts.VERSION)


@pytest.fixture(name="world")
def world_fixture() -> Iterator[tuple[Any, Kube, Foreign]]:
    with RouterHostsSandbox() as rh, KubeSandbox(namespaces=NAMESPACES) as kube:
        k = Kube(kube)
        foreign = Foreign()
        soak_hosts.put_foreign_entries(rh, foreign)
        custom = k.custom
        custom.create_namespaced_custom_object(*HOSTMAPPINGS, HOSTS_NS, "hostmappings",
                                               soak_hosts.mapping_body("hm1", "hm1-a.lan", "192.168.10.1",
                                                                       "hm1-alias.lan"))
        custom.create_namespaced_custom_object(*HOSTMAPPINGS, HOSTS_NS, "hostmappings",
                                               soak_hosts.mapping_body("hm3", "hm3-b.lan", "192.168.10.3", None))
        custom.create_namespaced_custom_object(*soak_hosts.TRAEFIK, HOSTS_NS, "ingressroutes", soak_hosts.route_body(
            "IngressRoute", "ir1", ["ir1-a.lan", "ir1-x.lan"]))
        custom.create_namespaced_custom_object(*soak_hosts.TRAEFIK, HOSTS_NS, "ingressroutetcps",
                                               soak_hosts.route_body("IngressRouteTCP", "ir1", ["it1-a.lan"]))
        for name in ("opencode-session-s1-oc-signin", "opencode-session-s1-oc-app"):  # two routes, one host
            custom.create_namespaced_custom_object(*soak_hosts.TRAEFIK, SESSION_NS, "ingressroutes",
                                                   soak_hosts.route_body("IngressRoute", name, ["s1-oc.example.net"]))
        rh.put_entry("192.168.10.1", "hm1-a.lan", f"k8s:{HOSTS_NS}/hm1", tags=("soak",), aliases=("hm1-alias.lan",))
        for hostname in ("ir1-a.lan", "ir1-x.lan", "it1-a.lan"):
            rh.put_entry(INGRESS_IP, hostname, f"k8s-ingress:{HOSTS_NS}/ir1", tags=ROUTE_TAGS)
        rh.put_entry(INGRESS_IP, "s1-oc.example.net", f"k8s-ingress:{SESSION_NS}/opencode-session-s1-oc-app",
                     tags=ROUTE_TAGS)
        try:
            yield rh, k, foreign
        finally:
            k.close()


def test_an_end_state_as_wanted_passes_and_compares_whichever_session_route_holds_its_host(
        world: tuple[Any, Kube, Foreign]) -> None:
    rh, k, foreign = world
    assert soak_hosts.entry_problems(rh, k, foreign) == []  # hm3-b.lan: refused, held by the foreign entry
    assert soak_hosts.foreign_changes(rh, foreign) == []
    keys = sorted(key for _kind, key, _content in soak_hosts.ours(rh, foreign))
    assert f"k8s-ingress:{SESSION_NS}/opencode-session-s1-oc-* s1-oc.example.net" in keys
    assert len(keys) == 5


def test_each_defect_is_named(world: tuple[Any, Kube, Foreign]) -> None:
    rh, k, foreign = world
    ours = {e.hostname: e.id for e in rh.entries() if e.id not in foreign.entries}
    rh.remove_entry(ours["ir1-x.lan"])  # missing
    rh.put_entry(INGRESS_IP, "it1-a.lan", f"k8s-ingress:{HOSTS_NS}/ir1", tags=ROUTE_TAGS)  # a duplicate
    rh.put_entry("192.168.10.9", "hm1-a.lan", f"k8s:{HOSTS_NS}/hm1", tags=("soak",), aliases=("hm1-alias.lan",),
                 host_id=ours["hm1-a.lan"])  # other content
    rh.put_entry(INGRESS_IP, "gone.lan", f"k8s-ingress:{HOSTS_NS}/gone", tags=ROUTE_TAGS)  # an orphan
    rh.put_entry("192.168.10.3", "hm3-b.lan", f"k8s:{HOSTS_NS}/hm3", tags=("soak",))  # on a foreign-held name
    found = soak_hosts.entry_problems(rh, k, foreign)
    assert [line.split(":")[0] for line in found] == ["hm1-a.lan", "hm3-b.lan", "ir1-x.lan", "it1-a.lan",
                                                      "orphan gone.lan"]
    assert "0 entries" in found[2] and "2 entries" in found[3] and "192.168.10.9" in found[0]

    printer = next(e for e in rh.entries() if e.hostname == "printer.lan")
    soak_hosts.edit_foreign_entry(rh, foreign, 3)  # the admin's edit is what must stay
    assert soak_hosts.foreign_changes(rh, foreign) == []
    rh.put_entry("192.168.1.5", "printer.lan", printer.comment, tags=printer.tags, host_id=printer.id)
    rh.remove_entry(next(e.id for e in rh.entries() if e.hostname == "router.lan"))
    changes = soak_hosts.foreign_changes(rh, foreign)
    assert len(changes) == 2 and any("router.lan deleted" in c for c in changes)


def test_the_client_key_is_a_canary(world: tuple[Any, Kube, Foreign]) -> None:
    rh, _k, _foreign = world
    canaries = soak_hosts.key_canaries(rh.key)
    key_line = next(v for label, v in canaries.items() if label.endswith("line 1"))
    assert soak_checks.leaks(canaries, {"log": "TLS files loaded"}) == []
    assert soak_checks.leaks(canaries, {"log": f"bad key: {key_line[:70]}"}) == [
        "router-hosts client key line 1 in log"]
