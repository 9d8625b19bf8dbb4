"""Write policies as in external-dns, with the real operator against both emulators: ``sync`` (default)
deletes what it no longer wants, ``upsert-only`` never deletes a Cloudflare object or tunnel rule, and
``create-only`` neither deletes nor updates existing ones but still creates. The Kubernetes side always
completes (finalizer removed, Deployment and Secret gone, state ConfigMap gone)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from harness import httproutes as routes
from harness.gateways import EMAILS, GROUP, NS, VERSION, World
from harness.waiting import wait_for

HOSTNAME = "blog.example.com"


@pytest.fixture()
def world(kube: Any, cloudflare: Any) -> Iterator[World]:
    yield from World.opened(kube, cloudflare)  # each test starts the operator with its own settings


def published(world: World) -> dict[str, Any]:
    world.ready_config()
    world.service()
    world.gateway()
    return world.ready_gateway()["status"]


def delete_gateway(world: World, name: str = "blog") -> None:
    world.custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "chutegateways", name)
    wait_for(f"gateway {name} gone (finalizer removed)", lambda: name not in {
        g["metadata"]["name"] for g in world.custom.list_namespaced_custom_object(GROUP, VERSION, NS,
                                                                                  "chutegateways")["items"]})


def handled(gateway: dict[str, Any], emails: list[str]) -> bool:
    """kopf records the spec its handlers completed (``last-handled-configuration``): the reconcile of this
    spec is over, and Ready (Cloudflare side done) or refused by the create-only policy."""
    raw = gateway["metadata"].get("annotations", {}).get(f"{GROUP}/last-handled-configuration") or "{}"
    spec = json.loads(raw).get("spec") or {}
    ready = world_condition(gateway, "Ready")
    return spec.get("access", {}).get("allowedEmails") == emails and (
        bool(gateway.get("status", {}).get("ready")) or ready.get("reason") == "PolicyForbidsUpdate")


def world_condition(gateway: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in gateway.get("status", {}).get("conditions", []) if c["type"] == type_), {})


def exists(read: Any, *args: Any) -> bool:
    try:
        read(*args)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def cloudflare_side(world: World, status: dict[str, Any]) -> dict[str, Any]:
    state = world.state()
    tunnel = state["tunnels"].get(status["tunnelId"]) or {}
    return {
        "record": [r["id"] for r in world.records(HOSTNAME)],
        "rule": [r["hostname"] for r in world.ingress(status["tunnelId"]) if r.get("hostname")],
        "app": [a["id"] for a in world.apps_for(HOSTNAME)],
        "policy": [p["id"] for p in state["access_policies"].values() if p.get("app_id") == status["accessAppId"]],
        "tunnel": bool(tunnel) and not tunnel.get("deleted_at"),
    }


def test_sync_deletes_every_cloudflare_object_of_a_deleted_gateway(world: World) -> None:
    world.start()  # the default policy
    status = published(world)
    delete_gateway(world)
    assert cloudflare_side(world, status) == {"record": [], "rule": [], "app": [], "policy": [], "tunnel": False}


@pytest.mark.parametrize("policy", ["upsert-only", "create-only"])
def test_a_deleted_gateway_leaves_its_cloudflare_objects_but_completes_in_kubernetes(
        world: World, policy: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    world.start(policy=policy)
    status = published(world)
    delete_gateway(world)

    assert cloudflare_side(world, status) == {"record": [status["dnsRecordId"]], "rule": [HOSTNAME],
                                              "app": [status["accessAppId"]], "policy": [status["accessPolicyId"]],
                                              "tunnel": True}
    assert not exists(world.apps.read_namespaced_deployment, "chute-blog-cloudflared", NS)
    assert not exists(world.core.read_namespaced_secret, "chute-blog-tunnel-token", NS)
    assert any(f"policy {policy}" in message for message in caplog.messages)
    kinds = {item.data["kind"] for item in world.core.list_namespaced_config_map(  # the ledger's namespace here
        "default", label_selector="chutes.troubleshat.com/claim-kind").items if item.data["source"].endswith("/blog")}
    assert kinds == {"hostname", "tunnel"}  # the proof the objects are ours stays with them


@pytest.mark.parametrize(("policy", "applied"), [("upsert-only", True), ("create-only", False)])
def test_create_only_leaves_existing_objects_as_they_are_but_creates_new_ones(
        world: World, policy: str, applied: bool) -> None:
    world.start(policy=policy)
    status = published(world)
    world.patch_gateway("blog", {"access": {"allowedEmails": ["bob@example.org"], "sessionDuration": "2h"}})
    wait_for("the change handled", lambda: handled(world.get_gateway(), ["bob@example.org"]))

    policy_now = world.state()["access_policies"][status["accessPolicyId"]]
    [app] = world.apps_for(HOSTNAME)
    wanted = [{"email": {"email": "bob@example.org"}}]
    before = [{"email": {"email": email}} for email in EMAILS]
    assert policy_now["include"] == (wanted if applied else before)
    assert app["session_duration"] == ("2h" if applied else "12h")

    world.service("shop")
    world.gateway("shop", service={"name": "shop", "port": 8080})
    shop = world.ready_gateway("shop")["status"]  # new objects are still created
    [record] = world.records("shop.example.com")
    assert record["id"] == shop["dnsRecordId"] and world.apps_for("shop.example.com")


def test_create_only_revokes_removed_emails_and_reports_the_live_access_it_could_not_update(world: World) -> None:
    """A removed email loses access under create-only (revoking is allowed); a grant or another change is not
    applied, and AccessReady/Ready say so (PolicyForbidsUpdate, Warning Event) with the live counts."""
    world.start(policy="create-only")
    world.ready_config()
    world.service()
    world.gateway(access={"allowedEmails": ["alice@example.org", "bob@example.org"], "sessionDuration": "12h"})
    status = world.ready_gateway()["status"]
    alice = [{"email": {"email": "alice@example.org"}}]

    world.patch_gateway("blog", {"access": {"allowedEmails": ["alice@example.org"]}})
    gateway = wait_for("bob revoked", lambda: handled(g := world.get_gateway(), ["alice@example.org"]) and g)
    assert world.state()["access_policies"][status["accessPolicyId"]]["include"] == alice
    assert world.condition(gateway, "AccessReady")["message"] == "1 email(s) and 0 domain(s) allowed"
    assert gateway["status"]["ready"]

    world.patch_gateway("blog", {"access": {"allowedEmails": ["alice@example.org", "carol@example.org"],
                                            "sessionDuration": "2h"}})
    gateway = world.wait_reason("PolicyForbidsUpdate", type_="AccessReady")
    message = ("the write policy create-only forbids updating the Access application and policy: live: 1 email(s) "
               "and 0 domain(s) allowed (the spec: 2 email(s) and 0 domain(s)); session duration 12h (the spec: 2h)")
    access = world.condition(gateway, "AccessReady")
    assert (access["status"], access["message"]) == ("False", message)
    gateway = world.wait_reason("PolicyForbidsUpdate")
    assert world.condition(gateway)["message"] == message and not gateway["status"]["ready"]
    wait_for("a Warning Event", lambda: ("Warning", "PolicyForbidsUpdate", message) in world.events("blog"))
    world.patch_gateway("blog", {"replicas": 3})  # another reconcile: no second Event
    wait_for("replicas handled", lambda: (g := world.get_gateway())["status"].get("observedGeneration")
             == g["metadata"]["generation"])
    assert [r for t, r, _ in world.events("blog") if t == "Warning"].count("PolicyForbidsUpdate") == 1
    assert world.state()["access_policies"][status["accessPolicyId"]]["include"] == alice
    assert world.apps_for(HOSTNAME)[0]["session_duration"] == "12h"


# --- HTTPRoutes ------------------------------------------------------------------------------------------


@pytest.fixture()
def route_world(kube: Any, cloudflare: Any) -> Iterator[routes.World]:
    yield from routes.World.opened(kube, cloudflare)


@pytest.mark.parametrize("policy", ["sync", "upsert-only"])
def test_a_deleted_httproute_leaves_its_objects_under_upsert_only(route_world: routes.World, policy: str) -> None:
    world = route_world
    world.token_secret()
    world.tenant()
    world.start(policy=policy)
    world.route("app", "app.example.com", **{"access.enabled": "true", "access.allowEmails": "alice@example.org"})
    world.wait_ready("app")
    wait_for("state recorded", lambda: world.state("app"))

    world.delete_route("app")
    wait_for("state ConfigMap removed", lambda: world.state("app") is None)
    kept = policy == "upsert-only"
    assert bool(world.records("app.example.com")) is kept
    assert (world.rule("app.example.com") is not None) is kept
    assert bool(world.apps("app.example.com")) is kept
    assert ("app.example.com" in world.claims()) is kept  # the proof the objects are ours stays with them


def test_a_route_deleted_while_no_operator_watched_leaves_its_objects_and_claim_under_upsert_only(
        route_world: routes.World) -> None:
    """The orphan sweep settles the Kubernetes side (state ConfigMap) and keeps what the policy keeps: the
    Cloudflare objects and the claim that proves them ours (removed once the policy allows it)."""
    world = route_world
    world.token_secret()
    world.tenant()
    world.start(policy="upsert-only")
    world.route("app", "app.example.com", **{"access.enabled": "true", "access.allowEmails": "alice@example.org"})
    world.wait_ready("app")
    world.stop()
    world.delete_route("app")

    world.start(policy="upsert-only", sweep=0.5)
    wait_for("state ConfigMap removed", lambda: world.state("app") is None)
    assert world.records("app.example.com") and world.rule("app.example.com") and world.apps("app.example.com")
    assert world.claims()["app.example.com"]["source"] == "HTTPRoute/apps/app"


def test_create_only_revokes_route_emails_and_says_what_it_left_as_it_is(route_world: routes.World) -> None:
    """An HTTPRoute under create-only: a removed email loses access; an added one and a new session duration
    are not applied, and Ready says so (PolicyForbidsUpdate, what is live, a Warning Event); allow rules all
    removed leave the allow policy (never deleted under create-only), which is said too."""
    world = route_world
    world.token_secret()
    world.tenant()
    world.start(policy="create-only")
    world.route("app", "app.example.com", **{"access.enabled": "true",
                                             "access.allowEmails": "alice@example.org,bob@example.org"})
    world.wait_ready("app")

    def allowed() -> list[str]:
        [policy] = [p for p in world.policies() if p["name"] == "cfzt-app.example.com-allow"]
        return [rule["email"]["email"] for rule in policy["include"]]

    world.annotate("app", **{"access.allowEmails": "alice@example.org"})
    wait_for("bob revoked", lambda: allowed() == ["alice@example.org"])
    world.wait_ready("app")

    world.annotate("app", **{"access.allowEmails": "alice@example.org,carol@example.org",
                             "access.sessionDuration": "2h"})
    ready = world.wait_reason("app", "PolicyForbidsUpdate")
    hash_before = (world.state("app") or {}).get("annotation_hash")
    message = ("the write policy create-only left the Access application as it is: live: cfzt-app.example.com-allow: "
               "0 group(s) and 1 email(s) allowed (the settings: 0 group(s) and 2 email(s) allowed); session "
               "duration 24h (the settings: 2h)")
    assert (ready["status"], ready["message"]) == ("False", message)
    wait_for("a Warning Event", lambda: ("Warning", "PolicyForbidsUpdate", message) in world.events("app"))
    world.annotate("app", **{"access.skipInterstitial": "false"})  # another reconcile: no second Event
    wait_for("reconciled again", lambda: world.state("app") is not None and world.state("app").get(
        "annotation_hash") != hash_before)
    world.quiesce()
    assert [r for t, r, _ in world.events("app") if t == "Warning"].count("PolicyForbidsUpdate") == 1
    assert allowed() == ["alice@example.org"] and world.apps("app.example.com")[0]["session_duration"] == "24h"

    world.annotate("app", **{"access.allowEmails": None, "access.sessionDuration": None})
    ready = wait_for("said", lambda: (r := world.ready("app")).get("message", "").endswith(
        "live: cfzt-app.example.com-allow: 0 group(s) and 1 email(s) allowed (the settings: no allow policy)") and r)
    assert ready["reason"] == "PolicyForbidsUpdate" and allowed() == ["alice@example.org"]
