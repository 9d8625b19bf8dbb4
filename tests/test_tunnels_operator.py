"""Tunnel / ClusterTunnel / TunnelBinding (adyanth's API): the real operator against both emulators.

adyanth manifests of both API generations are applied unchanged with the real `kubernetes` client; the outcome is
read from Cloudflare (state and request log) and Kubernetes (status, conditions, Events, the cloudflared
Deployment)."""

from __future__ import annotations

from typing import Any

from chutes.cloudflare_core.ownership import parse as parse_marker
from harness.tunnels import NS, World, world_fixture  # noqa: F401  (world_fixture: a fixture)
from harness.waiting import wait_for


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
