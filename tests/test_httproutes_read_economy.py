"""A resync pass reads each of its inputs from Kubernetes once (bench/scale.py: each pass of a route read its state
ConfigMap and its claim twice, and its tenant and templates once per route: 27,097 reads for a full resync of 5,000
exposures). The pass is run here as the tenant's resync timer runs it (:func:`upkeep.reconcile_refs`, forced) on
routes published already, with the operator stopped: the emulator's record of the operator's calls is the pass's."""

from __future__ import annotations

import asyncio
from collections import Counter

from chutes import kube
from chutes.claims import ClaimStore
from chutes.cores import CorePool
from chutes.frontdoors.httproutes import desired as d
from chutes.frontdoors.httproutes.context import Context, Runtime
from chutes.frontdoors.httproutes.reconcile import PUBLISHED
from chutes.frontdoors.httproutes.upkeep import reconcile_refs
from chutes.sandbox.kubernetes.kubeconfig import OPERATOR_TOKEN
from chutes.settings import load_settings
from harness.httproutes import OPNS, World, home, world_fixture  # noqa: F401

Read = tuple[str, str, str | None, str | None]  # verb, resource, namespace, name


async def _resync_pass(world: World, routes: list[str]) -> dict[str, int]:
    settings = load_settings({}, standalone=True, cloudflare_base_url=world.cf.base_url)
    api = await kube.connect()
    try:
        refs = [d.RouteRef("", "apps", name, tenant="home", template="shared", hostname=f"{name}.example.com")
                for name in routes]
        ctx = Context(api=api, cores=CorePool(settings), runtime=Runtime(operator_namespace=OPNS),
                      index={("tenant", "home"): refs}, claims=ClaimStore(api, OPNS, settings.owner_id))
        return await reconcile_refs(ctx, refs, lambda *_, **__: None, force=True)
    finally:
        await api.close()


def _reads_of_a_pass(world: World, routes: list[str]) -> Counter[Read]:
    before = world.kube.api_calls(OPERATOR_TOKEN)
    assert asyncio.run(_resync_pass(world, routes)) == {PUBLISHED: len(routes)}
    calls = world.kube.api_calls(OPERATOR_TOKEN) - before
    return Counter({(call.verb, call.resource, call.namespace, call.name): n for call, n in calls.items()
                    if call.verb in ("get", "list")})


def _published(world: World, *routes: str) -> None:
    home(world)
    world.template("shared", {"originService": "http://web.apps.svc:80"})
    for name in routes:
        world.route(name, f"{name}.example.com", template="shared")
    for name in routes:
        world.wait_ready(name)
    world.stop()


def test_a_resync_pass_of_a_published_route_reads_each_of_its_inputs_once(world: World) -> None:
    _published(world, "web")
    reads = _reads_of_a_pass(world, ["web"])
    claim = next(name for verb, resource, _, name in reads if resource == "configmaps" and name != "cfzt-apps-web")
    assert reads == Counter({
        ("get", "httproutes", "apps", "web"): 1,
        # the route's namespace first, then the operator's
        ("get", "cloudflarezerotrusttenants", "apps", "home"): 1,
        ("get", "cloudflarezerotrusttenants", OPNS, "home"): 1,
        ("get", "cloudflarezerotrusttemplates", "apps", "shared"): 1,
        ("get", "cloudflarezerotrusttemplates", OPNS, "shared"): 1,
        ("get", "cloudflarezerotrusttemplates", "apps", "base-home"): 1,
        ("get", "cloudflarezerotrusttemplates", OPNS, "base-home"): 1,
        ("get", "secrets", OPNS, "cf-token"): 1,
        ("get", "configmaps", OPNS, "cfzt-apps-web"): 1,  # its state
        ("get", "configmaps", OPNS, claim): 1,  # its hostname claim
    })


def test_a_resync_pass_reads_the_tenant_and_templates_its_routes_share_once(world: World) -> None:
    _published(world, "web", "api", "docs")
    reads = _reads_of_a_pass(world, ["web", "api", "docs"])
    shared = {read: n for read, n in reads.items() if read[1].startswith("cloudflarezerotrust")}
    assert len(shared) == 6 and set(shared.values()) == {1}, shared
    assert reads[("get", "secrets", OPNS, "cf-token")] == 3  # the token: read by each route (not kept in memory)
    assert sum(n for read, n in reads.items() if read[1] == "configmaps") == 6  # each route's state and claim
