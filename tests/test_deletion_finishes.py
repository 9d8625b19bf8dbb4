"""Deletions that finish (issue 12, item 3): a zone, account or tunnel that no longer exists in Cloudflare took its
objects with it, so a ChuteGateway's finalizer, or an HTTPRoute's teardown, completes instead of retrying every
few minutes forever; what truly blocks a deletion (a refused token) says ``DeletionBlocked`` with the remedy.

The real operator against both emulators; the zone or account is removed behind its back as the account owner
would in the dashboard (``remove_zone``/``remove_account``: every path under them answers 404/7003).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import cloudflare as cf_sdk
import pytest

from chutes.sandbox.kubernetes import OPERATOR_TOKEN
from harness import httproutes as h
from harness.gateways import GROUP, NS, VERSION, World
from harness.waiting import wait_for


@pytest.fixture()
def world(kube: Any, cloudflare: Any) -> Iterator[World]:
    yield from World.opened(kube, cloudflare, start=True)


def published(world: World) -> dict[str, Any]:
    world.ready_config()
    world.service()
    world.gateway()
    return world.ready_gateway()["status"]


def delete_gateway(world: World) -> None:
    world.custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "chutegateways", "blog")


def gone(world: World) -> bool:
    items = world.custom.list_namespaced_custom_object(GROUP, VERSION, NS, "chutegateways")["items"]
    return not items


def test_a_gateway_whose_zone_was_deleted_finishes_and_removes_the_rest(world: World) -> None:
    status = published(world)
    tunnel, app = status["tunnelId"], status["accessAppId"]
    world.cf.remove_zone(world.zone)

    delete_gateway(world)
    wait_for("the finalizer done", lambda: gone(world), timeout=20)
    assert tunnel not in {t["id"] for t in world.live_tunnels()}  # account objects still removed
    assert app not in world.state()["access_apps"]
    wait_for("the Event saying the records went with the zone", lambda: any(
        r == "DNSRecordRemoved" and "zone" in m and "no longer exists" in m for _, r, m in world.events("blog")))


def test_a_gateway_whose_tunnel_was_deleted_by_hand_finishes(world: World) -> None:
    status = published(world)
    with cf_sdk.Cloudflare(api_token=world.cf.token, base_url=world.cf.base_url, max_retries=0) as sdk:
        sdk.zero_trust.tunnels.cloudflared.delete(status["tunnelId"], account_id=world.account)

    delete_gateway(world)
    wait_for("the finalizer done", lambda: gone(world), timeout=20)
    assert not [r for r in world.records() if r["name"] == "blog.example.com"]
    assert status["accessAppId"] not in world.state()["access_apps"]


def test_a_gateway_whose_account_was_deleted_finishes(world: World) -> None:
    published(world)
    world.cf.remove_account(world.account)

    delete_gateway(world)
    wait_for("the finalizer done", lambda: gone(world), timeout=20)
    wait_for("an Event saying what no longer exists", lambda: any(
        "no longer exists" in m for _, _, m in world.events("blog")))


def test_a_refused_token_blocks_the_deletion_and_says_how_to_unblock_it(world: World) -> None:
    published(world)
    world.core.patch_namespaced_secret("cf", "chute-system", {"stringData": {"apiToken": "not-a-token-it-knows"}})

    delete_gateway(world)
    blocked = wait_for("DeletionBlocked", lambda: (g := world.get_gateway()) and world.condition(
        g, "DeletionBlocked").get("status") == "True" and g, timeout=20)
    condition = world.condition(blocked, "DeletionBlocked")
    assert condition["reason"] == "CredentialsInvalid"
    assert "chutes.troubleshat.com/cleanup" in condition["message"]  # the remedy: fix the token, or abandon
    assert "Secret" in condition["message"]
    assert not gone(world)


# --- HTTPRoutes (no finalizer: the teardown runs on deletion and is retried by the sweep) --------------------


@pytest.fixture()
def routes(kube: Any, cloudflare: Any) -> Iterator[h.World]:
    yield from h.World.opened(kube, cloudflare)


def test_a_route_whose_zone_was_deleted_is_torn_down_and_its_claim_released(routes: h.World) -> None:
    h.home(routes)
    routes.route("app", "app.example.com", **{"access.enabled": "true", "access.allowEmails": "a@example.org"})
    routes.wait_ready("app")
    assert routes.claims()
    routes.cf.remove_zone(routes.zone)

    routes.delete_route("app")
    wait_for("the claim released", lambda: not routes.claims(), timeout=20)
    assert routes.rule("app.example.com") is None
    assert not routes.apps("app.example.com")
    wait_for("the route's state ConfigMap gone (it goes after the claims)", lambda: routes.state("app") is None)


def test_a_config_deleted_during_its_resync_goes_as_soon_as_the_pass_ends(kube: Any, cloudflare: Any) -> None:
    """kopf keeps the finalizer of an object one of whose timers is still in a pass, and looks again after
    ``settings.background.cancellation_polling``: 60 s by default, so a ChuteConfig deleted during its resync stayed
    a minute. The operator looks again after 1 s. The resync's Cloudflare call is held until the deletion's handler
    has run, so that the deletion finds the timer in its pass."""
    with contextlib.closing(World(kube, cloudflare)) as world:
        world.start(resync_interval=1.0)
        world.ready_config()
        in_pass, released = threading.Event(), threading.Event()

        async def hold() -> None:
            in_pass.set()
            await asyncio.to_thread(released.wait, 20.0)

        world.cf.faults.before("tunnels.list", hold)  # the resync's proof of the credentials (verify_access)
        wait_for("the config's resync in a pass", in_pass.is_set)

        def gateway_listings() -> int:  # the deletion's handler lists the gateways that still use the config
            return sum(n for call, n in kube.api_calls(OPERATOR_TOKEN).items()
                       if (call.verb, call.resource) == ("list", "chutegateways"))

        listed = gateway_listings()
        world.custom.delete_cluster_custom_object(GROUP, VERSION, "chuteconfigs", "default")
        wait_for("the deletion's handler run", lambda: gateway_listings() > listed)
        assert world.get_config("default")["metadata"]["finalizers"]  # held: the resync is still in its pass
        released.set()
        ended = time.monotonic()
        configs = world.custom.list_cluster_custom_object
        wait_for("the ChuteConfig gone", lambda: not configs(GROUP, VERSION, "chuteconfigs")["items"], timeout=20.0)
        assert time.monotonic() - ended < 10.0  # 60 s with kopf's default
