"""An orphan sweep judged on listings that a source's edit has made stale must not tear down what the source asks
for again: the pass's deletions are guarded (:data:`chutes.sweep.engine.Guard`). Found by the soak: an HTTPRoute
behind Access edited from hostname b to a and back to b while a sweep ran (one runs at every start) had its
Access application deleted by the sweep between its own pass's Access ensure and its CNAME: routable without
Access for half a second."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import pytest

from chutes.claim import Claim
from chutes.cloudflare_core import CloudflareCore, DesiredRecord, RequestBudget
from chutes.frontdoors.gateways.orphans import NAMES as GATEWAY_NAMES
from chutes.frontdoors.httproutes import orphans
from chutes.frontdoors.httproutes.context import Runtime
from chutes.sweep import engine
from chutes.sweep.verdict import ACCESS_APP, CLAIM, DNS_RECORD, Deletion, Wants
from test_sweep_operator import NoClaims

NS = "apps"


async def test_the_deletions_a_guard_takes_back_are_not_made(sandbox: Any) -> None:
    async with CloudflareCore(sandbox.token, sandbox.base_url, budget=RequestBudget(), backoff=0.01) as core:
        zone = sandbox.zone_id("example.com")
        for name in ("gone", "back"):
            await core.ensure_dns_record(zone, DesiredRecord(f"{name}.example.com", "CNAME", "t.cfargotunnel.com",
                                                             source=f"ChuteGateway/{NS}/{name}"))
        seen: list[str] = []

        @contextlib.asynccontextmanager
        async def guard(deletions: Sequence[Deletion], claims: Mapping[str, Any]) -> AsyncIterator[list[Deletion]]:
            seen.extend(sorted(d.name for d in deletions))
            yield [d for d in deletions if d.name != "back.example.com"]  # asked for again meanwhile

        async def nothing_wanted() -> Wants:
            return Wants()

        report = await engine.sweep(core, engine.Scope(GATEWAY_NAMES, sandbox.account_id, (zone,)), nothing_wanted,
                                    cap=50, ledger=NoClaims(), guard=guard)
        assert seen == ["back.example.com", "gone.example.com"]  # both judged orphans
        assert [d.name for d in report.deleted] == ["gone.example.com"]
        assert [r.name for r in await core.list_owned_dns_records(zone)] == ["back.example.com"]


def _claim(name: str, route: str, hostname: str) -> Claim:
    return Claim(kind="hostname", key=hostname, source=f"HTTPRoute/{NS}/{route}", entries={"dns": {"id": "x"}},
                 claimed_at="2026-12-07T00:00:00Z", name=name)


@pytest.fixture()
def judged() -> tuple[list[Deletion], dict[str, Claim]]:
    claims = {"c-back": _claim("c-back", "r4", "r4-b.example.com"),
              "c-gone": _claim("c-gone", "r6", "r6-a.example.com")}
    deletions = [Deletion(DNS_RECORD, claim.key, "id", source=claim.source, claim=claim.name)
                 for claim in claims.values()]
    deletions += [Deletion(ACCESS_APP, f"app {claim.key}", "app", source=claim.source, domain=claim.key,
                           claim=claim.name) for claim in claims.values()]
    deletions += [Deletion(CLAIM, claim.key, source=claim.source, claim=claim.name) for claim in claims.values()]
    return deletions, claims


async def test_a_route_asking_again_keeps_its_objects_and_waits_for_the_deletions_of_the_others(
        monkeypatch: pytest.MonkeyPatch, judged: tuple[list[Deletion], dict[str, Claim]]) -> None:
    deletions, claims = judged
    runtime = Runtime(operator_namespace="cloudflare-zero-trust")
    ctx: Any = SimpleNamespace(runtime=runtime)

    async def wants_now(_ctx: Any, _namespaces: tuple[str, ...]) -> Wants:  # r4 was edited back to r4-b
        return Wants(sources={f"HTTPRoute/{NS}/r4": frozenset({"r4-b.example.com"})})

    monkeypatch.setattr(orphans, "load_wants", wants_now)
    async with orphans._still_orphans(ctx, (), deletions, claims) as still:
        assert {d.claim for d in still} == {"c-gone"}  # r4's record, app and claim are kept
        assert len(still) == 3
        # held through the deletions: neither route's own pass runs meanwhile
        assert runtime.lock(NS, "r4").locked() and runtime.lock(NS, "r6").locked()
    assert not runtime.lock(NS, "r4").locked() and not runtime.lock(NS, "r6").locked()


async def test_when_the_routes_cannot_be_listed_again_nothing_is_deleted(
        monkeypatch: pytest.MonkeyPatch, judged: tuple[list[Deletion], dict[str, Claim]]) -> None:
    deletions, claims = judged
    ctx: Any = SimpleNamespace(runtime=Runtime(operator_namespace="cloudflare-zero-trust"))

    async def broken(_ctx: Any, _namespaces: tuple[str, ...]) -> Wants:
        raise RuntimeError("the API server went away")

    monkeypatch.setattr(orphans, "load_wants", broken)
    async with orphans._still_orphans(ctx, (), deletions, claims) as still:
        assert list(still) == []


async def test_the_guard_waits_for_a_route_pass_in_progress(
        monkeypatch: pytest.MonkeyPatch, judged: tuple[list[Deletion], dict[str, Claim]]) -> None:
    deletions, claims = judged
    runtime = Runtime(operator_namespace="cloudflare-zero-trust")
    ctx: Any = SimpleNamespace(runtime=runtime)
    wanted: set[str] = set()

    async def wants_now(_ctx: Any, _namespaces: tuple[str, ...]) -> Wants:
        return Wants(sources={f"HTTPRoute/{NS}/r4": frozenset(wanted)})

    monkeypatch.setattr(orphans, "load_wants", wants_now)
    async with runtime.lock(NS, "r4"):  # r4's pass is under way: edited back to r4-b, it publishes it
        entered = asyncio.Event()

        async def sweep_deletions() -> set[str]:
            async with orphans._still_orphans(ctx, (), deletions, claims) as still:
                entered.set()
                return {d.claim for d in still}

        task = asyncio.create_task(sweep_deletions())
        await asyncio.sleep(0.05)
        assert not entered.is_set()  # the sweep waits for the pass
        wanted.add("r4-b.example.com")
    assert await task == {"c-gone"}  # and judges on what the route asks for once it is done
