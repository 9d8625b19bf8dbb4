"""Dry-run, with the real operator against both emulators: over the shipped examples it reads Cloudflare,
logs every change it would make ("dry-run: would ...") and makes none (the emulator's request log holds
GET requests only); the source objects say DryRun with the change that stopped them, and nothing is created
in Kubernetes from Cloudflare data (no tunnel token Secret, no cloudflared, no route state)."""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from chutes.cloudflare_core import CloudflareCore
from harness import httproutes as routes
from harness.gateways import GROUP, VERSION, World
from harness.waiting import wait_for

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture()
def world(kube: Any, cloudflare: Any) -> Iterator[World]:
    yield from World.opened(kube, cloudflare)  # each test starts the operator with its own settings


def writes(cf: Any) -> list[str]:
    """Every request of the log that is not a read (answered or not)."""
    return [f"{r.method} {r.path}" for r in cf.requests if r.method != "GET"]


def existing_otp_provider(cf: Any) -> None:
    """The account already has its one-time-PIN provider (made before the test's request log starts)."""
    async def make() -> None:
        async with CloudflareCore(cf.token, base_url=cf.base_url) as core:
            await core.ensure_otp_idp(cf.account_id)

    asyncio.run(make())


def apply_gateway_example(world: World) -> None:
    """examples/chute-gateway with the sandbox's token, account and zone (as a user edits them)."""
    for path in sorted((EXAMPLES / "chute-gateway").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            doc = copy.deepcopy(doc)
            kind, meta = doc["kind"], doc["metadata"]
            if kind == "Namespace":
                world.namespace(meta["name"])
            elif kind == "Secret":
                doc["stringData"]["apiToken"] = world.cf.token
                world.core.create_namespaced_secret(meta["namespace"], doc)
            elif kind == "ChuteConfig":
                doc["spec"].update(accountId=world.account, zoneId=world.zone)
                world.custom.create_cluster_custom_object(GROUP, VERSION, "chuteconfigs", doc)
            elif kind == "Service":
                world.core.create_namespaced_service(meta["namespace"], doc)
            else:
                assert kind == "ChuteGateway"
                world.custom.create_namespaced_custom_object(GROUP, VERSION, meta["namespace"], "chutegateways", doc)


def missing(read: Any, *args: Any) -> bool:
    try:
        read(*args)
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False


def test_the_gateway_example_under_dry_run_writes_nothing_and_says_what_it_would_create(
        world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    existing_otp_provider(world.cf)
    world.cf.reset_log()
    world.start(dry_run=True)
    apply_gateway_example(world)

    config = wait_for("ChuteConfig ready", lambda: (c := world.get_config()).get("status", {}).get("ready") and c)
    assert world.condition(config)["reason"] == "Reconciled"  # it only reads
    gateway = world.wait_reason("DryRun", name="blog", namespace="blog")
    ready = world.condition(gateway)
    assert ready["status"] == "False"
    assert "would create tunnel chute-blog-blog" in ready["message"]
    wait_for("the DryRun Warning Event", lambda: ("Warning", "DryRun") in {
        (t, r) for t, r, _ in world.events("blog", "blog")})  # posted right after the condition is written

    assert writes(world.cf) == []
    assert world.cf.requests, "the operator read Cloudflare"
    assert any(m.startswith("dry-run: would create tunnel chute-blog-blog") for m in caplog.messages)
    state = world.state()
    assert world.live_tunnels() == [] and world.records() == [] and state["access_apps"] == {}
    assert missing(world.core.read_namespaced_secret, "chute-blog-tunnel-token", "blog")
    assert missing(world.apps.read_namespaced_deployment, "chute-blog-cloudflared", "blog")
    assert "tunnelId" not in gateway.get("status", {})


def test_a_config_under_dry_run_says_it_would_create_the_one_time_pin_provider(world: World) -> None:
    world.cf.reset_log()
    world.start(dry_run=True)
    world.token_secret()
    world.config()
    config = wait_for("ChuteConfig DryRun", lambda: (c := world.get_config())
                      and world.condition(c).get("reason") == "DryRun" and c)
    assert "would create identity provider" in world.condition(config)["message"]
    assert "otpIdentityProviderId" not in config.get("status", {})
    assert writes(world.cf) == [] and world.state()["identity_providers"] == {}


# --- HTTPRoutes ----------------------------------------------------------------------------------------

EXAMPLE_ROUTES = [("my-app", "my-app"), ("my-other-app", "my-other-app"), ("my-api", "my-api"),
                  ("my-other-api", "my-other-api"), ("internal", "internal-service")]


@pytest.fixture()
def route_world(kube: Any, cloudflare: Any) -> Iterator[routes.World]:
    yield from routes.World.opened(kube, cloudflare)


def test_the_httproute_examples_under_dry_run_write_nothing(route_world: routes.World,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    world = route_world
    caplog.set_level(logging.INFO)
    for name in routes.EXAMPLE_POLICIES:  # the account's reusable policies exist already
        world.reusable_policy(name)
    world.cf.reset_log()
    world.start(dry_run=True)
    world.apply_examples()

    for namespace, name in EXAMPLE_ROUTES:
        ready = world.wait_reason(name, "DryRun", namespace)
        assert ready["status"] == "False" and "would" in ready["message"], (name, ready)
    assert writes(world.cf) == []
    assert any(m.startswith("dry-run: would create Access app cfzt-my-app.example.com") for m in caplog.messages)
    snapshot = world.snapshot()
    assert snapshot["access_apps"] == {} and world.records() == [] and snapshot["service_tokens"] == {}
    assert world.ingress() == []  # the tenant's tunnel has no configuration yet
    for namespace, name in EXAMPLE_ROUTES:
        assert world.state(name, namespace) is None  # nothing recorded as published
        assert world.secret(f"cfzt-svctoken-{name}", namespace) is None
