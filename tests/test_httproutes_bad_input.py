"""Annotated HTTPRoutes given bad input, against both emulators: every problem gives a clear condition and
Warning Event, nothing is published that should not be, other routes are not affected, and the route
recovers once the input is fixed (by the tenant/template handlers, or the resync where only time helps)."""

from __future__ import annotations

from typing import Any

from harness.httproutes import OPNS, P, World, home, world_fixture  # noqa: F401
from harness.waiting import wait_for


def warnings(world: World, name: str, namespace: str = "apps") -> list[tuple[str, str]]:
    return [(reason, message) for kind, reason, message in world.events(name, namespace) if kind == "Warning"]


def nothing_published(world: World, hostname: str) -> bool:
    return (not world.records(hostname) and world.rule(hostname) is None and not world.apps(hostname)
            and not world.tokens(f"cfzt-{hostname}"))


def test_malformed_annotations_are_named_and_other_routes_go_on(world: World) -> None:
    home(world)
    world.route("bad", "bad.example.com", **{"access.enabled": "maybe", "origin.url": "traefik:443",
                                             "access.sessionDuration": "1 day"})
    world.route("nohost", None)
    world.route("good", "good.example.com")
    world.wait_ready("good")
    ready = world.wait_reason("bad", "InvalidSpec")
    for part in (f"{P}access.enabled: expected true or false, got 'maybe'", f"{P}origin.url: 'traefik:443'",
                 f"{P}access.sessionDuration: '1 day' is not a duration"):
        assert part in ready["message"]
    assert ("InvalidSpec", ready["message"]) in warnings(world, "bad")
    assert world.wait_reason("nohost", "InvalidSpec")["message"] == f"{P}hostname is required"
    assert nothing_published(world, "bad.example.com") and world.state("bad") is None

    world.annotate("bad", **{"access.enabled": "true", "origin.url": "https://traefik:443",
                             "access.sessionDuration": "8h"})
    world.wait_ready("bad")
    assert world.apps("bad.example.com")[0]["session_duration"] == "8h"


def test_missing_tenant_then_created(world: World) -> None:
    world.token_secret()
    world.start()
    world.route("web", "web.example.com")
    ready = world.wait_reason("web", "TenantNotFound")
    assert ready["message"] == f"CloudflareZeroTrustTenant 'home' not found in namespace apps or {OPNS}"
    assert ("TenantNotFound", ready["message"]) in warnings(world, "web")
    world.tenant()
    world.wait_ready("web")


def test_missing_template_publishes_nothing_until_it_exists(world: World) -> None:
    home(world)
    world.route("web", "web.example.com", template="protected")
    ready = world.wait_reason("web", "TemplateNotFound")
    assert "CloudflareZeroTrustTemplate 'protected' not found" in ready["message"]
    assert nothing_published(world, "web.example.com")  # the seed published it without its protection
    world.template("protected", {"accessApplication": {"enabled": True}})
    world.wait_ready("web")
    assert world.apps("web.example.com") and world.records("web.example.com")


def test_missing_credentials_then_fixed(world: World) -> None:
    world.tenant(secret="absent")
    world.start(resync=0.5)
    world.route("web", "web.example.com")
    ready = world.wait_reason("web", "SecretNotFound")
    assert ready["message"] == f"Secret {OPNS}/absent (credentialRef of tenant {OPNS}/home) does not exist"
    tenant = wait_for("tenant not ready", lambda: (s := world.tenant_status()).get("conditions") and s)
    assert (tenant["conditions"][0]["status"], tenant["conditions"][0]["reason"]) == ("False", "SecretNotFound")
    world.token_secret(name="absent")
    world.wait_ready("web")
    wait_for("tenant ready", lambda: world.tenant_status()["conditions"][0]["status"] == "True")


def test_load_balancer_without_an_ip_waits_for_one(world: World) -> None:
    home(world, resync=0.5)
    world.template("lb", {"dnsOnly": {"enabled": True, "ingressServiceRef": {"name": "traefik", "namespace": "edge"}}})
    world.route("web", "web.example.com", template="lb")
    assert "Service edge/traefik" in world.wait_reason("web", "ServiceNotFound")["message"]
    world.namespace("edge")
    world.core.create_namespaced_service("edge", {"metadata": {"name": "traefik"}, "spec": {
        "type": "LoadBalancer", "ports": [{"port": 443}]}})
    ready = world.wait_reason("web", "LoadBalancerPending")
    assert ready["message"] == "Service edge/traefik has no LoadBalancer IP yet"
    assert nothing_published(world, "web.example.com")
    world.core.patch_namespaced_service_status("traefik", "edge", {"status": {"loadBalancer": {
        "ingress": [{"ip": "198.51.100.7"}]}}})
    world.wait_ready("web")
    assert [(r["type"], r["content"], r["ttl"]) for r in world.records("web.example.com")] == [
        ("A", "198.51.100.7", 120)]


def test_unknown_policy_name_fails_closed(world: World) -> None:
    home(world, resync=0.5)
    world.route("web", "web.example.com", **{"access.enabled": "true", "access.existingPolicyNames": "Team, Admins"})
    world.reusable_policy("Team")
    ready = world.wait_reason("web", "PolicyNotFound")
    assert "'Admins'" in ready["message"] and "web.example.com is not published" in ready["message"]
    assert ("PolicyNotFound", ready["message"]) in warnings(world, "web")
    assert nothing_published(world, "web.example.com")

    admins = world.reusable_policy("Admins")
    world.wait_ready("web")
    assert world.records("web.example.com") and world.rule("web.example.com")

    # The policy is renamed in Cloudflare: at the next resync the hostname is taken down, Access stays.
    world.sdk.zero_trust.access.policies.update(admins, account_id=world.account, name="Administrators",
                                                decision="allow", include=[{"everyone": {}}])
    wait_for("unpublished", lambda: not world.records("web.example.com") and world.rule("web.example.com") is None
             and P + "cnameRecordId" not in world.annotations("web"))
    assert world.apps("web.example.com")
    assert world.wait_reason("web", "PolicyNotFound")
    assert any("unpublished" in message for _, message in warnings(world, "web"))


def test_two_routes_claiming_one_hostname(world: World) -> None:
    home(world)
    world.route("first", "shared.example.com")
    world.wait_ready("first")
    world.route("second", "shared.example.com", backend=("other", 9090))
    ready = world.wait_reason("second", "HostnameConflict")
    assert ready["message"] == "hostname shared.example.com is already claimed by HTTPRoute apps/first"
    assert ("HostnameConflict", ready["message"]) in warnings(world, "second")
    assert world.rule("shared.example.com")["service"] == "http://web.apps.svc.cluster.local:8080"  # type: ignore[index]
    assert world.state("second") is None

    world.delete_route("first")
    world.wait_ready("second")
    assert world.rule("shared.example.com")["service"] == "http://other.apps.svc.cluster.local:9090"  # type: ignore[index]
    [record] = world.records("shared.example.com")
    assert record["comment"].endswith("src=HTTPRoute/apps/second")


def test_hostname_outside_the_tenants_zone_is_refused(world: World) -> None:
    world.token_secret()
    world.tenant("pinned", zoneId=world.zone)
    world.tenant("home")
    world.start()
    world.route("net", "app.example.net", tenant="pinned")
    world.route("org", "app.example.org")
    world.route("ok", "ok.example.com", tenant="pinned")
    assert world.wait_reason("net", "HostnameOutsideZone")["message"] == (
        f"app.example.net is not inside zone example.com of tenant {OPNS}/pinned")
    assert world.wait_reason("org", "HostnameOutsideZone")["message"].startswith(
        f"no zone of account {world.account} (tenant {OPNS}/home) contains app.example.org")
    world.wait_ready("ok")
    assert nothing_published(world, "app.example.net") and nothing_published(world, "app.example.org")


def test_a_foreign_record_on_the_hostname_is_left_alone(world: World) -> None:
    world.sdk.dns.records.create(zone_id=world.zone, name="taken.example.com", type="A", content="192.0.2.9", ttl=300)
    home(world)
    world.route("web", "taken.example.com", **{"access.enabled": "true"})
    ready = world.wait_reason("web", "HostnameConflict")
    assert "taken.example.com" in ready["message"] and "not owned" in ready["message"]
    assert world.apps() == [] and world.rule("taken.example.com") is None
    assert [(r["type"], r["content"]) for r in world.records("taken.example.com")] == [("A", "192.0.2.9")]

    world.delete_route("web")
    wait_for("route gone", lambda: not world.route_exists("web"))
    assert [(r["type"], r["content"]) for r in world.records("taken.example.com")] == [("A", "192.0.2.9")]


def route_conditions(world: World, name: str) -> list[dict[str, Any]]:
    import json

    return list(json.loads(world.annotations(name).get(P + "conditions") or "[]"))


def test_one_warning_per_distinct_problem(world: World) -> None:
    world.token_secret()
    world.start(resync=0.3)  # routes of no tenant are retried by kopf, not the resync: one Event stays one
    world.route("web", "web.example.com", template="nope")
    world.wait_reason("web", "TenantNotFound")
    world.tenant()
    world.wait_reason("web", "TemplateNotFound")
    [condition] = route_conditions(world, "web")
    assert condition["observedGeneration"] == 1
    wait_for("resyncs", lambda: world.tenant_status().get("lastSyncTime"))
    reasons = [reason for reason, _ in warnings(world, "web")]
    assert reasons.count("TenantNotFound") == 1 and reasons.count("TemplateNotFound") == 1


def test_a_typo_in_an_annotation_key_publishes_nothing(world: World) -> None:
    """``access.enable`` (or ``access.Enabled``) was ignored, Access defaulted to off: a public hostname, Ready."""
    home(world)
    world.route("typo", "typo.example.com", **{"access.enable": "true"})
    world.route("case", "case.example.com", **{"access.Enabled": "true"})
    world.route("adopt", "adopt.example.com", other_annotations={"chutes.troubleshat.com/adpot": "true"})
    expected = {
        "typo": f"unknown annotation {P}access.enable (did you mean {P}access.enabled?)",
        "case": f"unknown annotation {P}access.Enabled (did you mean {P}access.enabled?)",
        "adopt": "unknown annotation chutes.troubleshat.com/adpot (did you mean chutes.troubleshat.com/adopt?)",
    }
    for name, message in expected.items():
        assert world.wait_reason(name, "InvalidSpec")["message"] == message
        # kopf posts the Event in the background: it may land just after the condition (the sweep at start runs too)
        wait_for(f"the Warning of {name}", lambda n=name, m=message: ("InvalidSpec", m) in warnings(world, n))
        assert nothing_published(world, f"{name}.example.com") and world.state(name) is None

    world.annotate("typo", **{"access.enable": None, "access.enabled": "true"})
    world.wait_ready("typo")
    assert world.apps("typo.example.com") and world.records("typo.example.com")


def test_a_typo_added_to_a_published_route_leaves_what_is_published_as_it_is(world: World) -> None:
    """The route stays as last published (protected): the typo neither removes its Access application nor
    publishes anything new, on the route's change or at the resync; fixing it resumes."""
    home(world, resync=0.5)
    world.route("web", "web.example.com", **{"access.enabled": "true", "access.allowEmails": "a@example.org"})
    world.wait_ready("web")
    [app] = world.apps("web.example.com")
    world.annotate("web", **{"access.enabled": None, "access.enable": "true", "origin.url": "http://other:80"})
    ready = world.wait_reason("web", "InvalidSpec")
    assert ready["message"] == f"unknown annotation {P}access.enable (did you mean {P}access.enabled?)"
    synced = world.tenant_status().get("lastSyncTime")
    wait_for("a resync", lambda: world.tenant_status().get("lastSyncTime") not in (None, synced))
    assert world.apps("web.example.com") == [app]  # still behind Access
    rule = world.rule("web.example.com")
    assert rule is not None and rule["service"] == "http://web.apps.svc.cluster.local:8080"  # not the new origin
    assert world.records("web.example.com") and world.ready("web")["reason"] == "InvalidSpec"

    world.annotate("web", **{"access.enable": None, "access.enabled": "true"})
    world.wait_ready("web")
    rule = world.rule("web.example.com")
    assert world.apps("web.example.com") and rule is not None and rule["service"] == "http://other:80"
