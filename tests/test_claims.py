"""The ledger of claims (chutes.claims) against the Kubernetes emulator: one holder per hostname or tunnel
whatever the race, intents and ids recorded per object, release and hand-over, listing by source and
kind, and no write ever landing in a claim that is someone else's by now."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client

from chutes import claims as claims_module
from chutes.claims import (
    Claim,
    ClaimLost,
    ClaimStore,
    DryRunClaims,
    HeldElsewhere,
    claim_name,
    claims_for,
    ledger_namespace,
    operator_namespace,
)
from chutes.cloudflare_core.models import Recorded
from harness.ledger import LEDGER, api, cluster, other_api

__all__ = ["api", "cluster", "other_api"]  # fixtures

OWNER = "test"
BLOG = "ChuteGateway/team-a/blog"
EVIL = "HTTPRoute/evil/blog"


def store(api: client.ApiClient, owner: str = OWNER) -> ClaimStore:
    return ClaimStore(api, LEDGER, owner)


async def configmap(api: client.ApiClient, name: str) -> dict[str, Any]:
    found = await client.CoreV1Api(api).read_namespaced_config_map(name, LEDGER)
    return dict(api.sanitize_for_serialization(found))


async def test_two_sources_racing_for_one_hostname_get_exactly_one_holder(
        api: client.ApiClient, other_api: client.ApiClient) -> None:
    hostname = "race.example.com"
    outcomes = await asyncio.gather(store(api).acquire("hostname", hostname, BLOG),
                                    store(other_api).acquire("hostname", hostname, EVIL), return_exceptions=True)
    won = [o for o in outcomes if isinstance(o, Claim)]
    lost = [o for o in outcomes if isinstance(o, HeldElsewhere)]
    assert len(won) == 1 and len(lost) == 1, outcomes
    [claim], [refusal] = won, lost
    assert claim.fresh and claim.key == hostname
    assert refusal.holder == claim.source and refusal.claim.uid == claim.uid
    assert claim.source in str(refusal) and hostname in str(refusal)
    # And the loser keeps losing, whoever asks first next time.
    loser = EVIL if claim.source == BLOG else BLOG
    with pytest.raises(HeldElsewhere, match=claim.source):
        await store(api).acquire("hostname", hostname, loser)


async def test_many_racers_one_holder(api: client.ApiClient) -> None:
    sources = [f"HTTPRoute/ns{index}/r" for index in range(8)]
    outcomes = await asyncio.gather(*(store(api).acquire("hostname", "crowd.example.com", s) for s in sources),
                                    return_exceptions=True)
    holders = {o.source for o in outcomes if isinstance(o, Claim)}
    assert len(holders) == 1
    assert all(isinstance(o, HeldElsewhere) and o.holder in holders for o in outcomes if not isinstance(o, Claim))


async def test_the_same_source_acquiring_again_gets_the_same_claim_fresh_only_the_first_time(
        api: client.ApiClient) -> None:
    ledger = store(api)
    first = await ledger.acquire("hostname", "Again.Example.com.", BLOG)
    second = await ledger.acquire("hostname", "again.example.com", BLOG)
    assert first.fresh and not second.fresh
    assert (first.name, first.uid, first.key, first.claimed_at) == (second.name, second.uid, second.key,
                                                                    second.claimed_at)
    assert first.key == "again.example.com"
    assert await ledger.get("hostname", "AGAIN.example.com") == second


async def test_acquiring_a_claim_already_held_is_one_read_and_no_write(api: client.ApiClient,
                                                                       cluster: Any) -> None:
    """Every resync of every source acquires its claims again: held already, that costs one read, not a create
    refused as a conflict and then a read (bench/scale.py: a create per route and resync)."""
    ledger = store(api)
    await ledger.acquire("hostname", "steady.example.com", BLOG)
    for source in (BLOG, EVIL):
        before = cluster.api_calls()
        try:
            assert not (await ledger.acquire("hostname", "steady.example.com", source)).fresh
        except HeldElsewhere as refusal:
            assert refusal.holder == BLOG and source == EVIL
        calls = cluster.api_calls() - before
        assert [(call.verb, call.resource) for call in calls.elements()] == [("get", "configmaps")]


async def test_a_claim_is_one_labelled_configmap_named_after_what_it_claims(api: client.ApiClient) -> None:
    claim = await store(api).acquire("tunnel", "acc1/chute-team-a-blog", BLOG)
    assert claim.name == claim_name(OWNER, "tunnel", "acc1/chute-team-a-blog")
    assert claim.name.startswith("chutes-claim-") and len(claim.name) == len("chutes-claim-") + 20
    found = await configmap(api, claim.name)
    assert found["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "chutes-operator",
        "chutes.troubleshat.com/claim-owner": OWNER,
        "chutes.troubleshat.com/claim-kind": "tunnel",
        "chutes.troubleshat.com/source-kind": "ChuteGateway",
        "chutes.troubleshat.com/source-namespace": "team-a",
        "chutes.troubleshat.com/source-hash": claims_module.source_hash(BLOG),
    }
    assert found["data"] == {"kind": "tunnel", "key": "acc1/chute-team-a-blog", "source": BLOG,
                             "claimed_at": claim.claimed_at}
    assert found["metadata"]["uid"] == claim.uid


async def test_two_installations_claim_independently(api: client.ApiClient) -> None:
    ours = await store(api, "blue").acquire("hostname", "shared.example.com", BLOG)
    theirs = await store(api, "green").acquire("hostname", "shared.example.com", EVIL)
    assert ours.fresh and theirs.fresh and ours.name != theirs.name
    assert [c.source for c in await store(api, "blue").list()] == [BLOG]


async def test_intend_complete_forget_round_trip(api: client.ApiClient) -> None:
    ledger = store(api)
    claim = await ledger.acquire("hostname", "entries.example.com", BLOG)
    assert claim.recorded("access_app") == Recorded() and claim.entry("access_app") is None

    intended = await ledger.intend(claim, "access_app", account="acc1", name="chute-team-a-blog")
    entry = intended.entry("access_app")
    assert entry is not None and entry["account"] == "acc1" and entry["name"] == "chute-team-a-blog"
    recorded = intended.recorded("access_app")
    assert recorded.id is None and recorded.since is not None and recorded.since.endswith("Z")

    completed = await ledger.complete(intended, "access_app", "app-123", aud="aud-1")
    assert completed.recorded("access_app") == Recorded(id="app-123", since=recorded.since)
    assert completed.entry("access_app") == {"since": recorded.since, "account": "acc1",
                                             "name": "chute-team-a-blog", "aud": "aud-1", "id": "app-123"}

    other = await ledger.intend(completed, "dns", zone="z1", name="entries.example.com", type="CNAME")
    assert set(other.entries) == {"access_app", "dns"}  # entries are independent keys
    reread = await ledger.get("hostname", "entries.example.com")
    assert reread is not None and reread.entries == other.entries and reread.uid == claim.uid

    forgotten = await ledger.forget(other, "access_app")
    assert forgotten.entry("access_app") is None and forgotten.recorded("access_app") == Recorded()
    assert set(forgotten.entries) == {"dns"}
    assert "access_app" not in (await configmap(api, claim.name))["data"]


async def test_entries_are_merged_per_key_so_concurrent_writers_of_different_objects_both_land(
        api: client.ApiClient, other_api: client.ApiClient) -> None:
    claim = await store(api).acquire("hostname", "both.example.com", BLOG)
    await asyncio.gather(store(api).intend(claim, "tunnel_rule", tunnel="t1", path=None),
                         store(other_api).intend(claim, "service_token", name="cfzt-blog"))
    reread = await store(api).get("hostname", "both.example.com")
    assert reread is not None and set(reread.entries) == {"tunnel_rule", "service_token"}
    assert reread.entry("tunnel_rule") == {"since": reread.recorded("tunnel_rule").since, "tunnel": "t1",
                                           "path": None}


async def test_release_then_another_source_may_acquire(api: client.ApiClient) -> None:
    ledger = store(api)
    claim = await ledger.acquire("hostname", "handover.example.com", BLOG)
    with pytest.raises(HeldElsewhere):
        await ledger.acquire("hostname", "handover.example.com", EVIL)
    await ledger.release(claim)
    assert await ledger.get("hostname", "handover.example.com") is None
    await ledger.release(claim)  # gone: fine
    taken = await ledger.acquire("hostname", "handover.example.com", EVIL)
    assert taken.fresh and taken.source == EVIL and taken.uid != claim.uid


async def test_a_stale_claim_never_touches_the_claim_that_replaced_it(api: client.ApiClient) -> None:
    ledger = store(api)
    old = await ledger.acquire("hostname", "stale.example.com", BLOG)
    await ledger.release(old)
    new = await ledger.acquire("hostname", "stale.example.com", EVIL)
    for write in (ledger.intend(old, "dns", zone="z1"), ledger.complete(old, "dns", "r1"), ledger.forget(old, "dns")):
        with pytest.raises(ClaimLost):
            await write
    await ledger.release(old)  # a uid precondition: the new holder's claim stays
    current = await ledger.get("hostname", "stale.example.com")
    assert current is not None and current.uid == new.uid and current.source == EVIL and current.entries == {}


async def test_writing_to_a_released_claim_is_refused(api: client.ApiClient) -> None:
    ledger = store(api)
    claim = await ledger.acquire("hostname", "released.example.com", BLOG)
    await ledger.release(claim)
    with pytest.raises(ClaimLost, match=r"released\.example\.com"):
        await ledger.intend(claim, "dns", zone="z1")
    assert await ledger.get("hostname", "released.example.com") is None  # the patch created nothing


async def test_list_by_source_kind_and_source_kind(api: client.ApiClient) -> None:
    ledger = store(api, "lister")
    gateway = "ChuteGateway/team-l/site"
    route = "HTTPRoute/team-l/site"
    await ledger.acquire("hostname", "site.example.com", gateway)
    await ledger.acquire("tunnel", "acc1/chute-team-l-site", gateway)
    await ledger.acquire("hostname", "api.example.com", route)
    await ledger.acquire("hostname", "docs.example.com", route)
    await store(api, "someone-else").acquire("hostname", "site.example.org", gateway)

    def keys(found: list[Claim]) -> list[tuple[str, str, str]]:
        return [(c.kind, c.key, c.source) for c in found]

    assert keys(await ledger.list()) == [("hostname", "api.example.com", route),
                                         ("hostname", "docs.example.com", route),
                                         ("hostname", "site.example.com", gateway),
                                         ("tunnel", "acc1/chute-team-l-site", gateway)]
    assert keys(await ledger.list(source=gateway)) == [("hostname", "site.example.com", gateway),
                                                       ("tunnel", "acc1/chute-team-l-site", gateway)]
    assert keys(await ledger.list(kind="tunnel")) == [("tunnel", "acc1/chute-team-l-site", gateway)]
    assert keys(await ledger.list(kind="hostname", source=route)) == [("hostname", "api.example.com", route),
                                                                      ("hostname", "docs.example.com", route)]
    assert [c.source for c in await ledger.list(source_kind="HTTPRoute")] == [route, route]
    assert await ledger.list(source="HTTPRoute/team-l/gone") == []


@pytest.mark.parametrize("source", ["blog", "ChuteGateway/blog", "/ns/blog", "Chute Gateway/ns/blog", "A/ns/"])
async def test_a_malformed_source_is_refused(api: client.ApiClient, source: str) -> None:
    with pytest.raises(ValueError, match="Kind/namespace/name"):
        await store(api).acquire("hostname", "malformed.example.com", source)


async def test_bad_kinds_keys_and_entry_names_are_refused(api: client.ApiClient) -> None:
    ledger = store(api)
    with pytest.raises(ValueError, match="unknown claim kind"):
        await ledger.acquire("zone", "example.com", BLOG)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        await ledger.acquire("hostname", " . ", BLOG)
    claim = await ledger.acquire("hostname", "entry-names.example.com", BLOG)
    for name in ("source", "kind", "a/b", ""):
        with pytest.raises(ValueError, match="cannot name a claim entry"):
            await ledger.intend(claim, name)


def test_the_ledger_namespace_is_the_setting_else_the_operators(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    assert ledger_namespace("ledger", {"OPERATOR_NAMESPACE": "ops"}) == "ledger"
    assert ledger_namespace(None, {"OPERATOR_NAMESPACE": "ops"}) == "ops"
    file = tmp_path / "namespace"
    monkeypatch.setattr(claims_module, "SERVICE_ACCOUNT_NAMESPACE", str(file))
    assert operator_namespace({}) == "default"  # no file
    file.write_text("chute-system\n")
    assert ledger_namespace(None, {}) == "chute-system"
    assert operator_namespace({"OPERATOR_NAMESPACE": ""}) == "chute-system"


async def test_a_claim_built_by_hand_writes_only_while_its_source_holds_it(api: client.ApiClient) -> None:
    ledger = store(api)
    held = await ledger.acquire("hostname", "by-hand.example.com", BLOG)
    mine = Claim(kind="hostname", key="by-hand.example.com", source=BLOG, entries={}, claimed_at="")
    updated = await ledger.intend(mine, "dns", zone="z1")
    assert updated.uid == held.uid and updated.entry("dns") is not None
    theirs = Claim(kind="hostname", key="by-hand.example.com", source=EVIL, entries={}, claimed_at="")
    with pytest.raises(ClaimLost):
        await ledger.intend(theirs, "dns", zone="z2")
    await ledger.release(theirs)  # not theirs to release
    current = await ledger.get("hostname", "by-hand.example.com")
    assert current is not None and current.source == BLOG and current.entry("dns") == updated.entry("dns")


async def test_the_dry_run_ledger_reads_and_never_writes(api: client.ApiClient) -> None:
    real = store(api)
    held = await real.acquire("hostname", "held.example.com", BLOG)
    dry = claims_for(real, dry_run=True)
    assert isinstance(dry, DryRunClaims) and claims_for(dry, dry_run=True) is dry
    assert claims_for(real, dry_run=False) is real
    before = {c.name: c for c in await real.list()}

    fresh = await dry.acquire("hostname", "Dry.Example.com.", EVIL)  # free: would be created
    assert fresh.fresh and fresh.key == "dry.example.com" and fresh.source == EVIL and not fresh.name
    claim = await dry.intend(fresh, "access_app", account="acc1", name="cfzt-dry")
    claim = await dry.complete(claim, "access_app", "app-1")
    claim = await dry.intend(claim, "dns", zone="z1", type="CNAME")
    assert claim.recorded("access_app") == Recorded(id="app-1", since=claim.entries["access_app"]["since"])
    assert (await dry.forget(claim, "dns")).entry("dns") is None
    await dry.release(claim)
    with pytest.raises(HeldElsewhere, match=BLOG):  # what the ledger holds still counts
        await dry.acquire("hostname", "held.example.com", EVIL)
    assert await dry.acquire("hostname", "held.example.com", BLOG) == dataclasses.replace(held, fresh=False)
    await dry.intend(held, "tunnel_rule", tunnel="t1", account="acc1")
    await dry.release(held)

    assert {c.name: c for c in await real.list()} == before  # nothing written, nothing released
    assert await real.get("hostname", "dry.example.com") is None
    with pytest.raises(ValueError):
        await dry.intend(claim, "kind")
