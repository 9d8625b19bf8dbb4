"""Zero Trust Access in the Cloudflare sandbox, through the real SDK: applications with embedded
policies, reusable and app-scoped policies, the one-time-PIN identity provider, service tokens."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import cloudflare
import httpx
import pytest

from chutes.sandbox.cloudflare import CloudflareSandbox

EVERYONE_AT_EXAMPLE = [{"email_domain": {"domain": "example.com"}}]


@pytest.fixture()
async def raw(sandbox: CloudflareSandbox) -> AsyncIterator[httpx.AsyncClient]:
    base = f"{sandbox.base_url}/accounts/{sandbox.account_id}/access"
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {sandbox.token}"}) as client:
        yield client


# The SDK types nearly every result as Optional and every rule/record as a wide union: for tests of
# wire behaviour the client is typed loosely.
Client = Any


def codes(error: cloudflare.APIStatusError) -> list[int | None]:
    return [e.code for e in error.errors]


async def test_only_one_onetimepin_provider_per_account(sandbox: CloudflareSandbox, cf: Client) -> None:
    idps = cf.zero_trust.identity_providers
    otp = await idps.create(account_id=sandbox.account_id, name="One-time PIN", type="onetimepin", config={})
    assert otp.type == "onetimepin" and otp.config.redirect_url  # type: ignore[union-attr]
    with pytest.raises(cloudflare.ConflictError) as caught:
        await idps.create(account_id=sandbox.account_id, name="Another PIN", type="onetimepin", config={})
    assert caught.value.errors[0].message == "access.api.error.conflict: a onetimepin connection already exists"
    listed = [i async for i in idps.list(account_id=sandbox.account_id)]
    assert [(i.id, i.type) for i in listed] == [(otp.id, "onetimepin")]
    renamed = await idps.update(otp.id or "", account_id=sandbox.account_id, name="PIN", type="onetimepin", config={})
    assert renamed.name == "PIN"  # type: ignore[union-attr]


async def test_service_token_secret_appears_only_on_create_and_rotate(
    sandbox: CloudflareSandbox, cf: Client, raw: httpx.AsyncClient
) -> None:
    tokens = cf.zero_trust.access.service_tokens
    created = await tokens.create(account_id=sandbox.account_id, name="op-token")
    assert created is not None and created.client_secret and created.duration == "8760h"
    assert re.fullmatch(r"[0-9a-f]{32}\.access", created.client_id or "")
    token_id = created.id or ""
    one_year = datetime.now(UTC) + timedelta(hours=8760)
    got = await tokens.get(token_id, account_id=sandbox.account_id)
    assert got is not None and got.expires_at is not None
    assert abs((got.expires_at - one_year).total_seconds()) < 60
    answers = [
        await raw.get("/service_tokens"),
        await raw.get(f"/service_tokens/{token_id}"),
        await raw.put(f"/service_tokens/{token_id}", json={"name": "renamed"}),
        await raw.post(f"/service_tokens/{token_id}/refresh"),
    ]
    for answer in answers:
        assert answer.status_code == 200 and "client_secret" not in answer.text, answer.request.url
    rotated = await tokens.rotate(token_id, account_id=sandbox.account_id)
    assert rotated is not None and rotated.client_secret not in (None, created.client_secret)
    deleted = await raw.delete(f"/service_tokens/{token_id}")
    assert deleted.status_code == 200 and "client_secret" not in deleted.text
    assert "client_secret" not in str(sandbox.snapshot()["service_tokens"]).replace("'client_secret': '<redacted>'", "")
    with pytest.raises(cloudflare.NotFoundError) as caught:
        await tokens.get(token_id, account_id=sandbox.account_id)
    assert caught.value.errors[0].message == "access.api.error.not_found" and codes(caught.value) == [12130]


async def test_service_token_listing_is_paged_as_documented(
    sandbox: CloudflareSandbox, cf: Client, raw: httpx.AsyncClient
) -> None:
    """What the operator's view of the tokens relies on: one unfiltered listing, ``page``/``per_page``, and
    ``result_info`` saying how many there are; a page past the end is empty, never an error."""
    tokens = cf.zero_trust.access.service_tokens
    for name in ("bot-a", "bot-b", "ci"):
        await tokens.create(account_id=sandbox.account_id, name=name)
    pages = [(await raw.get("/service_tokens", params={"per_page": 2, "page": page})).json() for page in (1, 2, 3)]

    assert [[t["name"] for t in page["result"]] for page in pages] == [["bot-a", "bot-b"], ["ci"], []]
    assert [page["result_info"] for page in pages] == [
        {"page": page, "per_page": 2, "count": count, "total_count": 3, "total_pages": 2}
        for page, count in ((1, 2), (2, 1), (3, 0))]
    assert all("client_secret" not in t for page in pages for t in page["result"])
    walked = [t.name async for t in tokens.list(account_id=sandbox.account_id, per_page=1)]
    assert walked == ["bot-a", "bot-b", "ci"]


async def test_app_embeds_reusable_policies_which_cannot_be_deleted_while_used(
    sandbox: CloudflareSandbox, cf: Client, raw: httpx.AsyncClient
) -> None:
    access, account = cf.zero_trust.access, sandbox.account_id
    allow = await access.policies.create(
        account_id=account, name="allow", decision="allow", include=EVERYONE_AT_EXAMPLE
    )
    bots = await access.policies.create(
        account_id=account, name="bots", decision="non_identity", include=[{"any_valid_service_token": {}}]
    )
    assert allow is not None and bots is not None and allow.reusable and allow.app_count == 0
    document: dict[str, Any] = {"type": "self_hosted", "domain": "app.example.com", "name": "app"}
    clash = [{"id": bots.id, "precedence": 1}, {"id": allow.id, "precedence": 1}]
    refused = await raw.post("/apps", json=document | {"policies": clash})
    assert refused.status_code == 400 and sandbox.snapshot()["access_apps"] == {}
    answer = await raw.post("/apps", json=document | {"policies": [bots.id, {"id": allow.id, "precedence": 1}]})
    assert answer.status_code == 201
    app = answer.json()["result"]
    assert re.fullmatch(r"[0-9a-f]{64}", app["aud"]) and app["session_duration"] == "24h"
    assert [(p["id"], p["precedence"], p["decision"]) for p in app["policies"]] == [
        (allow.id, 1, "allow"),
        (bots.id, 2, "non_identity"),
    ]
    assert (await access.policies.get(allow.id or "", account_id=account)).app_count == 1  # type: ignore[union-attr]
    with pytest.raises(cloudflare.BadRequestError) as caught:
        await access.policies.delete(allow.id or "", account_id=account)
    assert codes(caught.value) == [12130]
    listed = [p async for p in access.applications.policies.list(app["id"], account_id=account)]
    assert [p.id for p in listed] == [allow.id, bots.id]
    deleted = await raw.delete(f"/apps/{app['id']}")
    assert (deleted.status_code, deleted.json()["result"]) == (202, {"id": app["id"]})
    assert await access.policies.delete(allow.id or "", account_id=account) is not None


async def test_app_put_is_a_full_replace(sandbox: CloudflareSandbox, cf: Client) -> None:
    apps, account = cf.zero_trust.access.applications, sandbox.account_id
    policy = await cf.zero_trust.access.policies.create(
        account_id=account, name="allow", decision="allow", include=EVERYONE_AT_EXAMPLE
    )
    assert policy is not None
    app = await apps.create(
        account_id=account,
        type="self_hosted",
        domain="app.example.com",
        session_duration="1h",
        policies=[policy.id or ""],
        skip_interstitial=True,
    )
    assert app is not None and app.id
    replaced = await apps.update(app.id, account_id=account, type="self_hosted", domain="app.example.com")
    assert replaced is not None
    view: Any = replaced
    assert (view.session_duration, view.policies, view.skip_interstitial, view.aud) == ("24h", [], False, app.aud)  # type: ignore[union-attr]


async def test_app_errors_not_found_conflict_foreign_domain_unknown_policy_leave_no_trace(
    sandbox: CloudflareSandbox, cf: Client
) -> None:
    apps, account = cf.zero_trust.access.applications, sandbox.account_id
    await apps.create(account_id=account, type="self_hosted", domain="app.example.com")
    before = sandbox.snapshot()
    with pytest.raises(cloudflare.ConflictError) as conflict:
        await apps.create(account_id=account, type="self_hosted", domain="APP.example.com")
    assert codes(conflict.value) == [12131]
    with pytest.raises(cloudflare.BadRequestError) as foreign:
        await apps.create(account_id=account, type="self_hosted", domain="app.elsewhere.org")
    assert foreign.value.errors[0].message == "access.api.error.invalid_request: domain does not belong to zone"
    inline = {"name": "inline", "decision": "allow", "include": EVERYONE_AT_EXAMPLE}
    with pytest.raises(cloudflare.BadRequestError):
        await apps.create(
            account_id=account,
            type="self_hosted",
            domain="other.example.com",
            policies=[inline, "00000000-0000-0000-0000-000000000000"],  # type: ignore[list-item]
        )
    assert sandbox.snapshot() == before
    missing = "00000000-0000-0000-0000-000000000000"
    for call in (
        apps.get(missing, account_id=account),
        apps.delete(missing, account_id=account),
        apps.update(missing, account_id=account, type="self_hosted", domain="app.example.com"),
    ):
        with pytest.raises(cloudflare.NotFoundError) as caught:
            await call
        assert caught.value.errors[0].message == "access.api.error.not_found"


async def test_app_list_filters(sandbox: CloudflareSandbox, cf: Client) -> None:
    apps, account = cf.zero_trust.access.applications, sandbox.account_id
    first = await apps.create(account_id=account, type="self_hosted", domain="app.example.com", name="App")
    await apps.create(account_id=account, type="self_hosted", domain="app.example.com/admin", name="Admin")
    assert first is not None

    async def names(**filters: Any) -> list[str]:
        return sorted([a.name async for a in apps.list(account_id=account, **filters) if a.name])

    assert await names(domain="app.example.com") == ["Admin", "App"]
    assert await names(domain="app.example.com", exact=True) == ["App"]
    assert await names(name="adm") == ["Admin"]
    assert await names(aud=first.aud) == ["App"]
    assert await names(search="ADMIN") == ["Admin"]


async def test_app_scoped_policies_and_rules_referencing_service_tokens(sandbox: CloudflareSandbox, cf: Client) -> None:
    access, account = cf.zero_trust.access, sandbox.account_id
    app = await access.applications.create(account_id=account, type="self_hosted", domain="svc.example.com")
    reusable = await access.policies.create(account_id=account, name="r", decision="allow", include=EVERYONE_AT_EXAMPLE)
    assert app is not None and app.id and reusable is not None and reusable.id
    await access.applications.update(
        app.id, account_id=account, type="self_hosted", domain="svc.example.com", policies=[reusable.id]
    )
    scoped = access.applications.policies
    with pytest.raises(cloudflare.BadRequestError):
        await scoped.create(
            app.id,
            account_id=account,
            name="bots",
            decision="non_identity",
            include=[{"service_token": {"token_id": "nope"}}],
        )
    token = await access.service_tokens.create(account_id=account, name="bot")
    assert token is not None
    bots = await scoped.create(
        app.id,
        account_id=account,
        name="bots",
        decision="non_identity",
        include=[{"service_token": {"token_id": token.id or ""}}],
        precedence=5,
    )
    assert bots is not None and bots.id and bots.precedence == 5
    assert [p.id async for p in scoped.list(app.id, account_id=account)] == [reusable.id, bots.id]
    with pytest.raises(cloudflare.BadRequestError):
        await scoped.delete(reusable.id, app_id=app.id, account_id=account)
    updated = await scoped.update(
        bots.id, app_id=app.id, account_id=account, name="robots", decision="non_identity", include=[{"everyone": {}}]
    )
    assert updated is not None and (updated.name, updated.precedence) == ("robots", 5)
    assert await scoped.delete(bots.id, app_id=app.id, account_id=account) is not None
    with pytest.raises(cloudflare.NotFoundError):
        await scoped.get(bots.id, app_id=app.id, account_id=account)
    assert set(sandbox.snapshot()["access_policies"]) == {reusable.id}
