"""Issue 12 (hardening) for ChuteGateways: a Secret or Deployment of the gateway's names that is not labelled as
its own is never written nor deleted (ObjectNotOurs), and cloudflared runs only from allowed image repositories,
without a service-account token."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from chutes import kube
from harness.gateways import NS, World
from harness.waiting import wait_for

OURS = {"app.kubernetes.io/managed-by": "chutes-operator", "chutes.troubleshat.com/gateway": "blog",
        "chutes.troubleshat.com/owner": "default"}


@pytest.fixture()
def world(kube: Any, cloudflare: Any) -> Iterator[World]:
    yield from World.opened(kube, cloudflare, start=True)


def _warnings(world: World, reason: str) -> list[str]:
    return [message for type_, why, message in world.events("blog") if type_ == "Warning" and why == reason]


def test_a_secret_of_the_gateways_name_that_is_not_ours_is_never_written_nor_deleted(world: World) -> None:
    world.ready_config()
    world.service()
    world.core.create_namespaced_secret(NS, {"metadata": {"name": "chute-blog-tunnel-token",
                                                          "labels": {"app": "mine"}},
                                             "stringData": {"token": "my own"}})
    world.gateway()
    gateway = world.wait_reason("ObjectNotOurs")
    assert "Secret team-a/chute-blog-tunnel-token" in world.condition(gateway)["message"]
    wait_for("a Warning Event", lambda: _warnings(world, "ObjectNotOurs"))
    secret = world.core.read_namespaced_secret("chute-blog-tunnel-token", NS)
    assert secret.data == {"token": "bXkgb3du"} and secret.metadata.labels == {"app": "mine"}
    assert not world.apps.list_namespaced_deployment(NS).items  # no cloudflared without its token

    world.custom.delete_namespaced_custom_object("chutes.troubleshat.com", "v1alpha1", NS, "chutegateways", "blog")
    wait_for("gateway gone", lambda: not world.custom.list_namespaced_custom_object(
        "chutes.troubleshat.com", "v1alpha1", NS, "chutegateways")["items"])
    assert world.core.read_namespaced_secret("chute-blog-tunnel-token", NS).data == {"token": "bXkgb3du"}


def test_a_deployment_of_the_gateways_name_that_is_not_ours_is_never_patched_nor_deleted(world: World) -> None:
    world.ready_config()
    world.service()
    # Labelled as the gateway's, but by another installation (owner id): not this one's.
    labels = {**OURS, "chutes.troubleshat.com/owner": "blue"}
    world.apps.create_namespaced_deployment(NS, {
        "metadata": {"name": "chute-blog-cloudflared", "labels": labels},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "mine"}},
                 "template": {"metadata": {"labels": {"app": "mine"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx:1"}]}}}})
    world.gateway()
    gateway = world.wait_reason("ObjectNotOurs")
    assert "Deployment team-a/chute-blog-cloudflared" in world.condition(gateway)["message"]
    deployment = world.apps.read_namespaced_deployment("chute-blog-cloudflared", NS)
    assert deployment.spec.template.spec.containers[0].image == "nginx:1" and deployment.spec.replicas == 1
    # Its replicas never count as the gateway's connectors.
    world.apps.patch_namespaced_deployment_status("chute-blog-cloudflared", NS, {
        "status": {"replicas": 1, "availableReplicas": 1, "readyReplicas": 1}})
    world.wait_reason("ConnectorsUnavailable", type_="ConnectorReady")
    assert world.condition(world.get_gateway(), "ConnectorReady")["status"] == "False"

    world.custom.delete_namespaced_custom_object("chutes.troubleshat.com", "v1alpha1", NS, "chutegateways", "blog")
    wait_for("gateway gone", lambda: not world.custom.list_namespaced_custom_object(
        "chutes.troubleshat.com", "v1alpha1", NS, "chutegateways")["items"])
    assert world.apps.read_namespaced_deployment("chute-blog-cloudflared", NS).spec.replicas == 1
    assert any("left in place" in m for m in _warnings(world, "ObjectNotOurs"))
    assert world.core.list_namespaced_secret(NS).items == []  # its own token Secret went


def test_its_own_secret_and_deployment_carry_the_owner_labels_and_no_token(world: World) -> None:
    world.ready_config()
    world.service()
    world.gateway()
    world.ready_gateway()
    secret = world.core.read_namespaced_secret("chute-blog-tunnel-token", NS)
    deployment = world.apps.read_namespaced_deployment("chute-blog-cloudflared", NS)
    for labels in (secret.metadata.labels, deployment.metadata.labels):
        assert OURS.items() <= labels.items()
    assert deployment.spec.template.spec.automount_service_account_token is False


def test_a_cloudflared_image_outside_the_allowed_repositories_is_refused_and_nothing_deployed(
        world: World) -> None:
    world.ready_config()
    world.service()
    world.gateway(cloudflared={"image": "evil.example/cloudflare/cloudflared:2024.8.3"})
    gateway = world.wait_reason("ImageNotAllowed")
    assert "evil.example/cloudflare/cloudflared" in world.condition(gateway)["message"]
    wait_for("a Warning Event", lambda: _warnings(world, "ImageNotAllowed"))
    assert not world.apps.list_namespaced_deployment(NS).items
    assert not world.core.list_namespaced_secret(NS).items
    assert world.live_tunnels() == [] and world.records() == []


def test_an_allowed_mirror_runs_and_the_official_repository_is_then_refused(kube: Any, cloudflare: Any) -> None:
    opened = contextlib.contextmanager(World.opened)
    with opened(kube, cloudflare, start=True, cloudflared_images=("registry.example.com/mirror/",)) as world:
        world.ready_config()
        world.service()
        world.gateway(cloudflared={"image": "registry.example.com/mirror/cloudflared:2024.8.3"})
        world.ready_gateway()
        deployment = world.apps.read_namespaced_deployment("chute-blog-cloudflared", NS)
        assert deployment.spec.template.spec.containers[0].image == "registry.example.com/mirror/cloudflared:2024.8.3"
        world.gateway("wiki")  # the CRD's default image: docker.io/cloudflare/cloudflared
        world.wait_reason("ImageNotAllowed", "wiki")


# --- the ownership test itself --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "ours"),
    [
        ({"labels": OURS}, True),
        ({"labels": {**OURS, "extra": "x"}}, True),
        ({"labels": {**OURS, "chutes.troubleshat.com/owner": "blue"}}, False),  # another installation's
        ({"labels": {**OURS, "chutes.troubleshat.com/gateway": "other"}}, False),  # another gateway's
        ({}, False),
        ({"labels": {"app": "x"}, "ownerReferences": [{"uid": "u1", "controller": True}]}, False),
        # an earlier version's: no owner label yet, made for this gateway (its controller reference)
        ({"labels": {k: v for k, v in OURS.items() if "owner" not in k},
          "ownerReferences": [{"uid": "u1", "controller": True}]}, True),
        ({"labels": {k: v for k, v in OURS.items() if "owner" not in k},
          "ownerReferences": [{"uid": "u2", "controller": True}]}, False),
    ],
)
def test_an_object_is_ours_only_with_every_ownership_label(metadata: dict[str, Any], ours: bool) -> None:
    assert kube.is_ours(metadata, OURS, "u1") is ours


def test_a_routes_service_token_secret_name_taken_by_a_foreign_secret_is_refused_and_left_alone(
        kube: Any, cloudflare: Any) -> None:
    from harness import httproutes as routes

    world = routes.World(kube, cloudflare)
    try:
        world.namespace("apps")
        world.core.create_namespaced_secret("apps", {"metadata": {"name": "cfzt-svctoken-api"},
                                                     "stringData": {"mine": "keep me"}})
        routes.home(world)
        world.route("api", "api.example.com", **{"serviceToken.enabled": "true", "access.enabled": "true"})
        ready = world.wait_reason("api", "ObjectNotOurs")
        assert "Secret apps/cfzt-svctoken-api" in ready["message"]
        world.delete_route("api")
        wait_for("route gone", lambda: not world.route_exists("api"))
        secret = world.core.read_namespaced_secret("cfzt-svctoken-api", "apps")
        assert secret.data == {"mine": "a2VlcCBtZQ=="} and not secret.metadata.labels
    finally:
        world.close()
