"""Annotated HTTPRoutes: the real operator (OperatorThread) against both emulators. The seed's examples
publish what they should; changes, mode switches and toggles leave no orphan; deletion and disabling clean
up (no finalizer); the resync repairs drift; secrets stay in their Secret."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from chutes.observability.metrics import HOSTNAMES, ORPHANS_REMOVED
from harness.httproutes import EXAMPLE_POLICIES, OPNS, P, World, home, wait_resyncs, world_fixture  # noqa: F401
from harness.waiting import wait_for

EXAMPLE_ROUTES = [("my-app", "my-app"), ("my-other-app", "my-other-app"), ("my-api", "my-api"),
                  ("my-other-api", "my-other-api"), ("internal", "internal-service")]
HTTPS = "https://traefik.traefik.svc.cluster.local:443"


def origin_request(hostname: str, tls_timeout: int = 10) -> dict[str, Any]:
    return {"httpHostHeader": hostname, "noTLSVerify": True, "keepAliveConnections": 100,
            "originServerName": hostname, "tlsTimeout": tls_timeout, "http2Origin": False}


def linked_policy_names(world: World, app: dict[str, Any]) -> list[str]:
    policies = {p["id"]: p["name"] for p in world.policies()}
    return [policies[link["id"]] for link in sorted(app["policy_links"], key=lambda x: x["precedence"])]


def test_the_seeds_examples_publish_the_expected_cloudflare_objects(world: World) -> None:
    for name in EXAMPLE_POLICIES:
        world.reusable_policy(name)
    world.apply_examples()
    world.start()
    for namespace, name in EXAMPLE_ROUTES:
        world.wait_ready(name, namespace)

    tunnel = f"{world.tunnel}.cfargotunnel.com"
    assert sorted(world.ingress(), key=lambda r: r.get("hostname", "~")) == [
        {"hostname": "api.example.com", "service": HTTPS, "originRequest": origin_request("api.example.com", 15)},
        {"hostname": "my-app.example.com", "service": HTTPS, "originRequest": origin_request("my-app.example.com")},
        {"hostname": "other-api.example.com", "service": HTTPS,
         "originRequest": origin_request("other-api.example.com")},
        {"hostname": "other-app.example.com", "service": HTTPS,
         "originRequest": origin_request("other-app.example.com")},
        {"service": "http_status:404"},
    ]
    records = {(r["name"], r["type"], r["content"], r["proxied"], r["ttl"]) for r in world.records()}
    assert records == {
        ("my-app.example.com", "CNAME", tunnel, True, 1), ("other-app.example.com", "CNAME", tunnel, True, 1),
        ("api.example.com", "CNAME", tunnel, True, 1), ("other-api.example.com", "CNAME", tunnel, True, 1),
        ("nas.example.com", "A", "192.168.1.50", False, 120),
    }
    apps = {app["domain"]: app for app in world.apps()}
    assert set(apps) == {"my-app.example.com", "other-app.example.com", "api.example.com", "other-api.example.com"}
    assert {d: (a["name"], linked_policy_names(world, a)) for d, a in apps.items()} == {
        "my-app.example.com": ("cfzt-my-app.example.com", ["MyIdentityPolicy"]),
        "other-app.example.com": ("cfzt-other-app.example.com", ["My ADAUTH Policy"]),
        "api.example.com": ("cfzt-api.example.com", ["MyServiceCredPolicy"]),
        "other-api.example.com": ("cfzt-other-api.example.com", ["My Service Token Policy"]),
    }
    api = apps["api.example.com"]
    assert (api["service_auth_401_redirect"], api["app_launcher_visible"], api["skip_interstitial"],
            api["same_site_cookie_attribute"], api["session_duration"]) == (True, False, True, "none", "24h")
    assert apps["my-app.example.com"]["auto_redirect_to_identity"] is True

    # Kubernetes side: the seed's state ConfigMap and result annotations; no finalizer on routes.
    state = world.state("my-app", "my-app")
    assert state is not None
    assert {k: state[k] for k in ("hostname", "tenant_name", "tunnel_id", "zone_id", "httproute_namespace",
                                  "httproute_name", "hostname_route_id")} == {
        "hostname": "my-app.example.com", "tenant_name": "prod", "tunnel_id": world.tunnel, "zone_id": world.zone,
        "httproute_namespace": "my-app", "httproute_name": "my-app", "hostname_route_id": world.tunnel}
    assert state["access_app_id"] == apps["my-app.example.com"]["id"] and len(state["annotation_hash"]) == 64
    assert world.state_labels("my-app", "my-app") == {
        "app.kubernetes.io/managed-by": "cfzt-operator", "cfzt.cloudflare.com/httproute-name": "my-app",
        "cfzt.cloudflare.com/httproute-namespace": "my-app", "cfzt.cloudflare.com/tenant": "prod"}
    annotations = world.annotations("my-app", "my-app")
    [cname] = world.records("my-app.example.com")
    assert annotations[P + "hostnameRouteId"] == world.tunnel and annotations[P + "cnameRecordId"] == cname["id"]
    assert annotations[P + "accessAppId"] == apps["my-app.example.com"]["id"]
    nas = world.annotations("internal-service", "internal")
    assert nas[P + "dnsRecordIp"] == "192.168.1.50" and P + "cnameRecordId" not in nas
    assert not world.get_route("my-app", "my-app")["metadata"].get("finalizers")
    assert ("Normal", "AccessApplicationReady", "Access application cfzt-my-app.example.com protects "
            "my-app.example.com") in world.events("my-app", "my-app")

    # Tenant and template status are written (the seed never did).
    status = wait_for("tenant status", lambda: (s := world.tenant_status("prod")).get("summary", {})
                      .get("managedHTTPRoutes") == 5 and s)
    assert status["conditions"][0]["type"] == "Ready" and status["conditions"][0]["status"] == "True"
    assert status["summary"] == {"managedHTTPRoutes": 5, "hostnameRoutes": 4, "accessApplications": 4,
                                 "accessPolicies": 0, "serviceTokens": 0}
    assert wait_for("template status", lambda: world.template_status("base-prod").get("usedByHTTPRoutes")) == [
        "internal/internal-service", "my-api/my-api", "my-app/my-app", "my-other-api/my-other-api",
        "my-other-app/my-other-app"]


def test_access_is_created_before_routing_and_removed_after_it(world: World) -> None:
    world.reusable_policy("Team")
    home(world)
    world.route("web", "web.example.com", **{"access.enabled": "true", "access.existingPolicyNames": "Team",
                                             "access.allowEmails": "alice@example.org"})
    world.wait_ready("web")
    writes = world.ops(writes=True)
    assert writes.index("access.apps.create") < writes.index("tunnels.config.put") < writes.index("dns.batch")
    assert "access.app_policies.create" not in writes  # created with its app, in the same call
    [app] = world.apps("web.example.com")
    assert linked_policy_names(world, app) == ["Team", "cfzt-web.example.com-allow"]
    allow = next(p for p in world.policies() if p["name"] == "cfzt-web.example.com-allow")
    assert allow["include"] == [{"email": {"email": "alice@example.org"}}]
    assert world.state("web")["access_policy_ids"] == allow["id"]  # type: ignore[index]

    world.cf.reset_log()
    world.delete_route("web")
    wait_for("cleanup", lambda: world.state("web") is None)
    writes = world.ops(writes=True)
    assert writes.index("dns.batch") < writes.index("access.apps.delete")
    assert writes.index("tunnels.config.put") < writes.index("access.apps.delete")
    assert world.records("web.example.com") == [] and world.rule("web.example.com") is None
    assert world.apps() == [] and [p["name"] for p in world.policies()] == ["Team"]


def test_service_token_secret_lives_only_in_its_secret(world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    home(world, resync=1.0)
    world.route("api", "api.example.com", **{"serviceToken.enabled": "true", "access.enabled": "true"})
    world.wait_ready("api")
    secret = wait_for("token Secret", lambda: world.secret("cfzt-svctoken-api"))
    [token] = world.tokens("cfzt-api.example.com")
    assert secret["CF_ACCESS_CLIENT_ID"] == token["client_id"] and len(secret["CF_ACCESS_CLIENT_SECRET"]) >= 32
    value = secret["CF_ACCESS_CLIENT_SECRET"]
    annotations = world.annotations("api")
    assert annotations[P + "serviceTokenId"] == token["id"]
    assert annotations[P + "serviceTokenSecretName"] == "cfzt-svctoken-api"

    # The Secret is lost: the token gets a new secret (Cloudflare shows one only once), no new token.
    world.core.delete_namespaced_secret("cfzt-svctoken-api", "apps")
    renewed = wait_for("Secret re-issued", lambda: world.secret("cfzt-svctoken-api"))
    assert renewed["CF_ACCESS_CLIENT_SECRET"] != value and len(world.tokens()) == 1
    wait_resyncs(caplog)  # nothing more is rotated
    assert world.secret("cfzt-svctoken-api") == renewed

    secrets = {value, renewed["CF_ACCESS_CLIENT_SECRET"]}
    logged = "\n".join(record.getMessage() for record in caplog.records)
    events = json.dumps(world.events("api"))
    state = json.dumps(world.state("api"))
    for secret_value in secrets:
        assert secret_value not in logged and secret_value not in events and secret_value not in state
        assert secret_value not in json.dumps(world.annotations("api"))
        assert secret_value not in json.dumps(world.tenant_status())

    world.annotate("api", **{"serviceToken.enabled": "false"})
    wait_for("token removed", lambda: world.tokens() == [] and world.secret("cfzt-svctoken-api") is None
             and P + "serviceTokenId" not in world.annotations("api"))


def test_routes_with_service_tokens_cost_one_listing_of_the_tokens_not_one_query_each(world: World) -> None:
    routes = [f"t{i}" for i in range(8)]
    home(world, resync=4.0)  # a pass of every route takes well under the interval: the view is listed once in it
    for name in routes:
        world.route(name, f"{name}.example.com", **{"serviceToken.enabled": "true"})
    for name in routes:
        world.wait_ready(name)
    wait_for("every token Secret", lambda: all(world.secret(f"cfzt-svctoken-{name}") for name in routes))
    assert sorted(t["name"] for t in world.tokens()) == sorted(f"cfzt-{name}.example.com" for name in routes)

    def token_calls(since: int) -> list[str]:
        return [op for op in world.ops()[since:] if op.startswith("service_tokens.")]

    def next_pass(after: str) -> str:
        """The lastSyncTime of the tenant's next resync pass (written once every route was re-checked)."""
        return str(wait_for("a resync pass", lambda: (t := world.tenant_status().get("lastSyncTime")) != after
                            and t, timeout=30.0))

    # One resync pass of every route, its view of the tokens older than the interval: one listing for them all.
    synced = next_pass(str(world.tenant_status().get("lastSyncTime")))
    since = len(world.ops())
    next_pass(synced)
    assert token_calls(since) == ["service_tokens.list"]

    since = len(world.ops())
    for name in routes:
        world.delete_route(name)
    wait_for("tokens deleted", lambda: world.tokens() == [] and all(world.state(name) is None for name in routes))
    calls = token_calls(since)  # checked on the view's copies, learned since the ledger's proof: never read
    assert calls.count("service_tokens.delete") == len(routes) and calls.count("service_tokens.list") <= 1
    assert "service_tokens.get" not in calls


def test_resync_restores_a_deleted_cname_and_otherwise_writes_nothing(
        world: World, caplog: pytest.LogCaptureFixture) -> None:
    home(world, resync=0.5)
    world.route("web", "web.example.com")
    world.wait_ready("web")
    [record] = world.records("web.example.com")
    wait_resyncs(caplog)  # what publishing wrote is written
    world.cf.reset_log()
    wait_resyncs(caplog)
    assert world.ops(writes=True) == []
    assert "tunnels.config.get" in world.ops() and "dns.list" in world.ops()

    world.sdk.dns.records.delete(record["id"], zone_id=world.zone)
    restored = wait_for("CNAME restored", lambda: world.records("web.example.com"))
    assert restored[0]["content"] == record["content"] and restored[0]["proxied"]
    wait_for("state follows", lambda: world.state("web")["cname_record_id"] == restored[0]["id"])  # type: ignore[index]


def test_template_change_re_reconciles_every_route_using_it(world: World) -> None:
    base = {"originService": {"url": HTTPS, "originTLS": {"noTLSVerify": True, "tlsTimeout": 10}}}
    home(world, base=base)
    world.template("protected", {"accessApplication": {"enabled": True, "sessionDuration": "8h"}})
    world.route("a", "a.example.com", template="protected")
    world.route("b", "b.example.com")
    world.wait_ready("a")
    world.wait_ready("b")
    assert world.apps("a.example.com")[0]["session_duration"] == "8h"

    world.patch_template("base-home", {"originService": {"originTLS": {"tlsTimeout": 20}}})
    wait_for("rules updated", lambda: all((world.rule(h) or {}).get("originRequest", {}).get("tlsTimeout") == 20
                                          for h in ("a.example.com", "b.example.com")))
    world.patch_template("protected", {"accessApplication": {"enabled": False}})
    wait_for("Access removed", lambda: world.apps() == [] and P + "accessAppId" not in world.annotations("a"))
    assert world.records("a.example.com") and world.rule("a.example.com")  # still published, now public


def test_mode_switches_and_hostname_change_leave_no_orphan(world: World) -> None:
    home(world)
    # proxied: Access protects only what Cloudflare proxies (an unproxied record with Access is refused)
    world.template("dnsonly", {"dnsOnly": {"enabled": True, "proxied": True, "ttl": 120}})
    world.route("web", "web.example.com", **{"access.enabled": "true", "serviceToken.enabled": "true"})
    world.wait_ready("web")

    world.annotate("web", template="dnsonly", dnsIp="198.51.100.5")
    wait_for("DNS-only", lambda: [(r["type"], r["content"]) for r in world.records("web.example.com")] == [
        ("A", "198.51.100.5")] and world.rule("web.example.com") is None)
    annotations = wait_for("annotations", lambda: (a := world.annotations("web")).get(P + "dnsRecordIp") and a)
    assert annotations[P + "dnsRecordIp"] == "198.51.100.5" and P + "cnameRecordId" not in annotations
    state = world.state("web")
    assert state is not None and "dns_record_id" in state
    assert "cname_record_id" not in state and "hostname_route_id" not in state

    world.annotate("web", dnsIp="2001:db8::5")
    wait_for("AAAA", lambda: [r["type"] for r in world.records("web.example.com")] == ["AAAA"])

    world.annotate("web", template=None, dnsIp=None)
    wait_for("tunnel again", lambda: [r["type"] for r in world.records("web.example.com")] == ["CNAME"]
             and world.rule("web.example.com") is not None)

    world.annotate("web", hostname="www.example.com")
    wait_for("moved", lambda: world.records("www.example.com") and world.apps("www.example.com")
             and world.tokens("cfzt-www.example.com"))
    world.wait_ready("web")
    assert world.records("web.example.com") == [] and world.rule("web.example.com") is None
    assert world.apps("web.example.com") == [] and world.tokens("cfzt-web.example.com") == []
    assert world.secret("cfzt-svctoken-web") is not None and world.state("web")["hostname"] == "www.example.com"  # type: ignore[index]

    world.annotate("web", **{"access.enabled": "false", "serviceToken.enabled": "false"})
    wait_for("toggled off", lambda: world.apps() == [] and world.tokens() == []
             and world.secret("cfzt-svctoken-web") is None)
    assert [r["name"] for r in world.records()] == ["www.example.com"]


def test_allow_rules_removed_remove_the_allow_policy(world: World) -> None:
    home(world)
    world.route("web", "web.example.com", **{"access.enabled": "true", "access.allowEmails": "a@example.org"})
    world.wait_ready("web")
    assert [p["name"] for p in world.policies()] == ["cfzt-web.example.com-allow"]
    world.annotate("web", **{"access.allowEmails": None})
    wait_for("allow policy removed", lambda: world.policies() == [] and P + "accessPolicyIds"
             not in world.annotations("web"))
    assert len(world.apps()) == 1


def test_disabled_route_is_cleaned_up_and_its_annotations_cleared(world: World) -> None:
    home(world)
    world.route("web", "web.example.com", **{"access.enabled": "true"})
    world.wait_ready("web")
    world.annotate("web", enabled="false")
    inputs = ("enabled", "tenant", "hostname", "access.enabled")
    wait_for("cleanup", lambda: world.state("web") is None and world.records() == [] and world.apps() == []
             and not [k for k in world.annotations("web") if k.startswith(P) and k[len(P):] not in inputs])
    assert world.rule("web.example.com") is None
    assert "web.example.com" not in HOSTNAMES.hostnames("httproutes")
    world.annotate("web", enabled="true")
    world.wait_ready("web")
    assert world.records("web.example.com") and world.apps("web.example.com")
    assert "web.example.com" in HOSTNAMES.hostnames("httproutes")


def test_routes_deleted_while_the_operator_was_down_are_swept(world: World) -> None:
    home(world, sweep=0.5)
    world.route("web", "web.example.com", **{"serviceToken.enabled": "true"})
    world.wait_ready("web")
    world.stop()
    world.delete_route("web")
    world.start(sweep=0.5)
    wait_for("swept", lambda: world.state("web") is None and world.records() == [] and world.tokens() == [])
    assert world.rule("web.example.com") is None and world.secret("cfzt-svctoken-web") is None
    assert "web.example.com" not in HOSTNAMES.hostnames("httproutes")
    assert ORPHANS_REMOVED.labels(front_door="httproutes", kind="httproute")._value.get() >= 1
    wait_for("tenant count", lambda: world.tenant_status().get("summary", {}).get("managedHTTPRoutes") == 0)


def deletions_per_sweep_pass(cf: Any) -> list[int]:
    """Cloudflare deletions (DNS records in batches or one by one, tunnel rules: configuration PUTs, Access
    applications, tokens) before the first sweep pass, then during each pass and up to the next (a pass over a
    tenant naming no zone begins by listing the account's zones)."""
    passes = [0]
    for r in cf.requests:
        if r.op == "zones.list" and "name" not in r.query and r.status == 200:
            passes.append(0)
        elif r.op == "dns.batch" and r.status == 200:
            passes[-1] += len((r.body or {}).get("deletes") or [])
        elif (r.method == "DELETE" or r.op == "tunnels.config.put") and 200 <= r.status < 300:
            passes[-1] += 1
    return passes


def test_routes_the_events_missed_are_removed_within_the_one_deletion_cap(world: World) -> None:
    """The state ConfigMaps of routes deleted while no operator watched are evidence for the one orphan sweep,
    not a second, uncapped one: with a cap of 1 each pass deletes one Cloudflare object and says what waits
    (SweepCapReached on the tenant); a route's state and token Secret go once its objects are gone."""
    home(world)
    world.route("a", "a.example.com")
    world.route("b", "b.example.com", **{"serviceToken.enabled": "true"})
    world.wait_ready("a")
    world.wait_ready("b")
    world.stop()
    world.delete_route("a")
    world.delete_route("b")
    world.cf.reset_log()

    world.start(sweep=1.0, sweep_max_deletions=1)
    # Rules first, then records (a's first), then b's token: a is done at the third pass, b at the fifth.
    wait_for("a's state removed", lambda: world.state("a") is None, timeout=30)
    assert world.records("a.example.com") == [] and world.rule("a.example.com") is None
    assert world.state("b") is not None and world.tokens("cfzt-b.example.com")  # b's objects wait: so does its state
    wait_for("b swept", lambda: world.state("b") is None and world.secret("cfzt-svctoken-b") is None, timeout=30)
    assert world.records() == [] and world.tokens() == [] and world.rule("b.example.com") is None
    assert world.claims() == {}
    deletions = deletions_per_sweep_pass(world.cf)
    assert sum(deletions) == 5 and max(deletions) == 1, deletions

    def warnings() -> list[str]:
        return [m for t, r, m in world.events("home", OPNS) if (t, r) == ("Warning", "SweepCapReached")]

    found = wait_for("four SweepCapReached Warnings", lambda: len(warnings()) >= 4 and warnings())
    assert all("deleted 1 orphaned Cloudflare object(s)" in m and "(sweep_max_deletions=1)" in m for m in found)
    assert sorted(m.partition("; ")[2].partition(" more")[0] for m in found) == ["1", "2", "3", "4"], found


def test_a_route_left_by_the_seed_is_adopted_and_deletes_without_hanging(world: World) -> None:
    """The seed left: an unmarked CNAME, its state ConfigMap, and kopf's default finalizer on the route."""
    world.token_secret()
    world.tenant()
    world.namespace(OPNS)
    created = world.sdk.dns.records.create(zone_id=world.zone, name="old.example.com", type="CNAME",
                                           content=f"{world.tunnel}.cfargotunnel.com", proxied=True, ttl=1)
    assert created is not None
    world.core.create_namespaced_config_map(OPNS, {"metadata": {"name": "cfzt-apps-old", "labels": {
        "app.kubernetes.io/managed-by": "cfzt-operator", "cfzt.cloudflare.com/httproute-name": "old",
        "cfzt.cloudflare.com/httproute-namespace": "apps", "cfzt.cloudflare.com/tenant": "home"}}, "data": {
        "annotation_hash": "seed", "hostname": "old.example.com", "tenant_name": "home", "tunnel_id": world.tunnel,
        "zone_id": world.zone, "hostname_route_id": world.tunnel, "cname_record_id": created.id,
        "httproute_namespace": "apps", "httproute_name": "old"}})
    world.route("old", "old.example.com")
    world.custom.patch_namespaced_custom_object("gateway.networking.k8s.io", "v1", "apps", "httproutes", "old", {
        "metadata": {"finalizers": ["kopf.zalando.org/KopfFinalizerMarker"]}})
    world.start()
    world.wait_ready("old")
    [record] = world.records("old.example.com")
    assert record["id"] == created.id and "src=HTTPRoute/apps/old" in record["comment"]

    world.delete_route("old")
    wait_for("route gone", lambda: not world.route_exists("old"))
    assert world.records() == [] and world.rule("old.example.com") is None and world.state("old") is None


def test_a_seed_route_deleted_while_no_operator_watched_is_swept_from_its_state(world: World) -> None:
    """What the seed published for a route deleted before the switch is named only by its state ConfigMap: the
    sweep records it in a claim (the state's record id, the name the route would use) and removes it; a hand-made
    record beside it stays."""
    world.token_secret()
    world.tenant()
    world.namespace(OPNS)
    seed = world.sdk.dns.records.create(zone_id=world.zone, name="old.example.com", type="CNAME",
                                        content=f"{world.tunnel}.cfargotunnel.com", proxied=True, ttl=1)
    hand_made = world.sdk.dns.records.create(zone_id=world.zone, name="hand.example.com", type="CNAME",
                                             content=f"{world.tunnel}.cfargotunnel.com", proxied=True, ttl=1)
    assert seed is not None and hand_made is not None
    world.core.create_namespaced_config_map(OPNS, {"metadata": {"name": "cfzt-apps-old", "labels": {
        "app.kubernetes.io/managed-by": "cfzt-operator", "cfzt.cloudflare.com/httproute-name": "old",
        "cfzt.cloudflare.com/httproute-namespace": "apps", "cfzt.cloudflare.com/tenant": "home"}}, "data": {
        "annotation_hash": "seed", "hostname": "old.example.com", "tenant_name": "home", "tunnel_id": world.tunnel,
        "zone_id": world.zone, "cname_record_id": seed.id, "httproute_namespace": "apps", "httproute_name": "old"}})
    world.start(sweep=0.5)
    wait_for("swept", lambda: world.state("old") is None and world.records("old.example.com") == [], timeout=30)
    assert [r["id"] for r in world.records()] == [hand_made.id] and world.claims() == {}


def test_a_route_published_before_the_ledger_is_bootstrapped_and_deletes_cleanly(
        world: World, caplog: pytest.LogCaptureFixture) -> None:
    """An upgrade from a version without claims: the state ConfigMap names the route's app, token, rule and
    record, exactly as the route would make them; they are recorded in a new claim, not re-created."""
    home(world)
    world.route("web", "web.example.com", **{"access.enabled": "true", "access.allowEmails": "a@example.org",
                                             "serviceToken.enabled": "true"})
    world.wait_ready("web")
    published = (world.apps("web.example.com"), world.tokens("cfzt-web.example.com"), world.records("web.example.com"),
                 world.rule("web.example.com"))
    world.stop()
    for item in world.core.list_namespaced_config_map(OPNS, label_selector="chutes.troubleshat.com/claim-kind").items:
        world.core.delete_namespaced_config_map(item.metadata.name, OPNS)  # no ledger yet

    world.start(resync=0.5)
    wait_for("claim bootstrapped", lambda: set(world.claims().get("web.example.com", {})) >= {
        "source", "access_app", "service_token", "tunnel_rule", "dns"})
    wait_resyncs(caplog)  # nothing conflicts, nothing is re-created
    assert world.ready("web")["status"] == "True"
    assert (world.apps("web.example.com"), world.tokens("cfzt-web.example.com"), world.records("web.example.com"),
            world.rule("web.example.com")) == published
    claim = world.claims()["web.example.com"]
    assert claim["access_app"]["id"] == published[0][0]["id"] and claim["service_token"]["id"] == published[1][0]["id"]

    world.delete_route("web")
    wait_for("cleanup", lambda: world.state("web") is None)
    assert world.apps() == [] and world.tokens() == [] and world.records() == []
    assert world.rule("web.example.com") is None and world.claims() == {}


def test_a_tenant_change_tears_the_hostname_down_with_the_old_tenant_and_publishes_it_with_the_new(
        world: World) -> None:
    home(world)
    other_tunnel = world.make_tunnel("other")
    world.tenant("other", tunnelId=other_tunnel)
    world.route("web", "web.example.com", **{"access.enabled": "true", "serviceToken.enabled": "true"})
    world.wait_ready("web")
    [old_app] = world.apps("web.example.com")

    world.annotate("web", tenant="other")
    wait_for("moved", lambda: world.rule("web.example.com", other_tunnel) is not None
             and world.rule("web.example.com") is None
             and [r["content"] for r in world.records("web.example.com")] == [f"{other_tunnel}.cfargotunnel.com"])
    world.wait_ready("web")
    [app] = world.apps("web.example.com")
    assert app["id"] != old_app["id"] and len(world.tokens("cfzt-web.example.com")) == 1
    assert world.state("web")["tenant_name"] == "other"  # type: ignore[index]
    claim = world.claims()["web.example.com"]
    assert claim["access_app"]["id"] == app["id"] and claim["tunnel_rule"]["tunnel"] == other_tunnel


def test_tenant_tunnel_change_moves_every_route(world: World) -> None:
    home(world)
    world.route("a", "a.example.com")
    world.route("b", "b.example.com", tunnelId=world.tunnel)  # pinned by annotation: stays
    world.wait_ready("a")
    world.wait_ready("b")
    old, new = world.tunnel, world.make_tunnel("home-2")
    world.custom.patch_namespaced_custom_object("cfzt.cloudflare.com", "v1alpha1", OPNS, "cloudflarezerotrusttenants",
                                                "home", {"spec": {"tunnelId": new, "allowedTunnelIds": [old]}})
    wait_for("moved", lambda: world.rule("a.example.com", new) is not None and world.rule("a.example.com", old) is None
             and world.records("a.example.com")[0]["content"] == f"{new}.cfargotunnel.com")
    assert world.rule("b.example.com", old) is not None and world.rule("b.example.com", new) is None
    wait_for("state", lambda: world.state("a")["hostname_route_id"] == new)  # type: ignore[index]


def test_tenant_and_templates_of_the_routes_namespace_come_first(world: World) -> None:
    home(world, base={"originService": {"url": "https://shared:443"}})
    local_tunnel = world.make_tunnel("team")
    world.token_secret(namespace="team")
    world.tenant(namespace="team", tunnelId=local_tunnel)
    world.template("base-home", {"originService": {"url": "https://team-edge:443"}}, namespace="team")
    world.route("web", "team.example.com", namespace="team")
    world.route("web", "apps.example.com")
    world.wait_ready("web", "team")
    world.wait_ready("web")
    assert world.rule("team.example.com", local_tunnel)["service"] == "https://team-edge:443"  # type: ignore[index]
    assert world.rule("apps.example.com")["service"] == "https://shared:443"  # type: ignore[index]
    assert world.state("web", "team")["tunnel_id"] == local_tunnel  # type: ignore[index]
