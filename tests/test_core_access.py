"""Access apps, policies, the one-time-PIN IdP and service tokens (emulator, real SDK)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from typing import Any

import cloudflare
import pytest

from chutes.cloudflare_core import (
    AccessAppSpec,
    AppPolicySpec,
    CloudflareCore,
    Conflict,
    InvalidInput,
    Recorded,
)
from chutes.cloudflare_core import core as core_module
from chutes.cloudflare_core.access_view import AppView
from chutes.sandbox.cloudflare import CloudflareSandbox
from harness.core import TOKEN_DURATION, core_with, intent, now

EVERYONE = ({"email_domain": {"domain": "example.com"}},)


@pytest.fixture()
async def other(sandbox: CloudflareSandbox) -> AsyncIterator[cloudflare.AsyncCloudflare]:
    """Another tool using the same account (plain SDK)."""
    async with cloudflare.AsyncCloudflare(api_token=sandbox.token, base_url=sandbox.base_url, max_retries=0) as client:
        yield client


def state(sandbox: CloudflareSandbox, kind: str) -> list[dict[str, Any]]:
    return list(sandbox.snapshot()[kind].values())


async def test_access_app_find_or_create_and_update(core: CloudflareCore, sandbox: CloudflareSandbox) -> None:
    account = sandbox.account_id
    spec = AccessAppSpec("chutes-app", "App.example.com", session_duration="12h")
    first = await core.ensure_access_app(account, spec, intent())
    assert sandbox.counters == {"access.apps.list": 1, "access.apps.create": 1}  # one listing of the account
    sandbox.reset_log()
    second = await core.ensure_access_app(account, spec, Recorded(id=first.id))

    assert second == first and first.aud and first.domain == "app.example.com"
    assert sandbox.counters == {}  # answered by the account's view, which our create updated

    policy = await core.ensure_app_policy(account, first.id, AppPolicySpec("allow-team", include=EVERYONE))
    changed = await core.ensure_access_app(account, AccessAppSpec("chutes-app", "app.example.com", "24h"),
                                           Recorded(id=first.id))

    assert changed.id == first.id and changed.session_duration == "24h"
    assert [a["session_duration"] for a in state(sandbox, "access_apps")] == ["24h"]
    assert changed.policies == (policy.id,)  # the full replace kept the app-scoped policy attached


async def test_access_app_on_our_domain_with_another_name_is_not_ours(
    core: CloudflareCore, sandbox: CloudflareSandbox, other: cloudflare.AsyncCloudflare
) -> None:
    await other.zero_trust.access.applications.create(
        account_id=sandbox.account_id, type="self_hosted", domain="app.example.com", name="hand-made"
    )
    before = state(sandbox, "access_apps")

    with pytest.raises(Conflict):
        await core.ensure_access_app(sandbox.account_id, AccessAppSpec("chutes-app", "app.example.com"), intent())

    assert state(sandbox, "access_apps") == before


async def test_reusable_policies_are_attached_in_order(
    core: CloudflareCore, sandbox: CloudflareSandbox, other: cloudflare.AsyncCloudflare
) -> None:
    account = sandbox.account_id
    for name in ("team", "admins"):
        await other.zero_trust.access.policies.create(
            account_id=account, name=name, decision="allow", include=[{"everyone": {}}]
        )
    team = await core.find_reusable_policy(account, "team")
    admins = await core.find_reusable_policy(account, "admins")
    assert team is not None and admins is not None and team.reusable
    assert await core.find_reusable_policy(account, "missing") is None

    spec = AccessAppSpec("chutes-app", "app.example.com", policies=(admins.id, team.id))
    app = await core.ensure_access_app(account, spec, intent())
    sandbox.reset_log()
    again = await core.ensure_access_app(account, spec, Recorded(id=app.id))

    assert app.policies == (admins.id, team.id) == again.policies
    assert sandbox.counters == {}


async def test_app_policy_find_or_create_update_and_delete(core: CloudflareCore, sandbox: CloudflareSandbox) -> None:
    account = sandbox.account_id
    app = await core.ensure_access_app(account, AccessAppSpec("chutes-app", "app.example.com"), intent())
    spec = AppPolicySpec("allow-team", include=EVERYONE)
    first = await core.ensure_app_policy(account, app.id, spec)
    second = await core.ensure_app_policy(account, app.id, spec)
    assert second.id == first.id and len(state(sandbox, "access_policies")) == 1
    assert sandbox.counters["access.app_policies.create"] == 1
    assert sandbox.counters["access.app_policies.update"] == 0

    tighter = AppPolicySpec("allow-team", include=({"email": {"email": "a@example.com"}},))
    updated = await core.ensure_app_policy(account, app.id, tighter)
    assert updated.id == first.id and updated.include == ({"email": {"email": "a@example.com"}},)

    await core.delete_app_policy(account, app.id, first.id)
    await core.delete_app_policy(account, app.id, first.id)  # already gone: fine
    await core.delete_access_app(account, app.id, "app.example.com", "chutes-app")
    await core.delete_access_app(account, app.id, "app.example.com", "chutes-app")  # already gone: fine
    assert state(sandbox, "access_apps") == [] and state(sandbox, "access_policies") == []


async def test_concurrent_finds_and_creates_cost_one_listing_of_the_account(
    core: CloudflareCore, sandbox: CloudflareSandbox
) -> None:
    account = sandbox.account_id
    specs = [AccessAppSpec(f"chutes-app-{i}", f"app-{i}.example.com") for i in range(20)]

    apps = await asyncio.gather(*(core.ensure_access_app(account, spec, intent()) for spec in specs))
    assert sandbox.counters == {"access.apps.list": 1, "access.apps.create": 20}
    sandbox.reset_log()
    again = await asyncio.gather(*(core.ensure_access_app(account, spec, Recorded(id=app.id))
                                   for spec, app in zip(specs, apps, strict=True)))

    assert again == apps and len(state(sandbox, "access_apps")) == 20
    assert sandbox.counters == {}  # the view of the account's apps, updated by our creates


async def test_an_app_created_with_its_allow_policy_costs_one_call_and_is_never_read_back(
    core: CloudflareCore, sandbox: CloudflareSandbox
) -> None:
    account = sandbox.account_id
    await core.refresh_access_apps(account)
    sandbox.reset_log()
    allow = AppPolicySpec("allow-team", include=EVERYONE, precedence=2)

    app = await core.ensure_access_app(account, AccessAppSpec("chutes-app", "app.example.com"), intent(), allow)
    [policy] = app.app_policies
    assert sandbox.counters == {"access.apps.create": 1}
    [stored] = state(sandbox, "access_policies")
    assert stored["id"] == policy.id and stored["app_id"] == app.id and stored["name"] == "allow-team"
    assert stored["include"] == list(EVERYONE) and app.policies == (policy.id,)

    found = await core.ensure_app_policy(account, app.id, allow)  # as the door asks right after: from the answer
    assert found.id == policy.id and sandbox.counters == {"access.apps.create": 1}

    await core.delete_access_app(account, app.id, "app.example.com", "chutes-app", since=now(-1))
    assert state(sandbox, "access_apps") == [] and state(sandbox, "access_policies") == []  # it went with its app
    assert sandbox.counters == {"access.apps.create": 1, "access.apps.delete": 1}


async def test_a_stale_view_never_makes_a_duplicate_nor_takes_over_a_foreign_app(
    core: CloudflareCore, sandbox: CloudflareSandbox, other: cloudflare.AsyncCloudflare
) -> None:
    account = sandbox.account_id
    await core.ensure_access_app(account, AccessAppSpec("chutes-first", "first.example.com"), intent())
    # Behind the view's back: someone's app on the next domain, and one named like another installation's.
    theirs = await other.zero_trust.access.applications.create(
        account_id=account, type="self_hosted", domain="app.example.com", name="hand-made")
    await other.zero_trust.access.applications.create(
        account_id=account, type="self_hosted", domain="other.example.com", name="chutes-other@elsewhere")
    before = state(sandbox, "access_apps")
    sandbox.reset_log()
    allow = AppPolicySpec("allow-team", include=EVERYONE)

    with pytest.raises(Conflict, match="hand-made"):
        await core.ensure_access_app(account, AccessAppSpec("chutes-app", "app.example.com"), intent(), allow)
    with pytest.raises(Conflict, match="chutes-other@elsewhere"):
        await core.ensure_access_app(account, AccessAppSpec("chutes-other", "other.example.com", adopt=True),
                                     intent())

    assert state(sandbox, "access_apps") == before and state(sandbox, "access_policies") == []
    # The create met Cloudflare's 409: listed again. A refusal is only decided on a listing of its own call.
    assert sandbox.counters == {"access.apps.create": 1, "access.apps.list": 2}

    # Adoption is decided on a listing made during the call, never on an old copy.
    await other.zero_trust.access.applications.update(
        theirs.id, account_id=account, type="self_hosted", domain="app.example.com", name="hand-made@elsewhere")  # type: ignore[union-attr]
    with pytest.raises(Conflict, match="hand-made@elsewhere"):
        await core.ensure_access_app(account, AccessAppSpec("chutes-app", "app.example.com", adopt=True), intent())
    assert [app["name"] for app in state(sandbox, "access_apps")] == [
        "chutes-first", "hand-made@elsewhere", "chutes-other@elsewhere"]


async def test_an_app_of_ours_the_view_missed_is_resolved_by_the_proof_not_duplicated(
    core: CloudflareCore, sandbox: CloudflareSandbox, other: cloudflare.AsyncCloudflare
) -> None:
    account = sandbox.account_id
    await core.refresh_access_apps(account)
    recorded = intent()
    made = await other.zero_trust.access.applications.create(  # another process of ours, after the intent
        account_id=account, type="self_hosted", domain="app.example.com", name="chutes-app")
    sandbox.reset_log()

    app = await core.ensure_access_app(account, AccessAppSpec("chutes-app", "app.example.com"), recorded)

    assert made is not None and app.id == made.id and len(state(sandbox, "access_apps")) == 1
    assert sandbox.counters == {"access.apps.create": 1, "access.apps.list": 1}  # refused (409), listed again


async def test_a_delete_checks_the_view_copy_learned_since_the_proof_and_refuses_an_app_renamed_since(
    core: CloudflareCore, sandbox: CloudflareSandbox, other: cloudflare.AsyncCloudflare
) -> None:
    account = sandbox.account_id
    recorded = intent()
    first = await core.ensure_access_app(account, AccessAppSpec("chutes-one", "one.example.com"), recorded)
    second = await core.ensure_access_app(account, AccessAppSpec("chutes-two", "two.example.com"), recorded)
    sandbox.reset_log()

    # Our own create's answer, learned after the proof: no read before the delete; deleted once, not twice.
    await core.delete_access_app(account, first.id, "one.example.com", "chutes-one", since=recorded.since)
    await core.delete_access_app(account, first.id, "one.example.com", "chutes-one", since=recorded.since)
    assert sandbox.counters == {"access.apps.delete": 1}

    # Re-purposed by someone since: renamed. A proof recorded after the view's copy was learned, or none: read.
    await other.zero_trust.access.applications.update(
        second.id, account_id=account, type="self_hosted", domain="two.example.com", name="hand-made")
    sandbox.reset_log()
    for since in (now(5), None):
        with pytest.raises(Conflict, match="hand-made"):
            await core.delete_access_app(account, second.id, "two.example.com", "chutes-two", since=since)
    # Listed again (the resync interval over), the view shows the rename too.
    await core.refresh_access_apps(account)
    with pytest.raises(Conflict, match="hand-made"):
        await core.delete_access_app(account, second.id, "two.example.com", "chutes-two", since=recorded.since)
    assert [app["name"] for app in state(sandbox, "access_apps")] == ["hand-made"]
    assert sandbox.counters == {"access.apps.get": 2, "access.apps.list": 1}


async def test_a_view_older_than_the_resync_interval_is_listed_again_and_a_gone_app_is_fine(
    sandbox: CloudflareSandbox, other: cloudflare.AsyncCloudflare, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [0.0]  # the views' clock: it moves when the test says (however slow the machine is)
    monkeypatch.setattr(core_module, "AppView", functools.partial(AppView, clock=lambda: clock[0]))
    account = sandbox.account_id
    async with core_with(sandbox, resync_interval=0.2) as core:
        recorded = intent()
        app = await core.ensure_access_app(account, AccessAppSpec("chutes-app", "app.example.com"), recorded)
        await other.zero_trust.access.applications.delete(app.id, account_id=account)
        sandbox.reset_log()
        await core.delete_access_app(account, app.id, "app.example.com", "chutes-app", since=recorded.since)
        assert sandbox.counters == {"access.apps.delete": 1}  # 404: gone, fine

        again = await core.ensure_access_app(account, AccessAppSpec("chutes-app", "app.example.com"), recorded)
        await other.zero_trust.access.applications.delete(again.id, account_id=account)
        clock[0] += 0.3  # the view ages past the 0.2 s resync interval
        sandbox.reset_log()
        repaired = await core.ensure_access_app(account, AccessAppSpec("chutes-app", "app.example.com"),
                                                Recorded(id=again.id, since=recorded.since))
        assert repaired.id != again.id and len(state(sandbox, "access_apps")) == 1
        assert sandbox.counters == {"access.apps.list": 1, "access.apps.create": 1}


async def test_an_app_deleted_behind_the_view_is_created_again_when_its_update_finds_it_gone(
    core: CloudflareCore, sandbox: CloudflareSandbox, other: cloudflare.AsyncCloudflare
) -> None:
    account = sandbox.account_id
    recorded = intent()
    app = await core.ensure_access_app(account, AccessAppSpec("chutes-app", "app.example.com"), recorded)
    await other.zero_trust.access.applications.delete(app.id, account_id=account)
    sandbox.reset_log()

    again = await core.ensure_access_app(account, AccessAppSpec("chutes-app", "app.example.com", "12h"),
                                         Recorded(id=app.id, since=recorded.since))

    assert again.id != app.id and [a["session_duration"] for a in state(sandbox, "access_apps")] == ["12h"]
    assert sandbox.counters == {"access.apps.update": 1, "access.apps.list": 1, "access.apps.create": 1}


async def test_otp_idp_is_created_once_and_adopted(
    core: CloudflareCore, sandbox: CloudflareSandbox, other: cloudflare.AsyncCloudflare
) -> None:
    first = await core.ensure_otp_idp(sandbox.account_id)
    second = await core.ensure_otp_idp(sandbox.account_id)
    assert first == second and first.type == "onetimepin"
    assert len(state(sandbox, "identity_providers")) == 1


async def test_concurrent_callers_share_one_otp_idp_lookup(core: CloudflareCore, sandbox: CloudflareSandbox) -> None:
    found = await asyncio.gather(*(core.ensure_otp_idp(sandbox.account_id) for _ in range(50)))
    assert len({idp.id for idp in found}) == 1 and len(state(sandbox, "identity_providers")) == 1
    assert sandbox.counters == {"idps.list": 1, "idps.create": 1}  # not 50 listings, nor 49 refused creates


async def test_an_otp_idp_deleted_by_hand_is_looked_up_again_after_a_refused_app(
    core: CloudflareCore, sandbox: CloudflareSandbox, other: cloudflare.AsyncCloudflare
) -> None:
    account = sandbox.account_id
    gone = await core.ensure_otp_idp(account)
    await other.zero_trust.identity_providers.delete(gone.id, account_id=account)
    spec = AccessAppSpec("chutes-app", "app.example.com", allowed_idps=(gone.id,))
    with pytest.raises(InvalidInput):  # Cloudflare refuses an app naming a provider that no longer exists
        await core.ensure_access_app(account, spec, intent())

    again = await core.ensure_otp_idp(account)
    app = await core.ensure_access_app(account, AccessAppSpec("chutes-app", "app.example.com",
                                                              allowed_idps=(again.id,)), intent())
    assert again.id != gone.id and app.allowed_idps == (again.id,)


async def test_existing_otp_idp_of_someone_else_is_adopted(
    core: CloudflareCore, sandbox: CloudflareSandbox, other: cloudflare.AsyncCloudflare
) -> None:
    made = await other.zero_trust.identity_providers.create(
        account_id=sandbox.account_id, name="PIN", type="onetimepin", config={}
    )
    adopted = await core.ensure_otp_idp(sandbox.account_id)
    assert made is not None and adopted.id == made.id
    assert sandbox.counters["idps.create"] == 1


async def test_service_token_secret_only_on_creation(core: CloudflareCore, sandbox: CloudflareSandbox) -> None:
    created = await core.ensure_service_token(sandbox.account_id, "chutes-token", TOKEN_DURATION, intent())
    again = await core.ensure_service_token(sandbox.account_id, "chutes-token", TOKEN_DURATION,
                                            Recorded(id=created.id))

    assert created.client_secret and created.client_id.endswith(".access")
    assert again.id == created.id and again.client_secret is None
    assert len(state(sandbox, "service_tokens")) == 1

    await core.delete_service_token(sandbox.account_id, created.id, "chutes-token")
    await core.delete_service_token(sandbox.account_id, created.id, "chutes-token")  # already gone: fine
    assert state(sandbox, "service_tokens") == []


async def test_service_token_create_with_lost_answer_is_adopted_with_a_fresh_secret(
    core: CloudflareCore, sandbox: CloudflareSandbox
) -> None:
    sandbox.faults.drop_after_write(op="service_tokens.create", count=1)

    token = await core.ensure_service_token(sandbox.account_id, "chutes-token", TOKEN_DURATION, intent())

    assert token.client_secret  # from the rotation
    assert len(state(sandbox, "service_tokens")) == 1  # no duplicate: the create was not replayed
    assert sandbox.counters["service_tokens.create"] == 1
    assert sandbox.counters["service_tokens.rotate"] == 1


async def test_an_intent_is_never_resolved_to_an_app_deleted_since_the_views_listing(
        core: CloudflareCore, sandbox: CloudflareSandbox) -> None:
    """A claim that lost its app's id (a crash, another replica's teardown) asks with an intent. The account's view,
    listed moments ago, still holds the app someone deleted meanwhile: taking it would record a protection that is
    not there, and the door's next write (the CNAME) would route the hostname with no Access application in front.
    The intent is resolved on a listing begun for it: the app is made again."""
    account = sandbox.account_id
    spec = AccessAppSpec("chutes-app", "app.example.com")
    first = await core.ensure_access_app(account, spec, intent())
    async with cloudflare.AsyncCloudflare(api_token=sandbox.token, base_url=sandbox.base_url, max_retries=0) as other:
        await other.zero_trust.access.applications.delete(first.id, account_id=account)
    sandbox.reset_log()
    again = await core.ensure_access_app(account, spec, intent())
    assert again.id != first.id
    assert [app["id"] for app in state(sandbox, "access_apps")] == [again.id]
    assert sandbox.counters == {"access.apps.list": 1, "access.apps.create": 1}
    assert await core.ensure_access_app(account, spec, Recorded(id=again.id)) == again  # proven: the view answers
