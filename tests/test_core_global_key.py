"""A global API key with its account's email (the Tunnel door's second kind of credential, as adyanth's operator
reads it): the emulator answers X-Auth-Key + X-Auth-Email as Cloudflare does, and the core authenticates with
them through the real SDK, never showing the key."""

from __future__ import annotations

import traceback
from collections.abc import AsyncIterator

import httpx
import pytest

from chutes.cloudflare_core import ApiCredentials, CloudflareCore, CredentialsInvalid, RequestBudget
from chutes.cores import CorePool, fingerprint
from chutes.sandbox.cloudflare import CloudflareSandbox, SandboxConfig
from chutes.settings import Settings

EMAIL = "admin@example.org"
CANARY_KEY = "c0ffee" * 6 + "1"  # 37 lowercase hex digits, the shape of Cloudflare's global keys
WRONG_KEY = "deadbeef" * 4 + "00000"


@pytest.fixture()
async def keyed() -> AsyncIterator[CloudflareSandbox]:
    """The emulator with one API token and one global API key (the canary)."""
    sb = CloudflareSandbox(SandboxConfig.from_dict({
        "global_keys": [{"name": "legacy", "email": EMAIL, "key": CANARY_KEY}]}))
    await sb.start(host="127.0.0.1", port=0)
    try:
        yield sb
    finally:
        await sb.stop()


async def _get(sandbox: CloudflareSandbox, headers: dict[str, str]) -> tuple[int, list[dict[str, object]]]:
    async with httpx.AsyncClient() as http:  # the emulator serves from this test's event loop
        response = await http.get(f"{sandbox.base_url}/zones", headers=headers)
    body = response.json()
    return response.status_code, [{"code": e["code"], "message": e["message"],
                                   **({"chain": [c["code"] for c in e["error_chain"]]} if e.get("error_chain") else {})}
                                  for e in body["errors"]]


@pytest.mark.parametrize(("headers", "status", "errors"), [
    ({"X-Auth-Key": CANARY_KEY}, 403, [{"code": 9106, "message": "Missing X-Auth-Email header"}]),
    ({"X-Auth-Email": EMAIL}, 403, [{"code": 9107, "message": "Missing X-Auth-Key header"}]),
    ({"X-Auth-Key": WRONG_KEY, "X-Auth-Email": EMAIL}, 403,
     [{"code": 9103, "message": "Unknown X-Auth-Key or X-Auth-Email"}]),
    ({"X-Auth-Key": CANARY_KEY, "X-Auth-Email": "someone@example.org"}, 403,
     [{"code": 9103, "message": "Unknown X-Auth-Key or X-Auth-Email"}]),
    ({"X-Auth-Key": "not-a-key", "X-Auth-Email": EMAIL}, 400,
     [{"code": 6003, "message": "Invalid request headers", "chain": [6103]}]),
    ({"X-Auth-Key": CANARY_KEY, "X-Auth-Email": "admin"}, 400,
     [{"code": 6003, "message": "Invalid request headers", "chain": [6102]}]),
    ({"X-Auth-Key": "x", "X-Auth-Email": "y"}, 400,
     [{"code": 6003, "message": "Invalid request headers", "chain": [6102, 6103]}]),
    ({"Authorization": f"Bearer {CANARY_KEY}"}, 403, [{"code": 10000, "message": "Authentication error"}]),
], ids=["no email", "no key", "wrong key", "wrong email", "key malformed", "email malformed", "both malformed",
        "key as a bearer token"])
async def test_the_emulator_refuses_bad_global_key_headers_as_cloudflare_does(
        keyed: CloudflareSandbox, headers: dict[str, str], status: int, errors: list[dict[str, object]]) -> None:
    assert await _get(keyed, headers) == (status, errors)
    assert [(r.status, r.token_name) for r in keyed.requests] == [(status, None)]  # refused, by nobody


async def test_the_emulator_serves_a_seeded_key_with_its_email_in_any_case(keyed: CloudflareSandbox) -> None:
    assert await _get(keyed, {"X-Auth-Key": CANARY_KEY, "X-Auth-Email": EMAIL.upper()}) == (200, [])
    assert [r.token_name for r in keyed.requests] == ["legacy"]


async def test_a_core_on_a_global_key_sends_the_key_and_email_and_works(keyed: CloudflareSandbox) -> None:
    credentials = ApiCredentials(key=CANARY_KEY, email=EMAIL)
    async with CloudflareCore(credentials, keyed.base_url, owner_id="test", budget=RequestBudget()) as core:
        zone = await core.find_zone("example.com")
        assert zone is not None and zone.account_id == keyed.account_id
        assert (await core.verify_access(keyed.account_id, zone.id)).id == zone.id
    assert {r.token_name for r in keyed.requests} == {"legacy"}  # every call authenticated by the key


async def test_a_refused_global_key_is_credentials_invalid_and_never_shown(keyed: CloudflareSandbox) -> None:
    wrong = ApiCredentials(key=WRONG_KEY, email=EMAIL)
    async with CloudflareCore(wrong, keyed.base_url, owner_id="test", budget=RequestBudget()) as core:
        with pytest.raises(CredentialsInvalid) as refused:
            await core.find_zone("example.com")
    assert refused.value.status == 403 and 9103 in refused.value.codes
    text = "".join(traceback.format_exception(refused.value))
    assert WRONG_KEY not in text and "Unknown X-Auth-Key or X-Auth-Email" in text


def test_credentials_never_show_their_secret_and_refuse_a_malformed_one() -> None:
    credentials = ApiCredentials(key=CANARY_KEY, email=EMAIL)
    assert CANARY_KEY not in repr(credentials) and CANARY_KEY not in str(credentials)
    assert credentials.fingerprint != ApiCredentials(key=CANARY_KEY, email="other@example.org").fingerprint
    assert ApiCredentials(token="tok").fingerprint == fingerprint("tok")  # a token's, as before
    assert ApiCredentials(key="line\nbreak", email=EMAIL).defect() == (
        "the Cloudflare global API key holds a character other than printable ASCII without whitespace (e.g. a "
        "line break inside it)")
    assert ApiCredentials(key=CANARY_KEY, email="no at sign").defect() == (
        "the email of the Cloudflare global API key is not an email address (printable ASCII without whitespace, "
        "one @)")
    with pytest.raises(CredentialsInvalid) as refused:
        CloudflareCore(ApiCredentials(key="line\nbreak" + CANARY_KEY, email=EMAIL), "http://127.0.0.1:9")
    assert CANARY_KEY not in str(refused.value)
    with pytest.raises(ValueError, match="needs its account's email"):
        ApiCredentials(key=CANARY_KEY)
    with pytest.raises(ValueError, match="exactly one"):
        ApiCredentials(token="t", key=CANARY_KEY, email=EMAIL)


async def test_the_pool_keeps_one_core_per_key_and_email(keyed: CloudflareSandbox) -> None:
    pool = CorePool(Settings(cloudflare_base_url=keyed.base_url))
    try:
        first = pool.core_for(ApiCredentials(key=CANARY_KEY, email=EMAIL))
        assert pool.core_for(ApiCredentials(key=CANARY_KEY, email=EMAIL)) is first
        assert pool.core_for(ApiCredentials(key=CANARY_KEY, email="b@example.org")) is not first
        assert pool.core_for(keyed.token) is not first and len(pool) == 3
    finally:
        await pool.aclose()
