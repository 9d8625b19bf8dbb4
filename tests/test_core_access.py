"""Access apps, policies, the one-time-PIN IdP and service tokens (emulator, real SDK)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import cloudflare
import pytest

from chutes.cloudflare_core import (
    AccessAppSpec,
    AppPolicySpec,
    CloudflareCore,
    Conflict,
    Recorded,
)
from chutes.sandbox.cloudflare import CloudflareSandbox
from core_harness import TOKEN_DURATION, intent

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


async def test_otp_idp_is_created_once_and_adopted(
    core: CloudflareCore, sandbox: CloudflareSandbox, other: cloudflare.AsyncCloudflare
) -> None:
    first = await core.ensure_otp_idp(sandbox.account_id)
    second = await core.ensure_otp_idp(sandbox.account_id)
    assert first == second and first.type == "onetimepin"
    assert len(state(sandbox, "identity_providers")) == 1


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
