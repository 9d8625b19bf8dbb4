"""Service tokens answered from the account's view of its tokens (issue 17): one coalesced listing, refreshed
after the resync interval, updated by our own writes; a create or a refusal only on a listing of its own call
(Cloudflare does not refuse a second token of a name), a delete checked on a copy learned since the proof.
Emulator, real SDK; foreign tokens are made by another client."""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import cloudflare
import pytest

from chutes.cloudflare_core import CloudflareCore, Conflict, Recorded
from chutes.sandbox.cloudflare import CloudflareSandbox
from harness.core import TOKEN_DURATION, core_with, intent, now


@pytest.fixture()
async def other(sandbox: CloudflareSandbox) -> AsyncIterator[cloudflare.AsyncCloudflare]:
    """Another tool (or another process of ours) using the same account (plain SDK)."""
    async with cloudflare.AsyncCloudflare(api_token=sandbox.token, base_url=sandbox.base_url, max_retries=0) as client:
        yield client


def tokens(sandbox: CloudflareSandbox) -> list[dict[str, Any]]:
    return list(sandbox.snapshot()["service_tokens"].values())


async def made_by_hand(other: cloudflare.AsyncCloudflare, sandbox: CloudflareSandbox, name: str, *,
                       days_ago: int = 0) -> str:
    made = await other.zero_trust.access.service_tokens.create(account_id=sandbox.account_id, name=name)
    assert made is not None and made.id
    if days_ago:
        moment = (datetime.now(UTC) - timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        with sandbox.state.lock:
            sandbox.state.service_tokens[made.id]["created_at"] = moment
    return made.id


async def test_concurrent_creates_share_one_listing_and_our_creates_answer_what_follows(
    core: CloudflareCore, sandbox: CloudflareSandbox
) -> None:
    account = sandbox.account_id
    names = [f"cfzt-r{i}.example.com" for i in range(20)]

    created = await asyncio.gather(*(core.ensure_service_token(account, name, TOKEN_DURATION, intent())
                                     for name in names))
    assert sandbox.counters == {"service_tokens.list": 1, "service_tokens.create": 20}
    assert all(token.client_secret for token in created) and len(tokens(sandbox)) == 20
    sandbox.reset_log()

    again = await asyncio.gather(*(core.ensure_service_token(account, token.name, TOKEN_DURATION,
                                                             Recorded(id=token.id, since=now(-60)))
                                   for token in created))
    found = await asyncio.gather(*(core.find_service_token(account, name) for name in names))
    assert [t.id for t in again] == [t.id for t in created] == [t.id if t else "" for t in found]
    assert all(t.client_secret is None for t in [*again, *found])
    assert sandbox.counters == {}  # the view of the account's tokens, updated by our creates

    # Deleted on the copy our create answered (learned after the proof): no read; nothing deleted twice.
    for token in created[:2]:
        await core.delete_service_token(account, token.id, token.name, since=now(-60))
        await core.delete_service_token(account, token.id, token.name, since=now(-60))
    assert sandbox.counters == {"service_tokens.delete": 2} and len(tokens(sandbox)) == 18


async def test_concurrent_finds_of_tokens_made_elsewhere_share_one_listing(
    core: CloudflareCore, sandbox: CloudflareSandbox, other: cloudflare.AsyncCloudflare
) -> None:
    ids = [await made_by_hand(other, sandbox, f"cfzt-h{i}.example.com") for i in range(10)]
    sandbox.reset_log()

    found = await asyncio.gather(*(core.find_service_token(sandbox.account_id, f"cfzt-h{i}.example.com")
                                   for i in range(10)))

    assert [token.id if token else "" for token in found] == ids
    assert sandbox.counters == {"service_tokens.list": 1}


async def test_a_stale_view_never_adopts_nor_deletes_a_foreign_namesake_nor_duplicates_ours(
    core: CloudflareCore, sandbox: CloudflareSandbox, other: cloudflare.AsyncCloudflare
) -> None:
    account = sandbox.account_id
    ours = await core.ensure_service_token(account, "cfzt-ours.example.com", TOKEN_DURATION, intent())
    # Behind the view's back: a hand-made token under the name a route is about to ask for, one under our own
    # token's name, and a token of ours made by another process after its intent was recorded.
    foreign = await made_by_hand(other, sandbox, "cfzt-next.example.com", days_ago=30)
    namesake = await made_by_hand(other, sandbox, "cfzt-ours.example.com", days_ago=30)
    recorded = intent()
    elsewhere = await made_by_hand(other, sandbox, "cfzt-elsewhere.example.com")
    before = tokens(sandbox)
    sandbox.reset_log()

    resolved = await core.ensure_service_token(account, "cfzt-elsewhere.example.com", TOKEN_DURATION, recorded)
    assert resolved.id == elsewhere  # by the proof, on a listing of its own call: no duplicate
    assert sandbox.counters == {"service_tokens.list": 1}
    with pytest.raises(Conflict, match=rf"cfzt-next.example.com \({foreign}\).*no record of creating it"):
        await core.ensure_service_token(account, "cfzt-next.example.com", TOKEN_DURATION, intent())
    assert sandbox.counters == {"service_tokens.list": 2}  # a refusal is decided on a listing of its own call
    kept = await core.ensure_service_token(account, "cfzt-ours.example.com", TOKEN_DURATION,
                                           Recorded(id=ours.id, since=now(-60)))
    assert kept.id == ours.id  # by the proof, never the namesake: no call
    with pytest.raises(Conflict, match="left untouched"):  # an id whose token is named otherwise
        await core.delete_service_token(account, foreign, "cfzt-ours.example.com", since=now(-60))
    assert tokens(sandbox) == before and sandbox.counters == {"service_tokens.list": 2}

    await core.delete_service_token(account, ours.id, "cfzt-ours.example.com", since=now(-60))
    assert sorted(t["id"] for t in tokens(sandbox)) == sorted([foreign, namesake, elsewhere])


async def test_an_intent_is_resolved_on_a_listing_of_its_own_call_never_on_a_copy_that_may_miss_a_second_token(
    core: CloudflareCore, sandbox: CloudflareSandbox, other: cloudflare.AsyncCloudflare
) -> None:
    account = sandbox.account_id
    recorded = intent()
    first = await made_by_hand(other, sandbox, "cfzt-web.example.com")  # ours, its id never recorded (a crash)
    await core.refresh_service_tokens(account)
    await made_by_hand(other, sandbox, "cfzt-web.example.com")  # and another one since: which is ours?
    sandbox.reset_log()

    with pytest.raises(Conflict, match="cannot be told"):
        await core.ensure_service_token(account, "cfzt-web.example.com", TOKEN_DURATION, recorded)
    assert sandbox.counters == {"service_tokens.list": 1} and len(tokens(sandbox)) == 2
    with sandbox.state.lock:
        del sandbox.state.service_tokens[first]
    resolved = await core.ensure_service_token(account, "cfzt-web.example.com", TOKEN_DURATION, recorded)
    assert resolved.id != first and resolved.client_secret is None and len(tokens(sandbox)) == 1


async def test_a_delete_checks_a_copy_learned_since_the_proof_and_refuses_a_token_renamed_since(
    core: CloudflareCore, sandbox: CloudflareSandbox, other: cloudflare.AsyncCloudflare
) -> None:
    account = sandbox.account_id
    recorded = intent()
    token = await core.ensure_service_token(account, "cfzt-two.example.com", TOKEN_DURATION, recorded)
    await other.zero_trust.access.service_tokens.update(token.id, account_id=account, name="ci-pipeline")
    sandbox.reset_log()

    # A proof recorded after the view's copy was learned, or none: the token is read, and the rename seen.
    for since in (now(5), None):
        with pytest.raises(Conflict, match="ci-pipeline"):
            await core.delete_service_token(account, token.id, "cfzt-two.example.com", since=since)
    # Listed again (as once the resync interval is over), the view shows the rename too.
    await core.refresh_service_tokens(account)
    with pytest.raises(Conflict, match="ci-pipeline"):
        await core.delete_service_token(account, token.id, "cfzt-two.example.com", since=recorded.since)
    assert [t["name"] for t in tokens(sandbox)] == ["ci-pipeline"]
    assert sandbox.counters == {"service_tokens.get": 2, "service_tokens.list": 1}


async def test_a_token_deleted_behind_the_view_is_made_again_once_the_view_is_older_than_the_resync_interval(
    sandbox: CloudflareSandbox, other: cloudflare.AsyncCloudflare
) -> None:
    account = sandbox.account_id
    async with core_with(sandbox, resync_interval=0.3) as core:
        recorded = intent()
        token = await core.ensure_service_token(account, "cfzt-web.example.com", TOKEN_DURATION, recorded)
        await other.zero_trust.access.service_tokens.delete(token.id, account_id=account)
        await asyncio.sleep(0.4)
        sandbox.reset_log()

        again = await core.ensure_service_token(account, "cfzt-web.example.com", TOKEN_DURATION,
                                                Recorded(id=token.id, since=recorded.since))

        assert again.id != token.id and again.client_secret and [t["id"] for t in tokens(sandbox)] == [again.id]
        assert sandbox.counters == {"service_tokens.list": 1, "service_tokens.create": 1}
        sandbox.reset_log()
        await core.delete_service_token(account, token.id, "cfzt-web.example.com", since=recorded.since)
        assert sandbox.counters == {"service_tokens.get": 1}  # not in the view, not deleted by us: read, gone


async def test_the_view_walks_every_page_and_never_keeps_a_secret(
    core: CloudflareCore, sandbox: CloudflareSandbox, other: cloudflare.AsyncCloudflare
) -> None:
    account = sandbox.account_id
    made = await made_by_hand(other, sandbox, "bulk-0")
    with sandbox.state.lock:  # 1,200 tokens: two pages of 1,000
        template = sandbox.state.service_tokens[made]
        for i in range(1, 1200):
            token_id = str(uuid.uuid4())
            sandbox.state.service_tokens[token_id] = copy.deepcopy(template) | {"id": token_id, "name": f"bulk-{i}"}
    sandbox.reset_log()

    listed = await core.list_service_tokens(account)
    created = await core.ensure_service_token(account, "cfzt-new.example.com", TOKEN_DURATION, intent())

    assert len(listed) == 1200 and {t.name for t in listed} == {f"bulk-{i}" for i in range(1200)}
    assert sandbox.counters == {"service_tokens.list": 4, "service_tokens.create": 1}  # two listings of two pages
    assert created.client_secret and all("client_secret" not in t for t in core.token_view(account).tokens())
