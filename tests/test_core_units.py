"""Pure parts of the core: error translation, request budget, DNS changes, SDK auth set-up."""

from __future__ import annotations

import asyncio
from typing import Any

import cloudflare
import httpx
import pytest

from chutes.cloudflare_core import (
    CloudflareClient,
    Conflict,
    CredentialsInvalid,
    DesiredRecord,
    DnsRecord,
    InvalidInput,
    NotFound,
    RateLimited,
    RequestBudget,
    ServiceToken,
    TransientError,
    Unroutable,
    marker,
    shared_budget,
    translate,
)
from chutes.cloudflare_core.dns import _Request, change_for


def status_error(status: int, codes: list[int], headers: dict[str, str] | None = None) -> cloudflare.APIStatusError:
    body = {"success": False, "errors": [{"code": c, "message": f"message {c}"} for c in codes], "result": None}
    request = httpx.Request("GET", "http://cf.test/client/v4/x")
    response = httpx.Response(status, headers=headers or {}, json=body, request=request)
    return cloudflare.APIStatusError(f"Error code: {status}", response=response, body=body)


@pytest.mark.parametrize(
    ("status", "codes", "headers", "kind", "delay"),
    [
        (401, [10001], None, CredentialsInvalid, None),
        (403, [10000], None, CredentialsInvalid, None),
        (400, [6003, 6111], None, CredentialsInvalid, None),
        (404, [81044], None, NotFound, None),
        (404, [7003], None, Unroutable, None),  # a listing's account or zone is gone
        (409, [1013], None, Conflict, None),
        (400, [81053], None, Conflict, None),
        (400, [81058], None, Conflict, None),
        (429, [971], {"Retry-After": "300"}, RateLimited, 300.0),
        (429, [971], None, RateLimited, 60.0),
        (503, [], {"Retry-After": "2"}, TransientError, 2.0),
        (408, [], None, TransientError, 5.0),
        (400, [9021], None, InvalidInput, None),
        (422, [], None, InvalidInput, None),
    ],
)
def test_translate(
    status: int, codes: list[int], headers: dict[str, str] | None, kind: type[Exception], delay: float | None
) -> None:
    error = translate(status_error(status, codes, headers))
    assert type(error) is kind
    assert error.status == status and error.codes == tuple(codes)
    for code in codes:
        assert f"[{code}]" in str(error)
    if delay is not None:
        assert isinstance(error, TransientError) and error.delay == delay


def test_translate_connection_errors() -> None:
    request = httpx.Request("POST", "http://cf.test/client/v4/x")
    assert type(translate(cloudflare.APIConnectionError(request=request))) is TransientError
    assert type(translate(cloudflare.APITimeoutError(request=request))) is TransientError


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_budget_spends_waits_and_refuses() -> None:
    clock = FakeClock()
    budget = RequestBudget(limit=2, window=10.0, max_wait=5.0, clock=clock)
    await budget.acquire()
    await budget.acquire()
    assert budget.remaining == 0
    with pytest.raises(RateLimited) as refused:
        await budget.acquire()  # the first slot frees in 10 s > max_wait
    assert refused.value.delay == pytest.approx(10.0)
    clock.now += 10.0
    assert budget.remaining == 2


async def test_budget_waits_when_short_by_little() -> None:
    budget = RequestBudget(limit=1, window=0.05, max_wait=5.0)
    await budget.acquire()
    started = asyncio.get_running_loop().time()
    await budget.acquire()
    assert asyncio.get_running_loop().time() - started >= 0.04


async def test_budget_block_after_429_makes_every_caller_fail_fast() -> None:
    clock = FakeClock()
    budget = RequestBudget(clock=clock)
    budget.block_for(300.0)
    assert budget.remaining == 0
    with pytest.raises(RateLimited) as refused:
        await budget.acquire()
    assert refused.value.delay == pytest.approx(300.0)
    budget.block_for(10.0)  # never shortens a block
    assert budget.blocked_for == pytest.approx(300.0)


def test_shared_budget_is_one_per_token() -> None:
    assert shared_budget("token-one") is shared_budget("token-one")
    assert shared_budget("token-one") is not shared_budget("token-two")


async def test_bearer_token_wins_over_ambient_email_and_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOUDFLARE_EMAIL", "someone@example.com")
    monkeypatch.setenv("CLOUDFLARE_API_KEY", "global-key")
    monkeypatch.setenv("CLOUDFLARE_CUSTOM_HEADERS", "X-Auth-Email: someone@example.com\nX-Extra: 1")
    client = CloudflareClient("secret-token", "http://127.0.0.1:9/client/v4", budget=RequestBudget())
    try:
        assert client.sdk.auth_headers == {"Authorization": "Bearer secret-token"}
        headers = {k.lower(): v for k, v in client.sdk.default_headers.items() if isinstance(v, str)}
        assert "x-auth-email" not in headers and "x-auth-key" not in headers
        assert headers["x-extra"] == "1"
    finally:
        await client.aclose()


async def test_base_url_falls_back_to_the_sdk_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOUDFLARE_BASE_URL", "http://127.0.0.1:9/client/v4")
    client = CloudflareClient("t", budget=RequestBudget())
    try:
        assert client.base_url.startswith("http://127.0.0.1:9/client/v4")
    finally:
        await client.aclose()


def test_empty_token_is_refused() -> None:
    with pytest.raises(CredentialsInvalid):
        CloudflareClient("")


def test_service_token_repr_hides_the_secret() -> None:
    token = ServiceToken(id="1", name="n", client_id="cid.access", client_secret="s3cr3t-value")
    assert "s3cr3t-value" not in repr(token)


# -- DNS changes -------------------------------------------------------------------------------
OWNER = "cluster-a"
DESIRED = DesiredRecord("app.example.com", "CNAME", "t1.cfargotunnel.com", source="Pod/ns/app")
OURS = marker(OWNER, "Pod/ns/app")


def record(
    type: str = "CNAME", content: str = "t1.cfargotunnel.com", comment: str | None = OURS, **kw: Any
) -> DnsRecord:
    fields: dict[str, Any] = {"id": "r1", "name": "app.example.com", "proxied": True, "ttl": 1}
    fields.update(kw)
    return DnsRecord(type=type, content=content, comment=comment, **fields)


async def ensure(existing: list[DnsRecord], desired: DesiredRecord = DESIRED) -> Any:
    request = _Request(name=desired.name, type=desired.type, owner_id=OWNER, desired=desired)
    return request, change_for(request, existing)


async def test_change_absent_record_is_posted_with_marker_and_no_tags() -> None:
    _, change = await ensure([])
    assert change.post == {
        "name": "app.example.com",
        "type": "CNAME",
        "content": "t1.cfargotunnel.com",
        "ttl": 1,
        "proxied": True,
        "comment": OURS,
    }


async def test_change_ours_and_equal_needs_nothing() -> None:
    request, change = await ensure([record()])
    assert change is None and request.done.result() == record()


async def test_change_ours_and_different_is_patched() -> None:
    _, change = await ensure([record(content="old.cfargotunnel.com")])
    assert change.patch is not None and change.patch["id"] == "r1" and change.post is None


@pytest.mark.parametrize(
    "existing",
    [
        record(comment=None),
        record(comment=marker("cluster-b", "Pod/ns/app")),
        record(type="A", content="192.0.2.1", comment="hand-made"),
    ],
)
async def test_change_foreign_record_is_a_conflict(existing: DnsRecord) -> None:
    with pytest.raises(Conflict):
        await ensure([existing])


async def test_change_our_record_of_a_clashing_type_is_swapped() -> None:
    _, change = await ensure([record(type="A", content="192.0.2.1", id="old")])
    assert change.deletes == ["old"] and change.post is not None


async def test_change_delete() -> None:
    request = _Request(name="app.example.com", type="CNAME", owner_id=OWNER, desired=None, source="Pod/ns/app")
    assert change_for(request, [record()]).deletes == ["r1"]  # type: ignore[union-attr]
    assert change_for(request, []) is None
    with pytest.raises(Conflict):
        change_for(request, [record(comment="not ours")])
    with pytest.raises(Conflict) as held:  # ours, for another source
        change_for(request, [record(comment=marker(OWNER, "Pod/ns/other"))])
    assert held.value.holder == "Pod/ns/other" and "held by Pod/ns/other" in held.value.message


def test_public_names_are_exported_once_and_sorted() -> None:
    import chutes.cloudflare_core as package

    assert package.__all__ == sorted(set(package.__all__))
    for name in package.__all__:
        assert getattr(package, name) is not None
    public = {name for name in vars(package) if not name.startswith("_")}
    modules = {"access", "budget", "client", "coalescing", "core", "dns", "errors", "metrics", "models"}
    modules |= {"ownership", "tunnel_config", "tunnels", "zones", "annotations", "adoption"}
    modules |= {"drift", "gate", "inventory", "proofs", "credentials", "access_view", "account_view"}
    modules |= {"token_view", "service_tokens", "tunnel_lookup", "reusable_policies", "dns_plan"}
    assert public - modules == set(package.__all__)
