"""Drift repair, with the real operator against both emulators: a published gateway whose CNAME is edited
and whose Access application is deleted behind the operator's back is put back by the next resync, and
the repairs are counted in ``chutes_drift_repairs_total{front_door="chutes", object}``; a resync with
nothing drifted writes nothing and counts nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import cloudflare as cf_sdk
import pytest
from prometheus_client import REGISTRY

from harness.gateways import World
from harness.waiting import wait_for

HOSTNAME = "blog.example.com"
OBJECTS = ("dns_record", "tunnel_rule", "access_app", "access_policy", "service_token", "tunnel")


@pytest.fixture()
def world(kube: Any, cloudflare: Any) -> Iterator[World]:
    yield from World.opened(kube, cloudflare)  # each test starts the operator with its own settings


def repairs(front_door: str = "chutes") -> dict[str, float]:
    return {obj: REGISTRY.get_sample_value("chutes_drift_repairs_total", {"front_door": front_door, "object": obj})
            or 0.0 for obj in OBJECTS}


def resynced(world: World) -> bool:
    """A resync pass has run since the log was reset: it checked the hostname's DNS again."""
    return any(r.op == "dns.list" for r in world.cf.requests)


def test_a_resync_puts_back_an_edited_cname_and_a_deleted_access_app_and_counts_the_repairs(world: World) -> None:
    # a resync well after the first publish (the timer and the create handler are not serialised by kopf)
    world.start(resync_interval=2.0)
    world.ready_config()
    world.service()
    world.gateway()
    status = world.ready_gateway()["status"]
    wanted = f"{status['tunnelId']}.cfargotunnel.com"

    # the steady state: a resync writes nothing and repairs nothing
    before = repairs()
    world.cf.reset_log()
    wait_for("a resync", lambda: resynced(world))
    wait_for("another resync", lambda: sum(r.op == "dns.list" for r in world.cf.requests) >= 2)
    assert world.writes() == [] and repairs() == before

    with cf_sdk.Cloudflare(api_token=world.cf.token, base_url=world.cf.base_url, max_retries=0) as client:
        [record] = world.records(HOSTNAME)
        client.dns.records.edit(record["id"], zone_id=world.zone, type="CNAME", name=HOSTNAME,  # type: ignore[call-overload]
                                content="elsewhere.example.org", proxied=True, ttl=1, comment=record["comment"])
        client.zero_trust.access.applications.delete(status["accessAppId"], account_id=world.account)
    assert world.records(HOSTNAME)[0]["content"] == "elsewhere.example.org" and world.apps_for(HOSTNAME) == []

    repaired = wait_for("CNAME and Access application back", lambda: (
        world.records(HOSTNAME)[0]["content"] == wanted and world.apps_for(HOSTNAME)
        and (g := world.get_gateway())["status"].get("accessAppId") not in (None, status["accessAppId"]) and g))
    [app] = world.apps_for(HOSTNAME)
    assert repaired["status"]["accessAppId"] == app["id"] and app["name"] == "chute-team-a-blog"
    [record] = world.records(HOSTNAME)
    assert record["id"] == status["dnsRecordId"]  # the same record, put back

    # counted once the operator has read the write's response: the emulator shows the write a moment before
    after = wait_for("the repairs counted", lambda: (r := repairs())["dns_record"] >= before["dns_record"] + 1
                     and r["access_app"] >= before["access_app"] + 1
                     and r["access_policy"] >= before["access_policy"] + 1 and r)  # the policy went with its app
    assert after["tunnel"] == before["tunnel"]  # the tunnel never drifted
    assert world.condition(repaired)["reason"] == "Reconciled"


def test_a_new_gateway_and_a_spec_change_are_not_counted_as_repairs(world: World) -> None:
    world.start()  # the default resync: only create and update handlers run here
    before = repairs()
    world.ready_config()
    world.service()
    world.gateway()
    world.ready_gateway()
    world.patch_gateway("blog", {"access": {"allowedEmails": ["bob@example.org"]}})
    wait_for("the policy changed", lambda: any(
        p["include"] == [{"email": {"email": "bob@example.org"}}] for p in world.state()["access_policies"].values()))
    assert repairs() == before


# --- the other front doors count theirs -------------------------------------------------------------------


def test_the_httproute_resync_counts_what_it_repairs(kube: Any, cloudflare: Any) -> None:
    from harness import httproutes as routes

    world = routes.World(kube, cloudflare)
    try:
        routes.home(world, resync=0.5)
        world.route("web", "web.example.com")
        world.wait_ready("web")
        before = repairs("httproutes")
        [record] = world.records("web.example.com")
        world.sdk.dns.records.delete(record["id"], zone_id=world.zone)
        wait_for("CNAME restored", lambda: world.records("web.example.com"))
        wait_for("counted", lambda: repairs("httproutes")["dns_record"] >= before["dns_record"] + 1)
        assert repairs("httproutes")["access_app"] == before["access_app"]
    finally:
        world.close()


def test_the_periodic_session_pass_counts_what_it_repairs(kube: Any, cloudflare: Any) -> None:
    from harness import sessions as h

    tunnel = h.create_tunnel(cloudflare)
    api = h.kube_client(kube)
    try:
        with h.operator(cloudflare, h.session_env(cloudflare, tunnel), resync_interval=0.5):
            h.create_pod(api, h.pod("drifter", "abab12121212"))
            wait_for("published", lambda: h.published(cloudflare, api, tunnel).sessions() == {"abab12121212"})
            # two more passes (each lists the zone): the watch has reported the Pod, no pass for it is pending
            cloudflare.reset_log()
            wait_for("two passes", lambda: sum(r.op == "dns.list" for r in cloudflare.requests) >= 2)
            before = repairs("sessions")
            zone = cloudflare.zone_id(h.ZONE)
            [record] = [r for r in cloudflare.snapshot()["dns_records"][zone]
                        if r["name"] == h.hostname("abab12121212")]
            with h.sdk(cloudflare) as other:  # no Pod event follows: only a timed pass can repair it
                other.dns.records.delete(record["id"], zone_id=zone)
            wait_for("repaired", lambda: h.hostname("abab12121212") in h.published(cloudflare, api, tunnel).records)
            wait_for("counted", lambda: repairs("sessions")["dns_record"] >= before["dns_record"] + 1)
    finally:
        api.close()  # type: ignore[no-untyped-call]
