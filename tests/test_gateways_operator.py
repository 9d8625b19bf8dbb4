"""ChuteConfig / ChuteGateway: the real operator against both emulators.

Each test runs `chutes run` in-process (OperatorThread) against the Kubernetes emulator and the
Cloudflare emulator, applies objects with the real `kubernetes` client and reads the outcome from
both sides: Cloudflare state and request log, Kubernetes objects, status and Events.
"""

from __future__ import annotations

import base64
import copy
import datetime
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from chutes.cloudflare_core.ownership import parse as parse_marker
from harness.gateways import EMAILS, GROUP, NS, VERSION, World, world_fixture  # noqa: F401  (world_fixture: a fixture)
from harness.retries import short_cloudflare_retries
from harness.waiting import wait_for

# --- the happy path -------------------------------------------------------------------------------


def test_config_becomes_ready_with_the_one_time_pin_provider(world: World) -> None:
    config = world.ready_config()
    idps = list(world.state()["identity_providers"].values())
    assert [i["type"] for i in idps] == ["onetimepin"]
    assert config["status"]["otpIdentityProviderId"] == idps[0]["id"]
    assert world.condition(config)["status"] == "True"
    assert world.condition(config, "CredentialsReady")["status"] == "True"
    assert config["status"]["observedGeneration"] == config["metadata"]["generation"]


def test_existing_one_time_pin_provider_is_adopted(world: World) -> None:
    import asyncio

    from chutes.cloudflare_core import CloudflareCore

    async def make_idp() -> str:
        async with CloudflareCore(world.cf.token, base_url=world.cf.base_url) as core:
            return (await core.ensure_otp_idp(world.account)).id

    existing = asyncio.run(make_idp())
    config = world.ready_config()
    assert config["status"]["otpIdentityProviderId"] == existing
    assert len(world.state()["identity_providers"]) == 1


def test_gateway_publishes_every_object_behind_access(world: World) -> None:
    world.ready_config()
    world.service()
    world.gateway(access={"allowedEmails": EMAILS, "allowedDomains": ["corp.example"], "sessionDuration": "12h"})
    gateway = world.ready_gateway()
    status = gateway["status"]

    [tunnel] = world.live_tunnels()
    assert tunnel["name"] == f"chute-{NS}-blog" and status["tunnelId"] == tunnel["id"]
    assert world.ingress(tunnel["id"]) == [
        {"hostname": "blog.example.com", "service": f"http://web.{NS}.svc.cluster.local:8080"},
        {"service": "http_status:404"},
    ]
    [record] = world.records("blog.example.com")
    assert (record["type"], record["content"], record["proxied"]) == ("CNAME", f"{tunnel['id']}.cfargotunnel.com", True)
    marker = parse_marker(record["comment"])
    assert marker is not None and (marker.owner_id, marker.source) == ("default", f"ChuteGateway/{NS}/blog")
    assert status["dnsRecordId"] == record["id"]
    [app] = world.apps_for("blog.example.com")
    idp = world.get_config()["status"]["otpIdentityProviderId"]
    assert (app["name"], app["type"], app["session_duration"], app["allowed_idps"]) == (
        f"chute-{NS}-blog", "self_hosted", "12h", [idp])
    assert status["accessAppId"] == app["id"]
    [policy] = [p for p in world.state()["access_policies"].values() if p["app_id"] == app["id"]]
    assert policy["decision"] == "allow" and policy["id"] == status["accessPolicyId"]
    assert policy["include"] == [
        {"email": {"email": "alice@example.org"}}, {"email_domain": {"domain": "corp.example"}}]
    assert status["url"] == "https://blog.example.com" and status["hostname"] == "blog.example.com"
    for type_ in ("Ready", "TunnelReady", "AccessReady", "DNSReady", "ConnectorReady"):
        assert world.condition(gateway, type_)["status"] == "True", type_

    secret = world.core.read_namespaced_secret("chute-blog-tunnel-token", NS)
    token = base64.b64decode(secret.data["token"]).decode()
    assert json.loads(base64.b64decode(token))["t"] == tunnel["id"]
    deployment = world.apps.read_namespaced_deployment("chute-blog-cloudflared", NS)
    container = deployment.spec.template.spec.containers[0]
    assert deployment.spec.replicas == 2
    assert container.env[0].value_from.secret_key_ref.name == "chute-blog-tunnel-token"
    assert "0.0.0.0:2000" in container.args and container.readiness_probe.http_get.path == "/ready"
    for obj in (secret, deployment):
        [owner] = obj.metadata.owner_references
        assert (owner.kind, owner.name, owner.uid) == ("ChuteGateway", "blog", gateway["metadata"]["uid"])
    assert "chutes.troubleshat.com/cleanup" in gateway["metadata"]["finalizers"]
    reasons = {reason for _, reason, _ in world.events("blog")}
    assert {"TunnelReady", "AccessApplicationReady", "DNSRecordReady"} <= reasons
    # No secret in status or Events.
    assert world.cf.token not in json.dumps(gateway) and token not in json.dumps(world.events("blog"))


def test_access_is_written_before_routing_and_removed_after_it(world: World) -> None:
    world.ready_config()
    world.service()
    world.cf.reset_log()
    world.gateway()
    world.ready_gateway()
    writes = world.writes()
    assert writes.index("access.apps.create") < writes.index("tunnels.config.put")  # the app with its policy
    assert writes.index("tunnels.config.put") < writes.index("dns.batch")
    assert "access.app_policies.create" not in writes and "access.app_policies.list" not in world.cf.counters
    [policy] = world.state()["access_policies"].values()
    assert policy["app_id"] == world.get_gateway()["status"]["accessAppId"]
    assert world.get_gateway()["status"]["accessPolicyId"] == policy["id"]
    world.cf.reset_log()
    world.custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "chutegateways", "blog")
    wait_for("gateway gone", lambda: not world.custom.list_namespaced_custom_object(
        GROUP, VERSION, NS, "chutegateways")["items"])
    writes = world.writes()
    assert writes.index("dns.batch") < writes.index("access.apps.delete")
    assert writes.index("tunnels.config.put") < writes.index("access.apps.delete")
    assert writes[-1] == "tunnels.delete"
    assert world.live_tunnels() == [] and world.records() == [] and world.state()["access_apps"] == {}
    assert world.state()["access_policies"] == {}  # the app-scoped policy went with its application
    with pytest.raises(ApiException):
        world.apps.read_namespaced_deployment("chute-blog-cloudflared", NS)
    with pytest.raises(ApiException):
        world.core.read_namespaced_secret("chute-blog-tunnel-token", NS)


def test_gateways_deleted_together_find_their_tunnels_in_listings_never_reading_each(world: World) -> None:
    world.ready_config()
    world.service()
    names = ["blog", "docs", "shop"]
    for name in names:
        world.gateway(name)
    for name in names:
        world.ready_gateway(name)
    world.cf.reset_log()
    for name in names:
        world.custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "chutegateways", name)
    wait_for("gateways gone", lambda: not world.custom.list_namespaced_custom_object(
        GROUP, VERSION, NS, "chutegateways")["items"])
    assert world.live_tunnels() == [] and world.records() == [] and world.state()["access_apps"] == {}
    counters = world.cf.counters
    assert counters["tunnels.delete"] == 3 and "tunnels.get" not in counters  # checked in a listing instead
    assert 1 <= counters["tunnels.list"] <= 3


def test_public_gateway_has_no_access_application(world: World) -> None:
    world.ready_config()
    world.service()
    world.gateway(access={"public": True})
    gateway = world.ready_gateway()
    assert world.state()["access_apps"] == {}
    assert world.condition(gateway, "AccessReady")["reason"] == "Public"
    assert "accessAppId" not in gateway["status"]


def test_switching_access_off_removes_the_application_its_claim_records(world: World) -> None:
    world.ready_config()
    world.service()
    world.gateway()
    before = world.ready_gateway()["status"]
    world.patch_gateway("blog", {"access": {"public": True}})
    gateway = wait_for("public", lambda: (g := world.get_gateway()) and world.condition(g, "AccessReady").get(
        "reason") == "Public" and g["status"].get("ready") and "accessAppId" not in g["status"] and g)
    assert world.state()["access_apps"] == {} and world.state()["access_policies"] == {}
    assert len(world.records("blog.example.com")) == 1 and world.condition(gateway)["reason"] == "Reconciled"
    reasons = [(t, r) for t, r, _ in world.events("blog")]
    assert ("Normal", "AccessApplicationRemoved") in reasons and ("Normal", "AccessPolicyRemoved") in reasons
    assert before["accessAppId"] not in json.dumps(gateway["status"])
    [claim] = world.core.list_namespaced_config_map("default", label_selector=(
        "chutes.troubleshat.com/claim-kind=hostname")).items
    assert claim.data["key"] == "blog.example.com" and "access_app" not in claim.data and "dns" in claim.data


def test_connector_ready_follows_the_deployment(world: World) -> None:
    world.ready_config()
    world.service()
    world.gateway()
    gateway = world.wait_reason("Pending")
    assert world.condition(gateway, "ConnectorReady")["status"] == "False"
    assert world.condition(gateway, "DNSReady")["status"] == "True"
    world.ready_gateway()


# --- resumable, idempotent ------------------------------------------------------------------------

STEPS = ["access.apps.create", "tunnels.config.put", "dns.batch", "tunnels.token"]


@pytest.mark.parametrize("failing", STEPS)
def test_operator_stopped_after_each_step_converges_without_duplicates(
        world: World, failing: str, monkeypatch: pytest.MonkeyPatch) -> None:
    short_cloudflare_retries(monkeypatch)  # a failed configuration write pauses between its attempts
    world.ready_config()
    world.service()
    world.cf.faults.fail(op=failing, status=503)
    world.gateway()
    world.wait_reason("CloudflareUnavailable")
    world.stop()
    world.cf.faults.clear()
    # The operator died before it recorded when to retry: forget kopf's retry schedule, keep our status.
    live = world.get_gateway()
    annotations = {k: None for k in live["metadata"].get("annotations", {})
                   if k.startswith(GROUP) and not k.endswith("last-handled-configuration")}
    world.custom.patch_namespaced_custom_object(GROUP, VERSION, NS, "chutegateways", "blog",
                                                {"metadata": {"annotations": annotations}})
    world.start()
    world.ready_gateway()
    state = world.state()
    assert len(world.live_tunnels()) == 1
    assert len(world.records("blog.example.com")) == 1
    assert len(state["access_apps"]) == 1 and len(state["access_policies"]) == 1


def test_an_app_created_with_its_policy_whose_answer_was_lost_is_found_again_not_duplicated(world: World) -> None:
    world.ready_config()
    world.service()
    world.cf.faults.drop_after_write(op="access.apps.create", count=1)  # created, the answer lost
    world.gateway()
    gateway = world.ready_gateway()
    state = world.state()
    [app] = state["access_apps"].values()
    [policy] = state["access_policies"].values()
    assert gateway["status"]["accessAppId"] == app["id"] and gateway["status"]["accessPolicyId"] == policy["id"]
    assert world.cf.counters["access.apps.create"] == 1 and "access.app_policies.create" not in world.cf.counters


# --- changes --------------------------------------------------------------------------------------


def test_new_hostname_publishes_it_and_removes_everything_of_the_old_one(world: World) -> None:
    world.ready_config()
    world.service()
    world.gateway()
    old = world.ready_gateway()["status"]
    world.patch_gateway("blog", {"hostname": "journal"})
    gateway = wait_for("new hostname", lambda: (g := world.get_gateway())["status"].get("hostname")
                       == "journal.example.com" and g["status"].get("ready") and g)
    assert world.records("blog.example.com") == [] and len(world.records("journal.example.com")) == 1
    assert [r.get("hostname") for r in world.ingress(old["tunnelId"])] == ["journal.example.com", None]
    assert world.apps_for("blog.example.com") == [] and len(world.apps_for("journal.example.com")) == 1
    assert gateway["status"]["accessAppId"] != old["accessAppId"]
    assert len(world.state()["access_apps"]) == 1 and len(world.state()["access_policies"]) == 1


def test_access_service_and_replica_changes_are_applied(world: World) -> None:
    world.ready_config()
    world.service()
    world.service("api")
    world.gateway()
    before = world.ready_gateway()["status"]
    world.patch_gateway("blog", {"access": {"allowedEmails": ["bob@example.org"]},
                                 "service": {"name": "api", "port": 9090, "scheme": "https"}, "replicas": 3})
    wait_for("scaled", lambda: world.apps.read_namespaced_deployment("chute-blog-cloudflared", NS).spec.replicas == 3)
    rules = wait_for("rule updated", lambda: (r := world.ingress(before["tunnelId"]))[0]["service"]
                     == f"https://api.{NS}.svc.cluster.local:9090" and r)
    assert rules[0]["hostname"] == "blog.example.com"
    policy = world.state()["access_policies"][before["accessPolicyId"]]
    assert policy["include"] == [{"email": {"email": "bob@example.org"}}]
    assert len(world.state()["access_policies"]) == 1


# --- deletion keeps foreign things ----------------------------------------------------------------


def test_delete_leaves_foreign_records_and_apps_in_the_zone_untouched(world: World) -> None:
    import asyncio

    import cloudflare as sdk

    async def foreign() -> None:
        client = sdk.AsyncCloudflare(api_token=world.cf.token, base_url=world.cf.base_url, max_retries=0)
        await client.dns.records.create(zone_id=world.zone, name="www.example.com", type="A", content="192.0.2.1",
                                        ttl=1, proxied=True)
        await client.zero_trust.access.applications.create(account_id=world.account, type="self_hosted",
                                                           domain="intranet.example.com", name="intranet")
        await client.close()

    asyncio.run(foreign())
    world.ready_config()
    world.service()
    world.gateway()
    world.ready_gateway()
    world.custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "chutegateways", "blog")
    wait_for("gateway gone", lambda: not world.custom.list_namespaced_custom_object(
        GROUP, VERSION, NS, "chutegateways")["items"])
    assert [r["name"] for r in world.records()] == ["www.example.com"]
    assert [a["name"] for a in world.state()["access_apps"].values()] == ["intranet"]


def test_config_deletion_waits_for_its_gateways(world: World) -> None:
    world.ready_config()
    world.service()
    world.gateway()
    world.ready_gateway()
    world.custom.delete_cluster_custom_object(GROUP, VERSION, "chuteconfigs", "default")
    config = wait_for("deletion blocked", lambda: (c := world.get_config()) and world.condition(
        c, "DeletionBlocked").get("status") == "True" and c)
    assert f"{NS}/blog" in world.condition(config, "DeletionBlocked")["message"]
    world.custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "chutegateways", "blog")
    wait_for("gateway gone and Cloudflare cleaned", lambda: not world.live_tunnels())
    wait_for("config gone", lambda: not world.custom.list_cluster_custom_object(
        GROUP, VERSION, "chuteconfigs")["items"],
             timeout=45)


def test_a_config_blocked_by_its_gateways_is_rechecked_after_a_minute_warned_once_and_woken_by_their_deletion(
    world: World
) -> None:
    world.ready_config()
    world.service()
    world.gateway()
    world.ready_gateway()
    world.custom.delete_cluster_custom_object(GROUP, VERSION, "chuteconfigs", "default")
    config = wait_for("the cleanup waiting", lambda: (c := world.get_config()) and world.condition(
        c, "DeletionBlocked").get("status") == "True" and "delayed" in c["metadata"]["annotations"].get(
            f"{GROUP}/cleanup", "") and c)
    progress = json.loads(config["metadata"]["annotations"][f"{GROUP}/cleanup"])
    asked = datetime.datetime.fromisoformat(progress["delayed"]) - datetime.datetime.now(datetime.UTC)
    assert asked >= datetime.timedelta(seconds=50), asked  # a person must act: no re-check every few seconds
    warnings = wait_for("the GatewaysRemain Warning", lambda: [
        m for t, r, m in world.events("default", "default") if (t, r) == ("Warning", "GatewaysRemain")])
    assert warnings == [f"still referenced by ChuteGateway {NS}/blog"]
    world.custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "chutegateways", "blog")
    wait_for("config gone well before the re-check", lambda: not world.custom.list_cluster_custom_object(
        GROUP, VERSION, "chuteconfigs")["items"], timeout=30)


# --- bad input and failures -----------------------------------------------------------------------


def assert_refused(world: World, reason: str, name: str = "blog") -> dict[str, Any]:
    gateway = world.wait_reason(reason, name)
    assert gateway["status"]["ready"] is False
    assert world.condition(gateway)["status"] == "False" and world.condition(gateway)["message"]
    wait_for(f"Warning Event {reason}", lambda: any(t == "Warning" and r == reason for t, r, _ in world.events(name)))
    return gateway


def test_missing_config_is_reported(world: World) -> None:
    world.service()
    world.gateway()
    assert_refused(world, "ConfigNotFound")
    assert world.writes() == []


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        (lambda w: None, "SecretNotFound"),
        (lambda w: w.token_secret(key="token"), "SecretKeyMissing"),
        (lambda w: w.token_secret(token="not-a-valid-token"), "CredentialsInvalid"),
    ],
    ids=["missing-secret", "wrong-key", "invalid-token"],
)
def test_credential_problems_are_reported_on_the_config_and_the_gateway(
    world: World, setup: Callable[[World], None], reason: str
) -> None:
    setup(world)
    world.config()
    config = wait_for(reason, lambda: (c := world.get_config()) and world.condition(c).get("reason") == reason and c)
    assert config["status"]["ready"] is False
    world.service()
    world.gateway()
    assert_refused(world, "ConfigNotReady")
    assert world.writes() == []
    assert "not-a-valid-token" not in json.dumps(world.get_config())


def test_hostname_outside_the_zone_is_refused(world: World) -> None:
    world.ready_config()
    world.service()
    world.cf.reset_log()
    world.gateway(hostname="blog.example.net")
    assert_refused(world, "HostnameOutsideZone")
    assert world.writes() == []


def test_hostname_held_by_a_foreign_record_is_refused_before_anything_is_created(world: World) -> None:
    import asyncio

    import cloudflare as sdk

    async def foreign() -> None:
        client = sdk.AsyncCloudflare(api_token=world.cf.token, base_url=world.cf.base_url, max_retries=0)
        await client.dns.records.create(zone_id=world.zone, name="blog.example.com", type="A", content="192.0.2.1",
                                        ttl=1, proxied=False)
        await client.close()

    asyncio.run(foreign())
    world.ready_config()
    world.service()
    before = copy.deepcopy(world.records("blog.example.com"))
    world.gateway()
    assert_refused(world, "HostnameConflict")
    assert world.records("blog.example.com") == before
    assert world.live_tunnels() == [] and world.state()["access_apps"] == {}


def test_hostname_held_by_a_foreign_access_app_is_refused_and_the_app_untouched(world: World) -> None:
    import asyncio

    import cloudflare as sdk

    async def foreign() -> None:
        client = sdk.AsyncCloudflare(api_token=world.cf.token, base_url=world.cf.base_url, max_retries=0)
        await client.zero_trust.access.applications.create(account_id=world.account, type="self_hosted",
                                                           domain="blog.example.com", name="someone-else")
        await client.close()

    asyncio.run(foreign())
    world.ready_config()
    world.service()
    before = copy.deepcopy(world.state()["access_apps"])
    world.gateway()
    assert_refused(world, "HostnameConflict")
    assert world.state()["access_apps"] == before
    assert world.records() == [] and "tunnels.config.put" not in world.writes()


def test_second_gateway_on_a_hostname_gets_a_conflict_and_the_first_keeps_it(world: World) -> None:
    world.ready_config()
    world.service()
    world.service(namespace="team-b")
    world.gateway()
    world.ready_gateway()
    world.gateway(name="blog", namespace="team-b")
    gateway = world.wait_reason("HostnameConflict", "blog", "team-b")
    assert f"{NS}/blog" in world.condition(gateway)["message"]
    [record] = world.records("blog.example.com")
    assert parse_marker(record["comment"]).source == f"ChuteGateway/{NS}/blog"  # type: ignore[union-attr]
    assert len(world.live_tunnels()) == 1


def test_missing_service_is_reported(world: World) -> None:
    world.ready_config()
    world.gateway()
    assert_refused(world, "ServiceNotFound")
    assert world.live_tunnels() == []


def test_an_unknown_annotation_key_is_refused_and_changes_nothing_published(world: World) -> None:
    """A misspelt ``chutes.troubleshat.com/adopt`` was ignored; now it is InvalidSpec naming the key, nothing is
    published for a new gateway, and a published one stays as it is until the key is fixed."""
    world.ready_config()
    world.service()
    typo = {"chutes.troubleshat.com/adpot": "true"}
    world.namespace(NS)
    world.custom.create_namespaced_custom_object(GROUP, VERSION, NS, "chutegateways", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ChuteGateway", "metadata": {"name": "new", "annotations": typo},
        "spec": {"configRef": "default", "hostname": "new", "service": {"name": "web", "port": 8080},
                 "access": {"public": True}}})
    message = "unknown annotation chutes.troubleshat.com/adpot (did you mean chutes.troubleshat.com/adopt?)"
    assert world.condition(world.wait_reason("InvalidSpec", "new"))["message"] == message
    wait_for("the InvalidSpec Warning Event", lambda: ("Warning", "InvalidSpec", message) in world.events("new"))
    assert not world.records("new.example.com") and not world.live_tunnels()

    world.gateway()
    before = world.ready_gateway()["status"]
    published = (world.records("blog.example.com"), world.apps_for("blog.example.com"))
    world.custom.patch_namespaced_custom_object(GROUP, VERSION, NS, "chutegateways", "blog",
                                                {"metadata": {"annotations": typo}})
    assert world.condition(world.wait_reason("InvalidSpec"))["message"] == message
    world.patch_gateway("blog", {"access": {"public": True}})  # not applied while the typo is there
    wait_for("the new generation handled", lambda: (g := world.get_gateway())["status"].get("observedGeneration")
             == g["metadata"]["generation"])
    assert (world.records("blog.example.com"), world.apps_for("blog.example.com")) == published
    assert world.condition(world.get_gateway())["reason"] == "InvalidSpec"

    world.custom.patch_namespaced_custom_object(GROUP, VERSION, NS, "chutegateways", "blog",
                                                {"metadata": {"annotations": {"chutes.troubleshat.com/adpot": None}}})
    wait_for("public", lambda: world.condition(world.get_gateway(), "AccessReady").get("reason") == "Public")
    assert world.get_gateway()["status"]["tunnelId"] == before["tunnelId"]


def test_gateway_without_access_rules_is_refused_unless_public(world: World) -> None:
    world.ready_config()
    world.service()
    world.gateway(access={"allowedEmails": []})
    assert_refused(world, "InvalidSpec")
    assert world.live_tunnels() == []


@pytest.mark.parametrize(("fault", "reason"), [("5xx", "CloudflareUnavailable"), ("429", "RateLimited")])
def test_cloudflare_failures_are_reported_and_retried_without_a_hot_loop(world: World, fault: str, reason: str) -> None:
    world.ready_config()
    world.service()
    if fault == "5xx":
        world.cf.faults.fail(op="tunnels.create", status=502)
    else:
        world.cf.faults.rate_limit(count=1000, retry_after=300)
    world.cf.reset_log()
    world.gateway()
    assert_refused(world, reason)
    calls = len(world.cf.requests)
    time.sleep(1.5)  # a fixed interval on purpose: nothing may happen in it
    assert len(world.cf.requests) == calls, "no retry before the backoff delay"
    assert world.live_tunnels() == []
