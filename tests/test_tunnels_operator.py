"""Tunnel / ClusterTunnel / TunnelBinding (adyanth's API): the real operator against both emulators.

adyanth manifests of both API generations are applied unchanged with the real `kubernetes` client; the outcome is
read from Cloudflare (state and request log) and Kubernetes (status, conditions, Events, the cloudflared
Deployment)."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
import yaml

from chutes.cloudflare_core.ownership import parse as parse_marker
from harness.tunnels import GROUP, NS, OPERATOR_NS, World, world_fixture  # noqa: F401  (world_fixture: a fixture)
from harness.waiting import wait_for

SHARED = "chutes.troubleshat.com/services-from-namespaces"


def test_v1alpha2_tunnel_gets_its_tunnel_and_a_hardened_cloudflared(world: World) -> None:
    world.api_secret()
    patch = ("spec: {replicas: 2, template: {spec: {containers: [{name: cloudflared, "
             "image: cloudflare/cloudflared:2025.4.0}]}}}")
    world.tunnel(deployPatch=patch)
    tunnel = world.ready_tunnel()
    [live] = world.live_tunnels()
    status = tunnel["status"]
    assert (status["tunnelId"], status["tunnelName"], status["accountId"], status["zoneId"]) == (
        live["id"], "web-tunnel", world.account, world.zone)
    assert "cfargotunnel.com/finalizer" in tunnel["metadata"]["finalizers"]
    deployment = world.deployment("web-cloudflared")
    assert deployment.spec.replicas == 2
    pod = deployment.spec.template.spec
    [container] = pod.containers
    assert container.image == "cloudflare/cloudflared:2025.4.0"
    assert container.env[0].name == "TUNNEL_TOKEN" and container.env[0].value_from.secret_key_ref.name == \
        "web-tunnel-token"
    assert pod.security_context.run_as_non_root and not pod.automount_service_account_token
    assert container.security_context.read_only_root_filesystem
    assert not container.security_context.allow_privilege_escalation
    assert deployment.metadata.owner_references[0].kind == "Tunnel"
    secret = world.core.read_namespaced_secret("web-tunnel-token", NS)
    assert set(secret.data) == {"token"}


def test_v1alpha1_manifest_is_served_and_read_at_both_versions(world: World) -> None:
    world.api_secret()
    world.tunnel(version="v1alpha1", size=3, image="cloudflare/cloudflared:2024.8.3",
                 nodeSelectors={"kubernetes.io/os": "linux"},
                 tolerations=[{"key": "edge", "operator": "Exists", "effect": "NoSchedule"}])
    world.ready_tunnel()
    old = world.get_tunnel(version="v1alpha1")
    assert old["apiVersion"].endswith("/v1alpha1") and old["spec"]["size"] == 3
    pod = world.deployment("web-cloudflared")
    assert pod.spec.replicas == 3
    assert pod.spec.template.spec.node_selector == {"kubernetes.io/os": "linux"}
    assert pod.spec.template.spec.tolerations[0].key == "edge"
    assert pod.spec.template.spec.containers[0].image == "cloudflare/cloudflared:2024.8.3"


def _subjects() -> list[dict[str, Any]]:
    return [{"name": "whoami-1"},
            {"name": "whoami-2", "spec": {"fqdn": "who.example.com", "protocol": "https", "noTlsVerify": True}},
            {"name": "git"}]


def test_binding_routes_several_subjects_without_restarting_cloudflared(world: World) -> None:
    world.api_secret()
    world.tunnel()
    tunnel_id = world.ready_tunnel()["status"]["tunnelId"]
    generation = world.deployment("web-cloudflared").metadata.generation
    world.service("whoami-1", 8080)
    world.service("whoami-2", 443)
    world.service("git", 22)
    world.binding("whoami", _subjects())
    binding = world.ready_binding("whoami")
    assert binding["status"]["hostnames"] == "whoami-1.example.com,who.example.com,git.example.com"
    assert binding["status"]["services"] == [
        {"hostname": "whoami-1.example.com", "target": f"http://whoami-1.{NS}.svc:8080"},
        {"hostname": "who.example.com", "target": f"https://whoami-2.{NS}.svc:443"},
        {"hostname": "git.example.com", "target": f"ssh://git.{NS}.svc:22"}]
    rules = {r.get("hostname"): r for r in world.ingress(tunnel_id)}
    assert rules["who.example.com"]["originRequest"] == {"noTLSVerify": True}
    assert rules["git.example.com"]["service"] == f"ssh://git.{NS}.svc:22"
    assert world.ingress(tunnel_id)[-1] == {"service": "http_status:404"}
    for fqdn in ("whoami-1.example.com", "who.example.com", "git.example.com"):
        [record] = world.records(fqdn)
        assert (record["type"], record["content"], record["proxied"]) == ("CNAME", f"{tunnel_id}.cfargotunnel.com",
                                                                          True)
        marker = parse_marker(record["comment"])
        assert marker is not None and marker.source == f"TunnelBinding/{NS}/whoami"
    assert world.deployment("web-cloudflared").metadata.generation == generation  # no restart

    # A subject removed: its rule and record go (adyanth leaves them), the others stay.
    world.patch_binding("whoami", {"subjects": _subjects()[:2]})
    world.ready_binding("whoami", hostnames="whoami-1.example.com,who.example.com")
    wait_for("git's rule gone", lambda: "git.example.com" not in {r.get("hostname") for r in world.ingress(tunnel_id)})
    assert world.records("git.example.com") == []
    assert len(world.records("who.example.com")) == 1

    # The binding deleted: every rule and record it made goes, then the binding.
    world.custom.delete_namespaced_custom_object("networking.cfargotunnel.com", "v1alpha1", NS, "tunnelbindings",
                                                 "whoami")
    wait_for("binding gone", lambda: world.get_binding("whoami") is None)
    assert world.ingress(tunnel_id) == [{"service": "http_status:404"}]
    assert world.records("who.example.com") == [] and world.records("whoami-1.example.com") == []
    assert world.deployment("web-cloudflared").metadata.generation == generation


def _ops(world: World, since: int = 0) -> list[str]:
    """The Cloudflare writes that succeeded (from request `since` of the log on)."""
    return [r.op or "" for r in world.cf.requests[since:] if r.method != "GET" and 200 <= r.status < 300]


def test_cluster_tunnel_serves_bindings_and_its_deletion_removes_routes_dns_cloudflared_then_the_tunnel(
        world: World) -> None:
    world.api_secret(namespace=OPERATOR_NS)  # read from the cluster resource namespace
    world.tunnel("edge", cluster=True, newTunnel={"name": "k3s-cluster-tunnel"})
    tunnel = world.ready_tunnel("edge", cluster=True)
    tunnel_id = tunnel["status"]["tunnelId"]
    assert world.deployment("clustertunnel-edge-cloudflared", OPERATOR_NS).spec.replicas == 1
    world.service("whoami-1", 80)
    world.binding("whoami", [{"name": "whoami-1"}], tunnel="edge", kind="ClusterTunnel")
    world.ready_binding("whoami")
    assert [r.get("hostname") for r in world.ingress(tunnel_id)] == ["whoami-1.example.com", None]
    assert len(world.records("whoami-1.example.com")) == 1

    world.cf.reset_log()
    world.custom.delete_cluster_custom_object(GROUP, "v1alpha2", "clustertunnels", "edge")
    wait_for("tunnel deleted", lambda: not world.live_tunnels())
    ops = _ops(world)
    assert ops.index("tunnels.config.put") < ops.index("tunnels.delete")
    assert ops.index("dns.batch") < ops.index("tunnels.delete")
    assert world.records("whoami-1.example.com") == []
    wait_for("ClusterTunnel gone", lambda: not world.custom.list_cluster_custom_object(
        GROUP, "v1alpha2", "clustertunnels")["items"])
    assert world._read_deployment("clustertunnel-edge-cloudflared", OPERATOR_NS) is None


def test_a_cluster_tunnels_binding_cannot_publish_another_namespaces_services_through_its_target(
        world: World) -> None:
    world.api_secret(namespace=OPERATOR_NS)
    world.tunnel("edge", cluster=True, newTunnel={"name": "shared"})
    tunnel_id = world.ready_tunnel("edge", cluster=True)["status"]["tunnelId"]
    world.cf.reset_log()
    for name, target in (("steal", "http://vault.kube-system.svc:8200"), ("metadata", "http://169.254.169.254")):
        world.binding(name, [{"name": "x", "spec": {"fqdn": f"{name}.example.com", "target": target}}],
                      tunnel="edge", kind="ClusterTunnel")
        bad = world.wait_reason("InvalidSpec", lambda name=name: world.get_binding(name))
        assert "reaches its own namespace's Services only" in world.condition(bad)["message"]
    assert _ops(world) == [] and world.ingress(tunnel_id) == [{"service": "http_status:404"}]

    world.binding("own", [{"name": "x", "spec": {"fqdn": "own.example.com", "target": f"http://web.{NS}.svc:8080"}}],
                  tunnel="edge", kind="ClusterTunnel")  # its own namespace's Service: fine
    world.ready_binding("own")
    assert [r.get("service") for r in world.ingress(tunnel_id)] == [f"http://web.{NS}.svc:8080", "http_status:404"]


def test_the_installation_lists_the_other_hosts_a_cluster_tunnels_bindings_may_target(kube: Any,
                                                                                        cloudflare: Any) -> None:
    world = World(kube, cloudflare)
    try:
        world.start(shared_tunnel_targets="traefik.traefik.svc")  # as CHUTES_SHARED_TUNNEL_TARGETS sets it
        world.api_secret(namespace=OPERATOR_NS)
        world.tunnel("edge", cluster=True, newTunnel={"name": "shared"})
        tunnel_id = world.ready_tunnel("edge", cluster=True)["status"]["tunnelId"]
        world.binding("ingress", [{"name": "x", "spec": {"fqdn": "in.example.com",
                                                         "target": "https://traefik.traefik.svc:443"}}],
                      tunnel="edge", kind="ClusterTunnel")
        world.ready_binding("ingress")
        assert [r.get("service") for r in world.ingress(tunnel_id)] == ["https://traefik.traefik.svc:443",
                                                                         "http_status:404"]
        world.binding("other", [{"name": "y", "spec": {"fqdn": "other.example.com",
                                                       "target": "https://traefik.kube-system.svc:443"}}],
                      tunnel="edge", kind="ClusterTunnel")
        world.wait_reason("InvalidSpec", lambda: world.get_binding("other"))
    finally:
        world.close()


def test_scale_change_and_a_tampered_token_are_applied_without_touching_the_tunnel(world: World) -> None:
    world.api_secret()
    world.tunnel(version="v1alpha1", size=1)
    world.ready_tunnel()
    token = world.core.read_namespaced_secret("web-tunnel-token", NS).data["token"]
    world.core.patch_namespaced_secret("web-tunnel-token", NS, {"stringData": {"token": "tampered"}})
    world.cf.reset_log()
    world.custom.patch_namespaced_custom_object(GROUP, "v1alpha1", NS, "tunnels", "web", {"spec": {"size": 2}})
    wait_for("scaled", lambda: world.deployment("web-cloudflared").spec.replicas == 2)
    wait_for("token repaired", lambda: world.core.read_namespaced_secret("web-tunnel-token", NS).data["token"] == token)
    assert len(world.live_tunnels()) == 1 and "tunnels.create" not in _ops(world)


def test_existing_tunnel_keeps_foreign_rules_and_is_never_deleted(world: World) -> None:
    import asyncio

    from chutes.cloudflare_core import CloudflareCore, IngressRule, Recorded

    async def make() -> str:
        async with CloudflareCore(world.cf.token, base_url=world.cf.base_url) as core:
            tunnel = await core.ensure_tunnel(world.account, "hand-made", Recorded(since="2000-01-01T00:00:00Z"))
            await core.set_ingress_rule(world.account, tunnel.id, IngressRule(
                hostname="legacy.example.com", service="http://legacy:80"), lambda _: False)
            return tunnel.id

    existing = asyncio.run(make())
    world.api_secret()
    world.tunnel(existingTunnel={"name": "hand-made"}, noTlsVerify=True, originCaPool="origin-ca")
    assert world.ready_tunnel()["status"]["tunnelId"] == existing
    world.service("whoami-1", 80)
    world.binding("whoami", [{"name": "whoami-1"}])
    world.ready_binding("whoami")
    hostnames = [r.get("hostname") for r in world.ingress(existing)]
    assert "legacy.example.com" in hostnames and "whoami-1.example.com" in hostnames
    # noTlsVerify and originCaPool go on our rules, not the co-owned top level (someone else's)
    ours = next(r for r in world.ingress(existing) if r.get("hostname") == "whoami-1.example.com")
    assert ours["originRequest"] == {"noTLSVerify": True, "caPool": "/etc/cloudflared/certs/tls.crt"}
    assert "originRequest" not in world.state()["tunnel_configs"][existing]["config"]
    assert "cfargotunnel.com/finalizer" not in world.get_tunnel()["metadata"].get("finalizers", [])

    world.custom.delete_namespaced_custom_object(GROUP, "v1alpha1", NS, "tunnelbindings", "whoami")
    wait_for("binding gone", lambda: world.get_binding("whoami") is None)
    world.custom.delete_namespaced_custom_object(GROUP, "v1alpha2", NS, "tunnels", "web")
    wait_for("Tunnel gone", lambda: not world.custom.list_namespaced_custom_object(GROUP, "v1alpha2", NS,
                                                                                    "tunnels")["items"])
    assert [t["id"] for t in world.live_tunnels()] == [existing]
    assert [r.get("hostname") for r in world.ingress(existing)] == ["legacy.example.com", None]


def test_access_annotations_put_an_application_in_front_before_the_rule_and_remove_it_after(world: World) -> None:
    world.api_secret()
    tunnel_id = (world.tunnel(), world.ready_tunnel())[1]["status"]["tunnelId"]
    world.service("admin", 8080)
    world.cf.reset_log()
    world.binding("admin", [{"name": "admin"}], annotations={
        "chutes.troubleshat.com/access-allowed-emails": "alice@example.org, bob@example.org",
        "chutes.troubleshat.com/access-allowed-domains": "corp.example"})
    world.ready_binding("admin")
    ops = _ops(world)
    assert ops.index("access.apps.create") < ops.index("tunnels.config.put") < ops.index("dns.batch")
    [app] = world.apps_for("admin.example.com")
    [policy] = [p for p in world.state()["access_policies"].values() if p["app_id"] == app["id"]]
    assert policy["decision"] == "allow" and {"email_domain": {"domain": "corp.example"}} in policy["include"]
    assert len(policy["include"]) == 3

    world.cf.reset_log()
    world.custom.delete_namespaced_custom_object(GROUP, "v1alpha1", NS, "tunnelbindings", "admin")
    wait_for("binding gone", lambda: world.get_binding("admin") is None)
    ops = _ops(world)
    assert ops.index("tunnels.config.put") < ops.index("access.apps.delete")
    assert ops.index("dns.batch") < ops.index("access.apps.delete")
    assert world.apps_for("admin.example.com") == [] and world.ingress(tunnel_id) == [{"service": "http_status:404"}]


# --- bad input: a condition and a Warning Event, nothing else touched ------------------------------------


BAD_TUNNELS = {
    "both": ({"existingTunnel": {"name": "x"}, "newTunnel": {"name": "y"}}, {}, "InvalidSpec"),
    "neither": ({"existingTunnel": {}}, {}, "InvalidSpec"),
    "secret missing": ({"cloudflare": {"domain": "example.com", "secret": "nope", "accountId": "ACCOUNT"}}, {},
                       "SecretNotFound"),
    "key missing": ({}, {"OTHER": "x"}, "SecretKeyMissing"),
    "domain not a zone": ({"cloudflare": {"domain": "example.org", "secret": "cloudflare-secrets",
                                          "accountId": "ACCOUNT"}}, {}, "InvalidSpec"),
    "unknown account name": ({"cloudflare": {"domain": "example.com", "secret": "cloudflare-secrets",
                                             "accountName": "Nobody's"}}, {}, "InvalidSpec"),
    "existing tunnel missing": ({"existingTunnel": {"id": "6f1e0000-0000-4000-8000-000000000000"}}, {},
                                "TunnelNotFound"),
    "deployPatch not YAML": ({"deployPatch": "spec: {replicas: [1"}, {}, "InvalidSpec"),
    "deployPatch unhardens the pod": ({"deployPatch": "spec: {template: {spec: {hostNetwork: true}}}"}, {},
                                      "InvalidSpec"),
}


@pytest.mark.parametrize("case", sorted(BAD_TUNNELS))
def test_bad_tunnel_input_is_a_condition_and_a_warning_and_touches_nothing(world: World, case: str) -> None:
    spec, secret, reason = BAD_TUNNELS[case]
    world.api_secret(**secret)
    if "cloudflare" in spec:
        spec["cloudflare"] = {k: world.account if v == "ACCOUNT" else v for k, v in spec["cloudflare"].items()}
    world.tunnel(**spec)
    tunnel = world.wait_reason(reason, world.get_tunnel)
    assert world.condition(tunnel)["status"] == "False"
    wait_for("a Warning", lambda: [e for e in world.events("web", NS) if e[:2] == ("Warning", reason)])
    assert _ops(world) == [] and world.live_tunnels() == []
    assert world._read_deployment("web-cloudflared", NS) is None


def _published_tunnel(world: World) -> str:
    world.api_secret()
    world.tunnel()
    return str(world.ready_tunnel()["status"]["tunnelId"])


BAD_BINDINGS = {
    "missing tunnel": ({"tunnel": "nope"}, [{"name": "ok"}], "TunnelNotFound"),
    "missing Service": ({}, [{"name": "ok"}, {"name": "ghost"}], "ServiceNotFound"),
    "Service without ports": ({}, [{"name": "ok"}, {"name": "portless"}], "InvalidSpec"),
    "FQDN outside the zone": ({}, [{"name": "ok"}, {"name": "ok2", "spec": {"fqdn": "ok.example.net"}}],
                              "HostnameOutsideZone"),
    "FQDN held by a foreign record": ({}, [{"name": "ok"}, {"name": "ok2", "spec": {"fqdn": "hand.example.com"}}],
                                      "HostnameConflict"),
    "invalid protocol": ({}, [{"name": "ok"}, {"name": "ok2", "spec": {"protocol": "gopher"}}], "InvalidSpec"),
}


def _foreign_record(world: World, name: str) -> None:
    """A record someone made by hand (no marker of ours)."""
    import httpx

    response = httpx.post(f"{world.cf.base_url}/zones/{world.zone}/dns_records", headers={
        "Authorization": f"Bearer {world.cf.token}"}, json={"type": "A", "name": name, "content": "192.0.2.7"})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("case", sorted(BAD_BINDINGS))
def test_bad_binding_input_is_a_condition_and_a_warning_and_publishes_no_subject(world: World, case: str) -> None:
    ref, subjects, reason = BAD_BINDINGS[case]
    tunnel_id = _published_tunnel(world)
    world.service("ok", 80)
    world.service("ok2", 80)
    world.service("portless", ports=[])
    _foreign_record(world, "hand.example.com")
    world.cf.reset_log()
    world.binding("bad", subjects, **ref)
    binding = world.wait_reason(reason, lambda: world.get_binding("bad"))
    assert world.condition(binding)["status"] == "False"
    wait_for("a Warning", lambda: [e for e in world.events("bad", NS) if e[:2] == ("Warning", reason)])
    assert _ops(world) == []
    assert world.ingress(tunnel_id) in ([], [{"service": "http_status:404"}]) and world.records("ok.example.com") == []


# --- restart in the middle --------------------------------------------------------------------------------


def test_a_restart_in_the_middle_of_a_binding_converges(world: World) -> None:
    tunnel_id = _published_tunnel(world)
    for name in ("a", "b", "c"):
        world.service(name, 80)
    world.cf.faults.fail(op="dns.batch", status=503, count=100)  # the rules are written, the records are not
    world.binding("three", [{"name": "a"}, {"name": "b"}, {"name": "c"}])
    wait_for("rules written", lambda: len(world.ingress(tunnel_id)) == 4)
    world.stop()
    world.cf.faults.clear()
    world.start()
    binding = world.ready_binding("three")
    assert binding["status"]["hostnames"] == "a.example.com,b.example.com,c.example.com"
    rules = world.ingress(tunnel_id)
    assert sorted(r["hostname"] for r in rules[:-1]) == ["a.example.com", "b.example.com", "c.example.com"]
    assert rules[-1] == {"service": "http_status:404"}
    for fqdn in ("a.example.com", "b.example.com", "c.example.com"):
        assert len(world.records(fqdn)) == 1


# --- a namespace-restricted operator ------------------------------------------------------------------------


def test_a_namespace_restricted_operator_serves_and_removes_a_tunnel_and_its_binding(kube: Any,
                                                                                     cloudflare: Any) -> None:
    world = World(kube, cloudflare)
    try:
        world.namespace(NS)
        world.start(namespaces=(NS,))
        tunnel_id = _published_tunnel(world)
        world.service("whoami-1", 80)
        world.binding("whoami", [{"name": "whoami-1"}])
        world.ready_binding("whoami")
        _annotated_service(world, "blog", 80, cr="web")
        wait_for("the annotated Service routed", lambda: len(world.records("blog.example.com")) == 1)
        assert len(world.records("whoami-1.example.com")) == 1
        world.custom.delete_namespaced_custom_object(GROUP, "v1alpha2", NS, "tunnels", "web")
        wait_for("tunnel deleted", lambda: not world.live_tunnels())
        assert world.records("whoami-1.example.com") == [] and world.records("blog.example.com") == []
        assert world.ingress(tunnel_id) in ([], [{"service": "http_status:404"}])
        world.custom.delete_namespaced_custom_object(GROUP, "v1alpha1", NS, "tunnelbindings", "whoami")
        wait_for("binding gone", lambda: world.get_binding("whoami") is None)
    finally:
        world.close()


def test_resync_repairs_a_deleted_record_and_follows_a_service_port_change(kube: Any, cloudflare: Any) -> None:
    import httpx

    world = World(kube, cloudflare)
    try:
        world.start(resync_interval=1.0)
        tunnel_id = _published_tunnel(world)
        world.service("whoami-1", 80)
        world.binding("whoami", [{"name": "whoami-1"}])
        world.ready_binding("whoami")
        [record] = world.records("whoami-1.example.com")
        httpx.delete(f"{world.cf.base_url}/zones/{world.zone}/dns_records/{record['id']}",
                     headers={"Authorization": f"Bearer {world.cf.token}"}).raise_for_status()
        world.core.patch_namespaced_service("whoami-1", NS, {"spec": {"ports": [{"port": 8080, "protocol": "TCP"}]}})
        wait_for("record repaired", lambda: len(world.records("whoami-1.example.com")) == 1)
        wait_for("port followed", lambda: world.ingress(tunnel_id)[0]["service"] == f"http://whoami-1.{NS}.svc:8080")
    finally:
        world.close()


# --- taking over from adyanth's operator ------------------------------------------------------------------------


def _adyanth_records(world: World, fqdn: str, tunnel_id: str, txt_tunnel: str) -> str:
    """The CNAME and `_managed.` TXT adyanth's operator makes for `fqdn`; the CNAME's id."""
    import json

    import httpx

    headers = {"Authorization": f"Bearer {world.cf.token}"}
    url = f"{world.cf.base_url}/zones/{world.zone}/dns_records"
    cname = httpx.post(url, headers=headers, json={
        "type": "CNAME", "name": fqdn, "content": f"{tunnel_id}.cfargotunnel.com", "ttl": 1, "proxied": True,
        "comment": "Managed by cloudflare-operator"}).json()["result"]
    httpx.post(url, headers=headers, json={
        "type": "TXT", "name": f"_managed.{fqdn}", "ttl": 1, "proxied": False,
        "comment": "Managed by cloudflare-operator",
        "content": json.dumps({"DnsId": cname["id"], "TunnelName": "web-tunnel", "TunnelId": txt_tunnel},
                              separators=(",", ":"))}).raise_for_status()
    return str(cname["id"])


def test_an_adyanth_cname_for_the_same_tunnel_is_taken_over_and_its_txt_removed(world: World) -> None:
    tunnel_id = _published_tunnel(world)
    world.service("whoami-1", 80)
    cname_id = _adyanth_records(world, "whoami-1.example.com", tunnel_id, tunnel_id)
    world.binding("whoami", [{"name": "whoami-1"}])
    world.ready_binding("whoami")
    [record] = world.records("whoami-1.example.com")
    marker = parse_marker(record["comment"])
    assert record["id"] == cname_id and marker is not None and marker.source == f"TunnelBinding/{NS}/whoami"
    wait_for("adyanth's TXT removed", lambda: world.records("_managed.whoami-1.example.com") == [])
    world.custom.delete_namespaced_custom_object(GROUP, "v1alpha1", NS, "tunnelbindings", "whoami")
    wait_for("binding gone", lambda: world.get_binding("whoami") is None)
    assert world.records("whoami-1.example.com") == []


def test_an_adyanth_cname_of_another_tunnel_is_a_conflict(world: World) -> None:
    tunnel_id = _published_tunnel(world)
    world.service("whoami-1", 80)
    other = "0f0f0f0f-0000-4000-8000-000000000000"
    _adyanth_records(world, "whoami-1.example.com", other, other)
    world.binding("whoami", [{"name": "whoami-1"}])
    world.wait_reason("HostnameConflict", lambda: world.get_binding("whoami"))
    assert len(world.records("whoami-1.example.com")) == 1 and len(world.records("_managed.whoami-1.example.com")) == 1
    assert world.ingress(tunnel_id) in ([], [{"service": "http_status:404"}])


# --- annotated Services (the blog-era form) ---------------------------------------------------------------------


def _annotated_service(world: World, name: str, port: int, **annotations: str) -> None:
    world.namespace(NS)
    world.core.create_namespaced_service(NS, {"metadata": {
        "name": name, "labels": {"app": name, "tier": "web"},
        "annotations": {f"tunnels.networking.cfargotunnel.com/{k}": v for k, v in annotations.items()}},
        "spec": {"ports": [{"port": port}], "selector": {"app": name}}})


def test_a_blog_era_annotated_service_is_published_and_withdrawn(world: World) -> None:
    tunnel_id = _published_tunnel(world)
    world.cf.reset_log()
    _annotated_service(world, "whoami-test", 80, cr="web")
    _annotated_service(world, "ssh", 2222, cr="web", fqdn="shell.example.com")
    wait_for("routed", lambda: len(world.ingress(tunnel_id)) == 3 and len(world.records()) >= 2)
    rules = {r.get("hostname"): r.get("service") for r in world.ingress(tunnel_id)}
    assert rules["whoami-test.example.com"] == f"http://whoami-test.{NS}.svc:80"
    assert rules["shell.example.com"] == f"tcp://ssh.{NS}.svc:2222"  # v0.2.0's default: other ports are tcp
    [record] = world.records("whoami-test.example.com")
    marker = parse_marker(record["comment"])
    assert marker is not None and marker.source == f"Service/{NS}/whoami-test"
    service = world.core.read_namespaced_service("whoami-test", NS)
    assert service.metadata.labels == {"app": "whoami-test", "tier": "web"}  # never replaced (adyanth did)
    assert not service.metadata.finalizers  # level-based cleanup: a stuck operator never blocks its deletion
    assert world.deployment("web-cloudflared").metadata.generation == 1

    # Its annotations removed: withdrawn. Deleted: withdrawn.
    world.core.patch_namespaced_service("ssh", NS, {"metadata": {"annotations": {
        "tunnels.networking.cfargotunnel.com/cr": None, "tunnels.networking.cfargotunnel.com/fqdn": None}}})
    wait_for("ssh withdrawn", lambda: world.records("shell.example.com") == [])
    world.core.delete_namespaced_service("whoami-test", NS, _preload_content=False)
    wait_for("whoami withdrawn", lambda: world.records("whoami-test.example.com") == [])
    assert world.ingress(tunnel_id) == [{"service": "http_status:404"}]


def test_an_annotated_service_cannot_borrow_another_namespaces_tunnel_unless_it_is_shared(world: World) -> None:
    """adyanth's `ns` annotation let any namespace's Service use any Tunnel (its API token, its zone): here a Tunnel
    serves other namespaces only when its annotation lists them, and a Service refused loses what it published."""
    tunnel_id = _published_tunnel(world)
    intruder = "intruder"
    world.namespace(intruder)
    world.cf.reset_log()
    for name, where in (("borrow", NS), ("anywhere", "false")):  # `ns: false`: any namespace
        world.core.create_namespaced_service(intruder, {"metadata": {"name": name, "annotations": {
            "tunnels.networking.cfargotunnel.com/cr": "web", "tunnels.networking.cfargotunnel.com/ns": where,
            "tunnels.networking.cfargotunnel.com/fqdn": f"{name}.example.com"}}, "spec": {"ports": [{"port": 80}]}})
    for name in ("borrow", "anywhere"):
        wait_for(f"{name} refused", lambda name=name: [
            e for e in world.events(name, intruder) if e[:2] == ("Warning", "TunnelNotShared")
            and f"Tunnel {NS}/web does not serve Services of namespace {intruder}" in e[2]])
    assert _ops(world) == [] and world.ingress(tunnel_id) == [{"service": "http_status:404"}]

    # The Tunnel's owner shares it: a Service of that namespace is published (a refused one is tried again).
    shared = SHARED
    world.custom.patch_namespaced_custom_object(GROUP, "v1alpha2", NS, "tunnels", "web", {
        "metadata": {"annotations": {shared: f"other, {intruder}"}}})
    world.core.delete_namespaced_service("anywhere", intruder, _preload_content=False)
    world.core.delete_namespaced_service("borrow", intruder, _preload_content=False)
    wait_for("gone", lambda: not world.core.list_namespaced_service(intruder).items)
    world.core.create_namespaced_service(intruder, {"metadata": {"name": "borrow", "annotations": {
        "tunnels.networking.cfargotunnel.com/cr": "web", "tunnels.networking.cfargotunnel.com/ns": NS,
        "tunnels.networking.cfargotunnel.com/fqdn": "borrow.example.com"}}, "spec": {"ports": [{"port": 80}]}})
    wait_for("published", lambda: len(world.records("borrow.example.com")) == 1)
    assert [r.get("hostname") for r in world.ingress(tunnel_id)][:1] == ["borrow.example.com"]

    # ... and stops sharing it: what the Service published is withdrawn.
    world.custom.patch_namespaced_custom_object(GROUP, "v1alpha2", NS, "tunnels", "web", {
        "metadata": {"annotations": {shared: None}}})
    world.core.patch_namespaced_service("borrow", intruder, {"metadata": {"labels": {"touched": "2"}}})
    wait_for("withdrawn", lambda: world.records("borrow.example.com") == []
             and world.ingress(tunnel_id) == [{"service": "http_status:404"}])


def test_an_annotated_service_naming_no_tunnel_is_a_warning(world: World) -> None:
    _published_tunnel(world)
    world.cf.reset_log()
    _annotated_service(world, "lost", 80, cr="nope")
    wait_for("a Warning", lambda: [e for e in world.events("lost", NS) if e[:2] == ("Warning", "TunnelNotFound")])
    assert _ops(world) == []


def test_a_hostname_outside_the_hostname_rules_is_refused(kube: Any, cloudflare: Any, tmp_path: Any) -> None:
    import yaml

    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"rules": [{"namespaces": [NS], "hostnames": ["*.apps.example.com"]}]}))
    world = World(kube, cloudflare)
    try:
        world.start(hostname_rules=str(rules))
        tunnel_id = _published_tunnel(world)
        world.service("ok", 80)
        world.cf.reset_log()
        world.binding("bad", [{"name": "ok", "spec": {"fqdn": "ok.apps.example.com"}}, {"name": "ok"}])
        world.wait_reason("HostnameNotAuthorized", lambda: world.get_binding("bad"))
        assert _ops(world) == [] and world.ingress(tunnel_id) in ([], [{"service": "http_status:404"}])
        world.binding("good", [{"name": "ok", "spec": {"fqdn": "ok.apps.example.com"}}])
        world.ready_binding("good")
    finally:
        world.close()


# --- a locally configured existingTunnel: adyanth's ConfigMap --------------------------------------------------


TUNNEL_SECRET = "c2VjcmV0LW9mLXR1bm5lbA=="  # a locally configured tunnel's secret (base64, as Cloudflare gives it)


def _config(world: World) -> dict[str, Any]:
    text = world.config_yaml()
    assert text is not None
    return dict(yaml.safe_load(text))


def _checksum(world: World) -> str:
    return str((world.deployment("web-cloudflared").spec.template.metadata.annotations or {}).get(
        "cfargotunnel.com/checksum"))


def _config_writes(world: World) -> list[str]:
    return [r.op or "" for r in world.cf.requests if r.op == "tunnels.config.put"]


@pytest.mark.parametrize("version", ["v1alpha1", "v1alpha2"])
def test_a_locally_configured_existing_tunnel_is_served_through_its_configmap_and_never_converted(
        world: World, version: str) -> None:
    tunnel_id = world.local_tunnel("local-one")
    world.api_secret(CLOUDFLARE_API_TOKEN=world.cf.token, CLOUDFLARE_TUNNEL_CREDENTIAL_SECRET=TUNNEL_SECRET)
    world.tunnel(version=version, existingTunnel={"name": "local-one"}, fallbackTarget="http_status:418",
                 noTlsVerify=True)
    tunnel = world.ready_tunnel()
    assert tunnel["status"]["tunnelId"] == tunnel_id and "ConfigMap" in world.condition(tunnel)["message"]
    assert _config(world) == {"tunnel": tunnel_id, "ingress": [{"service": "http_status:418"}],
                              "originRequest": {"noTLSVerify": True},
                              "credentials-file": "/etc/cloudflared/creds/credentials.json",
                              "metrics": "0.0.0.0:2000", "no-autoupdate": True}
    deployment = world.deployment("web-cloudflared")
    [container] = deployment.spec.template.spec.containers
    assert container.args[-3:] == ["--config", "/etc/cloudflared/config/config.yaml", "run"]
    assert not container.env  # no tunnel token: the credentials file
    volumes = {v.name: v for v in deployment.spec.template.spec.volumes}
    assert volumes["config"].config_map.name == "web" and volumes["creds"].secret.secret_name == \
        "web-tunnel-credentials"
    assert _checksum(world) == hashlib.md5(str(world.config_yaml()).encode()).hexdigest()
    secret = world.core.read_namespaced_secret("web-tunnel-credentials", NS)
    assert json.loads(base64.b64decode(secret.data["credentials.json"])) == {
        "AccountTag": world.account, "TunnelID": tunnel_id, "TunnelName": "local-one",
        "TunnelSecret": TUNNEL_SECRET}

    # The user's own keys in config.yaml are theirs: kept by every regeneration.
    edited = {**_config(world), "warp-routing": {"enabled": True}, "originRequest": {"connectTimeout": "10s"}}
    world.core.patch_namespaced_config_map("web", NS, {"data": {"config.yaml": yaml.safe_dump(edited)}})

    # A binding with two subjects: both rules in the ConfigMap (cloudflared restarts: the checksum changes).
    before, mark = _checksum(world), len(world.cf.requests)
    world.service("whoami-1", 8080)
    world.service("whoami-2", 443)
    world.binding("whoami", _subjects()[:2], annotations={"chutes.troubleshat.com/access-allowed-emails":
                                                            "ops@example.com"})
    world.ready_binding("whoami")
    ops = _ops(world, since=mark)
    assert ops.index("access.apps.create") < ops.index("dns.batch")  # Access first, as for a remote tunnel
    config = _config(world)
    assert config["ingress"] == [
        {"hostname": "who.example.com", "service": f"https://whoami-2.{NS}.svc:443",
         "originRequest": {"noTLSVerify": True}},
        {"hostname": "whoami-1.example.com", "service": f"http://whoami-1.{NS}.svc:8080"},
        {"service": "http_status:418"}]
    assert config["warp-routing"] == {"enabled": True} and config["originRequest"] == {"connectTimeout": "10s"}
    wait_for("restarted", lambda: _checksum(world) == hashlib.md5(str(world.config_yaml()).encode()).hexdigest())
    assert _checksum(world) != before
    for fqdn in ("whoami-1.example.com", "who.example.com"):
        [record] = world.records(fqdn)
        assert (record["type"], record["content"]) == ("CNAME", f"{tunnel_id}.cfargotunnel.com")
        assert len(world.apps_for(fqdn)) == 1  # Access in front, as for a remote tunnel

    # One subject removed: its rule leaves the ConfigMap, then its record and Access application go.
    before, mark = _checksum(world), len(world.cf.requests)
    world.patch_binding("whoami", {"subjects": _subjects()[:1]})
    world.ready_binding("whoami", hostnames="whoami-1.example.com")
    wait_for("who's rule gone", lambda: [r.get("hostname") for r in _config(world)["ingress"]] == [
        "whoami-1.example.com", None])
    wait_for("who's Access gone", lambda: world.apps_for("who.example.com") == [])
    assert world.records("who.example.com") == []
    ops = _ops(world, since=mark)
    assert ops.index("dns.batch") < ops.index("access.apps.delete")
    wait_for("restarted", lambda: _checksum(world) != before)
    assert _config(world)["warp-routing"] == {"enabled": True}

    # Never converted to remote management: no configuration was ever written to Cloudflare.
    assert _config_writes(world) == []
    assert not (world.state()["tunnel_configs"].get(tunnel_id) or {}).get("config")

    # The Tunnel deleted: the rules leave with its ConfigMap, the records go, the tunnel stays.
    world.custom.delete_namespaced_custom_object(GROUP, version, NS, "tunnels", "web")
    wait_for("Tunnel gone", lambda: not world.custom.list_namespaced_custom_object(GROUP, "v1alpha2", NS,
                                                                                    "tunnels")["items"])
    assert world.config_yaml() is None and world._read_deployment("web-cloudflared", NS) is None
    assert world.records("whoami-1.example.com") == []
    assert [t["id"] for t in world.live_tunnels()] == [tunnel_id]
    assert _config_writes(world) == []


def test_a_local_tunnels_credentials_file_is_copied_and_missing_credentials_touch_nothing(world: World) -> None:
    tunnel_id = world.local_tunnel("local-one")
    world.api_secret()  # the API token only
    world.tunnel(existingTunnel={"id": tunnel_id})
    tunnel = world.wait_reason("SecretKeyMissing", world.get_tunnel)
    assert "CLOUDFLARE_TUNNEL_CREDENTIAL_FILE" in world.condition(tunnel)["message"]
    wait_for("a Warning", lambda: [e for e in world.events("web", NS) if e[:2] == ("Warning", "SecretKeyMissing")])
    assert world.config_yaml() is None and world._read_deployment("web-cloudflared", NS) is None

    # The file under the key name spec.cloudflare gives it: copied verbatim.
    file = json.dumps({"AccountTag": world.account, "TunnelID": tunnel_id, "TunnelSecret": "czNjcjN0"})
    world.core.patch_namespaced_secret("cloudflare-secrets", NS, {"stringData": {"TUNNEL_FILE": file}})
    world.custom.delete_namespaced_custom_object(GROUP, "v1alpha2", NS, "tunnels", "web")
    wait_for("Tunnel gone", lambda: not world.custom.list_namespaced_custom_object(GROUP, "v1alpha2", NS,
                                                                                    "tunnels")["items"])
    world.tunnel(existingTunnel={"id": tunnel_id},
                 cloudflare=world.cloudflare(CLOUDFLARE_TUNNEL_CREDENTIAL_FILE="TUNNEL_FILE"))
    world.ready_tunnel()
    secret = world.core.read_namespaced_secret("web-tunnel-credentials", NS)
    assert base64.b64decode(secret.data["credentials.json"]).decode() == file
    assert _config(world)["tunnel"] == tunnel_id and _config_writes(world) == []


def test_local_tunnels_of_one_name_are_kept_apart_by_kind_and_namespace(world: World) -> None:
    cluster_id, namespaced_id = world.local_tunnel("one"), world.local_tunnel("two")
    for namespace in (OPERATOR_NS, NS):
        world.api_secret(namespace=namespace, CLOUDFLARE_API_TOKEN=world.cf.token,
                         CLOUDFLARE_TUNNEL_CREDENTIAL_SECRET=TUNNEL_SECRET)
    world.tunnel("edge", cluster=True, existingTunnel={"id": cluster_id})
    world.tunnel("edge", existingTunnel={"id": namespaced_id})
    world.ready_tunnel("edge", cluster=True)
    world.ready_tunnel("edge")
    world.service("whoami-1", 80)
    world.service("whoami-2", 80)
    world.binding("a", [{"name": "whoami-1"}], tunnel="edge", kind="ClusterTunnel")
    world.binding("b", [{"name": "whoami-2"}], tunnel="edge")
    world.ready_binding("a")
    world.ready_binding("b")

    def hosts(namespace: str) -> tuple[str, list[str | None]]:
        config = yaml.safe_load(str(world.config_yaml("edge", namespace)))
        return config["tunnel"], [rule.get("hostname") for rule in config["ingress"]]

    # adyanth would merge both bindings into both (same tunnel name): each ConfigMap has its own only.
    assert hosts(OPERATOR_NS) == (cluster_id, ["whoami-1.example.com", None])
    assert hosts(NS) == (namespaced_id, ["whoami-2.example.com", None])
    annotations = world.deployment("clustertunnel-edge-cloudflared", OPERATOR_NS).spec.template.metadata.annotations
    assert annotations["cfargotunnel.com/checksum"] == hashlib.md5(
        str(world.config_yaml("edge", OPERATOR_NS)).encode()).hexdigest()
    assert world.records("whoami-1.example.com")[0]["content"] == f"{cluster_id}.cfargotunnel.com"
    assert _config_writes(world) == []


def test_adyanths_configmap_for_the_same_tunnel_is_taken_over_and_a_foreign_one_is_left_alone(
        kube: Any, cloudflare: Any) -> None:
    world = World(kube, cloudflare)
    try:
        tunnel_id = world.local_tunnel("local-one")
        world.api_secret(CLOUDFLARE_API_TOKEN=world.cf.token, CLOUDFLARE_TUNNEL_CREDENTIAL_SECRET=TUNNEL_SECRET)
        made = world.tunnel(version="v1alpha1", existingTunnel={"id": tunnel_id})
        adyanths = {"tunnel": tunnel_id, "ingress": [{"hostname": "blog.example.com", "service": "tcp://blog:80"},
                                                      {"service": "http_status:404"}],
                    "credentials-file": "/etc/cloudflared/creds/credentials.json", "metrics": "0.0.0.0:2000",
                    "no-autoupdate": True}
        world.core.create_namespaced_config_map(NS, {"metadata": {
            "name": "web", "labels": {"cfargotunnel.com/app": "cloudflared", "cfargotunnel.com/tunnel": "web"},
            "ownerReferences": [{"apiVersion": f"{GROUP}/v1alpha1", "kind": "Tunnel", "name": "web",
                                 "uid": made["metadata"]["uid"], "controller": True}]},
            "data": {"config.yaml": yaml.safe_dump(adyanths)}})
        world.tunnel("other", existingTunnel={"id": tunnel_id})
        foreign = {"config.yaml": "tunnel: someone-elses\n"}
        world.core.create_namespaced_config_map(NS, {"metadata": {"name": "other"}, "data": foreign})
        world.start()

        world.ready_tunnel()
        labels = world.core.read_namespaced_config_map("web", NS).metadata.labels
        assert labels["app.kubernetes.io/managed-by"] == "chutes-operator"
        # The ingress is the door's now (adyanth's rule goes until the blog-era Service publishes it again).
        assert _config(world)["ingress"] == [{"service": "http_status:404"}]
        _annotated_service(world, "blog", 80, cr="web")
        wait_for("blog routed", lambda: [r.get("hostname") for r in _config(world)["ingress"]] == [
            "blog.example.com", None])
        assert _config(world)["ingress"][0]["service"] == f"http://blog.{NS}.svc:80"
        [record] = wait_for("blog's CNAME", lambda: world.records("blog.example.com"))  # after the rule
        assert record["content"] == f"{tunnel_id}.cfargotunnel.com"

        other = world.wait_reason("ObjectNotOurs", lambda: world.get_tunnel("other"))
        assert "ConfigMap apps/other" in world.condition(other)["message"]
        assert world.core.read_namespaced_config_map("other", NS).data == foreign
        assert world._read_deployment("other-cloudflared", NS) is None

        # The Service deleted (once kopf marked it handled): its rule leaves the ConfigMap, its record goes.
        wait_for("handled", lambda: "chutes.troubleshat.com/last-handled-configuration" in (
            world.core.read_namespaced_service("blog", NS).metadata.annotations or {}))
        world.core.delete_namespaced_service("blog", NS, _preload_content=False)
        wait_for("blog gone", lambda: _config(world)["ingress"] == [{"service": "http_status:404"}])
        wait_for("record gone", lambda: world.records("blog.example.com") == [])
        assert _config_writes(world) == []
    finally:
        world.close()


def test_a_remote_existing_tunnels_catch_all_is_kept_unless_fallback_target_asks(world: World) -> None:
    import asyncio

    from chutes.cloudflare_core import CloudflareCore, IngressRule, Recorded

    async def make() -> str:
        async with CloudflareCore(world.cf.token, base_url=world.cf.base_url) as core:
            tunnel = await core.ensure_tunnel(world.account, "hand-made", Recorded(since="2000-01-01T00:00:00Z"))
            await core.set_ingress_rule(world.account, tunnel.id, IngressRule(
                hostname="legacy.example.com", service="http://legacy:80"), lambda _: False)
            await core.set_tunnel_defaults(world.account, tunnel.id, "http://default-backend:80",
                                           {"connectTimeout": 5})
            return tunnel.id

    existing = asyncio.run(make())
    world.api_secret()
    world.tunnel(existingTunnel={"name": "hand-made"})  # no fallbackTarget: the catch-all there is kept
    world.ready_tunnel()
    world.service("whoami-1", 80)
    world.binding("whoami", [{"name": "whoami-1"}])
    world.ready_binding("whoami")
    assert world.ingress(existing)[-1] == {"service": "http://default-backend:80"}

    # Asked for explicitly: the catch-all becomes fallbackTarget; rules and other keys are kept.
    world.custom.patch_namespaced_custom_object(GROUP, "v1alpha2", NS, "tunnels", "web",
                                                {"spec": {"fallbackTarget": "http_status:503"}})
    wait_for("catch-all set", lambda: world.ingress(existing)[-1] == {"service": "http_status:503"})
    config = world.state()["tunnel_configs"][existing]["config"]
    assert [r.get("hostname") for r in config["ingress"]] == ["legacy.example.com", "whoami-1.example.com", None]
    assert config["originRequest"] == {"connectTimeout": 5}


def test_bindings_are_scoped_by_namespace_and_dns_updates_can_be_switched_off(world: World) -> None:
    tunnel_a = _published_tunnel(world)
    world.api_secret(namespace="other")
    world.tunnel(namespace="other", newTunnel={"name": "other-tunnel"})
    tunnel_b = world.ready_tunnel(namespace="other")["status"]["tunnelId"]
    assert tunnel_a != tunnel_b
    world.service("whoami-1", 80, namespace="other")
    world.binding("whoami", [{"name": "whoami-1", "spec": {"fqdn": "other.example.com"}}], namespace="other",
                  disableDNSUpdates=True)
    binding = world.ready_binding("whoami", namespace="other")
    assert world.condition(binding, "DNSReady")["message"] == "tunnelRef.disableDNSUpdates: no DNS records"
    assert binding["status"]["hostnames"] == "other.example.com"
    assert [r.get("hostname") for r in world.ingress(tunnel_b)] == ["other.example.com", None]
    assert world.ingress(tunnel_a) in ([], [{"service": "http_status:404"}])  # adyanth would merge them
    assert world.records("other.example.com") == []  # disableDNSUpdates: the rule only


def test_an_annotated_service_deleted_while_the_operator_was_down_is_swept(kube: Any, cloudflare: Any) -> None:
    world = World(kube, cloudflare)
    try:
        world.start()
        tunnel_id = _published_tunnel(world)
        _annotated_service(world, "blog", 80, cr="web")
        wait_for("routed", lambda: len(world.records("blog.example.com")) == 1)
        world.stop()
        world.core.delete_namespaced_service("blog", NS, _preload_content=False)
        world.start(resync_interval=1.0)
        wait_for("swept", lambda: world.records("blog.example.com") == [])
        assert world.ingress(tunnel_id) == [{"service": "http_status:404"}]
        wait_for("said", lambda: [e for e in world.events("web", NS) if e[1] == "OrphansRemoved"])
    finally:
        world.close()


def test_a_tunnel_that_stops_sharing_withdraws_the_other_namespaces_services_at_its_resync(kube: Any,
                                                                                          cloudflare: Any) -> None:
    world = World(kube, cloudflare)
    try:
        world.start(resync_interval=1.0)
        world.api_secret()
        world.tunnel()
        world.custom.patch_namespaced_custom_object(GROUP, "v1alpha2", NS, "tunnels", "web", {
            "metadata": {"annotations": {SHARED: "team-b"}}})
        tunnel_id = str(world.ready_tunnel()["status"]["tunnelId"])
        world.namespace("team-b")
        world.core.create_namespaced_service("team-b", {"metadata": {"name": "blog", "annotations": {
            "tunnels.networking.cfargotunnel.com/cr": "web", "tunnels.networking.cfargotunnel.com/ns": NS}},
            "spec": {"ports": [{"port": 80}]}})
        wait_for("routed", lambda: len(world.records("blog.example.com")) == 1)
        world.custom.patch_namespaced_custom_object(GROUP, "v1alpha2", NS, "tunnels", "web", {
            "metadata": {"annotations": {SHARED: None}}})  # no event of the Service: the Tunnel's sweep sees it
        wait_for("swept", lambda: world.records("blog.example.com") == [])
        assert world.ingress(tunnel_id) == [{"service": "http_status:404"}]
        wait_for("said", lambda: [e for e in world.events("web", NS) if e[1] == "OrphansRemoved"])
    finally:
        world.close()


def test_under_dry_run_nothing_is_written_to_cloudflare(kube: Any, cloudflare: Any) -> None:
    world = World(kube, cloudflare)
    try:
        world.start(dry_run=True)
        world.api_secret()
        world.tunnel()
        tunnel = world.wait_reason("DryRun", world.get_tunnel)
        assert world.condition(tunnel)["status"] == "False"
        assert _ops(world) == [] and world.live_tunnels() == []
    finally:
        world.close()


def test_an_annotated_service_can_sit_behind_access(world: World) -> None:
    tunnel_id = _published_tunnel(world)
    world.cf.reset_log()
    world.namespace(NS)
    world.core.create_namespaced_service(NS, {"metadata": {"name": "admin", "annotations": {
        "tunnels.networking.cfargotunnel.com/cr": "web",
        "chutes.troubleshat.com/access-allowed-domains": "corp.example"}},
        "spec": {"ports": [{"port": 80}], "selector": {"app": "admin"}}})
    wait_for("routed", lambda: len(world.records("admin.example.com")) == 1)
    ops = _ops(world)
    assert ops.index("access.apps.create") < ops.index("tunnels.config.put")
    [app] = world.apps_for("admin.example.com")
    assert any(r.get("hostname") == "admin.example.com" for r in world.ingress(tunnel_id)) and app["domain"]


def test_access_switched_off_by_annotation_removes_the_application_of_a_service_and_of_a_binding(
        world: World) -> None:
    """The Access annotations live under kopf's own storage prefix, whose annotations kopf leaves out of an object's
    essence: without runtime.DiffBase, emptying them ran no handler and left the application in place (the soak)."""
    _published_tunnel(world)
    emails = "chutes.troubleshat.com/access-allowed-emails"
    world.namespace(NS)
    world.core.create_namespaced_service(NS, {"metadata": {"name": "admin", "annotations": {
        "tunnels.networking.cfargotunnel.com/cr": "web", emails: "a@example.org"}},
        "spec": {"ports": [{"port": 80}], "selector": {"app": "admin"}}})
    world.service("whoami-1", 80)
    world.binding("whoami", [{"name": "whoami-1"}], annotations={emails: "a@example.org"})
    wait_for("protected", lambda: len(world.apps_for("admin.example.com")) == 1
             and len(world.apps_for("whoami-1.example.com")) == 1)

    world.core.patch_namespaced_service("admin", NS, {"metadata": {"annotations": {emails: None}}})
    world.patch_binding("whoami", {"metadata": {"annotations": {emails: None}}})
    wait_for("public", lambda: world.apps_for("admin.example.com") == [] and world.apps_for("whoami-1.example.com")
             == [] and len(world.records("admin.example.com")) == len(world.records("whoami-1.example.com")) == 1)

    world.core.patch_namespaced_service("admin", NS, {"metadata": {"annotations": {emails: "b@example.org"}}})
    wait_for("protected again", lambda: len(world.apps_for("admin.example.com")) == 1)


def test_a_new_tunnels_fallback_target_and_origin_settings_reach_its_configuration(world: World) -> None:
    world.api_secret()
    world.tunnel(fallbackTarget="http_status:418", noTlsVerify=True, originCaPool="origin-ca")
    tunnel_id = world.ready_tunnel()["status"]["tunnelId"]
    config = wait_for("configured", lambda: (world.state()["tunnel_configs"].get(tunnel_id) or {}).get("config"))
    assert config["ingress"] == [{"service": "http_status:418"}]
    assert config["originRequest"] == {"noTLSVerify": True, "caPool": "/etc/cloudflared/certs/tls.crt"}
    pod = world.deployment("web-cloudflared").spec.template.spec
    assert pod.volumes[0].secret.secret_name == "origin-ca"
    world.service("whoami-1", 80)
    world.binding("whoami", [{"name": "whoami-1"}])
    world.ready_binding("whoami")
    assert world.ingress(tunnel_id)[-1] == {"service": "http_status:418"}  # kept by the bindings' writes
