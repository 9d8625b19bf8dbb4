"""Tunnels, Access applications and service tokens are changed or deleted only with a proof (issue 11).

They carry no marker of ours, so the ledger's `Recorded` (the id, or the intent to create and a
`created_at` after it) is the proof: ids and names from a user-writable status are hints, and what they
point at is read and checked before anything is deleted. Everything here runs against the emulator
through the real SDK; foreign objects are made by another client (plain SDK) and must stay byte-identical.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import cloudflare
import pytest

from chutes.cloudflare_core import (
    AccessAppSpec,
    CloudflareCore,
    Conflict,
    InvalidInput,
    Recorded,
)
from chutes.sandbox.cloudflare import CloudflareSandbox
from harness.core import TOKEN_DURATION, ZONE, cloudflare_state, core_with, live, now, writes

OTHER_ZONE = "example.net"
BLOG = f"blog.{ZONE}"
OURS = "chute-ns-blog"


def frozen(sandbox: CloudflareSandbox) -> str:
    """Every object the emulator holds, as exact text (byte-identical comparisons)."""
    return json.dumps(cloudflare_state(sandbox), sort_keys=True)


def backdate(sandbox: CloudflareSandbox, kind: str, object_id: str, days: int = 30) -> None:
    """Make an object look as if it was made `days` ago (hand-made long before our intent)."""
    moment = (datetime.now(UTC) - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    state = sandbox.state
    with state.lock:
        if kind == "tunnels":
            state.tunnels[object_id].created_at = moment
        elif kind == "access_apps":
            state.apps[object_id]["created_at"] = moment
        else:
            state.service_tokens[object_id]["created_at"] = moment


async def hand_made_tunnel(cf: cloudflare.AsyncCloudflare, sandbox: CloudflareSandbox, name: str, *,
                           connected: bool = True) -> str:
    made = await cf.zero_trust.tunnels.cloudflared.create(
        account_id=sandbox.account_id, name=name, config_src="cloudflare"
    )
    assert made is not None and made.id
    if connected:
        sandbox.connect_tunnel(made.id)
    return made.id


async def hand_made_app(cf: cloudflare.AsyncCloudflare, sandbox: CloudflareSandbox, name: str, domain: str) -> str:
    made = await cf.zero_trust.access.applications.create(
        account_id=sandbox.account_id, type="self_hosted", domain=domain, name=name, session_duration="1h"
    )
    assert made is not None and made.id
    return made.id


async def hand_made_token(cf: cloudflare.AsyncCloudflare, sandbox: CloudflareSandbox, name: str) -> str:
    made = await cf.zero_trust.access.service_tokens.create(account_id=sandbox.account_id, name=name)
    assert made is not None and made.id
    return made.id


# --- the value object -------------------------------------------------------------------------------


def test_recorded_covers_its_id_or_an_intent_followed_by_a_create() -> None:
    since = "2026-03-01T12:00:00Z"
    intent = Recorded(since=since)
    assert intent.covers("t1", "2026-03-01T12:00:05.123456789Z")  # nanoseconds, as some timestamps have
    assert intent.covers("t1", "2026-03-01T11:59:01Z")  # Cloudflare's clock a little behind ours
    assert not intent.covers("t1", "2026-03-01T11:58:59Z")  # made before the intent: someone else's
    assert not intent.covers("t1", None) and not intent.covers("t1", "not a time")
    assert Recorded(id="t1", since=since).covers("t1", "2020-01-01T00:00:00Z")  # the id is the proof
    assert not Recorded(id="t1", since=since).covers("t2", "2026-03-01T12:00:05Z")  # an id excludes others
    assert not Recorded().covers("t1", "2026-03-01T12:00:05Z")
    assert Recorded(since="2026-03-01T13:00:00+01:00").covers("t1", "2026-03-01T12:00:00Z")
    with pytest.raises(InvalidInput, match="not an ISO 8601 time"):
        Recorded(since="yesterday")


# --- issue 11 item 3: ids pointing at someone else's objects ------------------------------------------


async def test_deleting_by_foreign_ids_is_refused_and_leaves_them_byte_identical(
    core: CloudflareCore, sandbox: CloudflareSandbox, cf: cloudflare.AsyncCloudflare
) -> None:
    account = sandbox.account_id
    since = now()
    tunnel = await core.ensure_tunnel(account, OURS, Recorded(since=since))
    app = await core.ensure_access_app(account, AccessAppSpec(OURS, BLOG), Recorded(since=since))
    # Someone else's: a connected tunnel serving another zone, and the company's SSO portal.
    vpn = await hand_made_tunnel(cf, sandbox, "corp-vpn")
    await cf.dns.records.create(zone_id=sandbox.zone_id(OTHER_ZONE), name=f"vpn.{OTHER_ZONE}", type="CNAME",
                                content=f"{vpn}.cfargotunnel.com", proxied=True, ttl=1)
    sso = await hand_made_app(cf, sandbox, "Corp SSO portal", f"sso.{ZONE}")
    before = frozen(sandbox)
    sandbox.reset_log()

    # A status patched with their ids, and a deleting gateway expecting its own name and domain:
    for connected_ok in (False, True):
        with pytest.raises(Conflict, match=r"corp-vpn.*not the tunnel 'chute-ns-blog'"):
            await core.delete_tunnel(account, vpn, OURS, connected_ok=connected_ok)
    with pytest.raises(Conflict, match=r"Corp SSO portal.*left untouched"):
        await core.delete_access_app(account, sso, BLOG, OURS)
    with pytest.raises(Conflict):  # the right domain is not enough: the name must match too
        await core.delete_access_app(account, app.id, BLOG, "chute-ns-other")

    assert frozen(sandbox) == before and writes(sandbox) == []

    # Ours, by their recorded ids, go; theirs stay.
    await core.delete_access_app(account, app.id, BLOG, OURS)
    await core.delete_tunnel(account, tunnel.id, OURS, connected_ok=False)
    assert [a["id"] for a in live(sandbox, "access_apps")] == [sso]
    assert [t["id"] for t in live(sandbox, "tunnels")] == [vpn]
    assert await core.get_access_app(account, sso) is not None
    foreign = await core.get_tunnel(account, vpn)
    assert foreign is not None and foreign.connected and not foreign.deleted


async def test_a_hand_made_tunnel_named_like_ours_is_never_taken_nor_deleted(
    core: CloudflareCore, sandbox: CloudflareSandbox, cf: cloudflare.AsyncCloudflare
) -> None:
    account = sandbox.account_id
    vpn = await hand_made_tunnel(cf, sandbox, "chute-ops-vpn")
    backdate(sandbox, "tunnels", vpn)
    before = frozen(sandbox)
    sandbox.reset_log()

    for recorded in (Recorded(since=now()), Recorded(id="6f1f8a8e-0000-4000-8000-000000000000", since=now())):
        with pytest.raises(Conflict, match="no record of creating it"):
            await core.ensure_tunnel(account, "chute-ops-vpn", recorded)
    # Even named as asked (a sweep that believes it is ours): connections are never cut.
    with pytest.raises(Conflict, match="has active connections"):
        await core.delete_tunnel(account, vpn, "chute-ops-vpn", connected_ok=False)

    assert frozen(sandbox) == before and writes(sandbox) == []
    assert sandbox.counters["tunnels.delete"] == 0


async def test_a_tunnel_is_cascaded_only_when_its_connections_may_go(
    core: CloudflareCore, sandbox: CloudflareSandbox
) -> None:
    account = sandbox.account_id
    quiet = await core.ensure_tunnel(account, "chute-ns-quiet", Recorded(since=now()))
    busy = await core.ensure_tunnel(account, "chute-ns-busy", Recorded(since=now()))
    sandbox.connect_tunnel(busy.id)

    await core.delete_tunnel(account, quiet.id, "chute-ns-quiet", connected_ok=False)
    await core.delete_tunnel(account, busy.id, "chute-ns-busy", connected_ok=True)
    await core.delete_tunnel(account, busy.id, "chute-ns-busy", connected_ok=False)  # already deleted: fine

    assert [c.query.get("cascade") for c in sandbox.calls(op="tunnels.delete")] == [None, "true"]
    assert live(sandbox, "tunnels") == []


async def test_a_connector_attaching_between_the_read_and_the_delete_keeps_the_tunnel(
    core: CloudflareCore, sandbox: CloudflareSandbox
) -> None:
    account = sandbox.account_id
    tunnel = await core.ensure_tunnel(account, "chute-ns-race", Recorded(since=now()))

    def attach() -> None:
        sandbox.connect_tunnel(tunnel.id)

    sandbox.faults.before("tunnels.delete", attach)

    with pytest.raises(Conflict, match="has active connections"):
        await core.delete_tunnel(account, tunnel.id, "chute-ns-race", connected_ok=False)
    assert [t["id"] for t in live(sandbox, "tunnels")] == [tunnel.id]


# --- a crash between the create and recording its id ---------------------------------------------------

Ensure = Callable[[CloudflareCore, CloudflareSandbox, Recorded], Awaitable[str]]
MakeByHand = Callable[[cloudflare.AsyncCloudflare, CloudflareSandbox], Awaitable[str]]


@dataclasses.dataclass(frozen=True)
class Kind:
    store: str  # the emulator's snapshot key
    create_op: str
    ensure: Ensure
    by_hand: MakeByHand


async def _ensure_tunnel(core: CloudflareCore, sandbox: CloudflareSandbox, recorded: Recorded) -> str:
    return (await core.ensure_tunnel(sandbox.account_id, OURS, recorded)).id


async def _ensure_app(core: CloudflareCore, sandbox: CloudflareSandbox, recorded: Recorded) -> str:
    return (await core.ensure_access_app(sandbox.account_id, AccessAppSpec(OURS, BLOG), recorded)).id


async def _ensure_token(core: CloudflareCore, sandbox: CloudflareSandbox, recorded: Recorded) -> str:
    return (await core.ensure_service_token(sandbox.account_id, f"cfzt-{BLOG}", TOKEN_DURATION, recorded)).id


async def _tunnel_by_hand(cf: cloudflare.AsyncCloudflare, sandbox: CloudflareSandbox) -> str:
    return await hand_made_tunnel(cf, sandbox, OURS)


async def _app_by_hand(cf: cloudflare.AsyncCloudflare, sandbox: CloudflareSandbox) -> str:
    return await hand_made_app(cf, sandbox, OURS, BLOG)


async def _token_by_hand(cf: cloudflare.AsyncCloudflare, sandbox: CloudflareSandbox) -> str:
    return await hand_made_token(cf, sandbox, f"cfzt-{BLOG}")


KINDS = {
    "tunnel": Kind("tunnels", "tunnels.create", _ensure_tunnel, _tunnel_by_hand),
    "access app": Kind("access_apps", "access.apps.create", _ensure_app, _app_by_hand),
    "service token": Kind("service_tokens", "service_tokens.create", _ensure_token, _token_by_hand),
}


@pytest.mark.parametrize("kind", KINDS.values(), ids=KINDS.keys())
async def test_an_object_created_after_the_intent_is_found_and_taken_as_ours(
    core: CloudflareCore, sandbox: CloudflareSandbox, kind: Kind
) -> None:
    since = now()
    created = await kind.ensure(core, sandbox, Recorded(since=since))
    # The operator crashed before recording the id: the next attempt has only the intent.
    again = await kind.ensure(core, sandbox, Recorded(since=since))
    once_recorded = await kind.ensure(core, sandbox, Recorded(id=created, since=since))

    assert again == created == once_recorded
    assert [item["id"] for item in live(sandbox, kind.store)] == [created]
    assert sandbox.counters[kind.create_op] == 1


@pytest.mark.parametrize("kind", KINDS.values(), ids=KINDS.keys())
async def test_a_create_whose_answer_was_lost_is_resolved_by_the_intent(
    core: CloudflareCore, sandbox: CloudflareSandbox, kind: Kind
) -> None:
    sandbox.faults.drop_after_write(op=kind.create_op, count=1)

    found = await kind.ensure(core, sandbox, Recorded(since=now()))

    assert [item["id"] for item in live(sandbox, kind.store)] == [found]


@pytest.mark.parametrize("kind", KINDS.values(), ids=KINDS.keys())
async def test_an_object_made_before_the_intent_is_a_conflict(
    core: CloudflareCore, sandbox: CloudflareSandbox, cf: cloudflare.AsyncCloudflare, kind: Kind
) -> None:
    theirs = await kind.by_hand(cf, sandbox)
    backdate(sandbox, kind.store, theirs)
    before = frozen(sandbox)
    sandbox.reset_log()

    with pytest.raises(Conflict, match="no record of creating it"):
        await kind.ensure(core, sandbox, Recorded(since=now()))

    assert frozen(sandbox) == before and writes(sandbox) == []


@pytest.mark.parametrize("kind", KINDS.values(), ids=KINDS.keys())
async def test_a_create_needs_the_intent_recorded_first(
    core: CloudflareCore, sandbox: CloudflareSandbox, kind: Kind
) -> None:
    for recorded in (Recorded(), Recorded(id="gone")):
        with pytest.raises(InvalidInput, match="no intent recorded"):
            await kind.ensure(core, sandbox, recorded)
    assert writes(sandbox) == [] and live(sandbox, kind.store) == []


# --- service tokens -------------------------------------------------------------------------------------


async def test_a_hand_made_ci_token_is_never_touched(
    core: CloudflareCore, sandbox: CloudflareSandbox, cf: cloudflare.AsyncCloudflare
) -> None:
    account = sandbox.account_id
    ci = await hand_made_token(cf, sandbox, "cfzt-ci-pipeline")
    backdate(sandbox, "service_tokens", ci)
    ours = await core.ensure_service_token(account, f"cfzt-{BLOG}", TOKEN_DURATION, Recorded(since=now()))
    # Later someone makes another token with our token's name: ours stays the recorded one.
    namesake = await hand_made_token(cf, sandbox, f"cfzt-{BLOG}")
    before = frozen(sandbox)
    sandbox.reset_log()

    with pytest.raises(Conflict, match="no record of creating it"):
        await core.ensure_service_token(account, "cfzt-ci-pipeline", TOKEN_DURATION, Recorded(since=now()))
    with pytest.raises(Conflict, match=r"cfzt-ci-pipeline.*left untouched"):
        await core.delete_service_token(account, ci, f"cfzt-{BLOG}")
    again = await core.ensure_service_token(account, f"cfzt-{BLOG}", TOKEN_DURATION,
                                            Recorded(id=ours.id, since=now(-60)))
    assert again.id == ours.id and again.client_secret is None
    assert frozen(sandbox) == before and writes(sandbox) == []

    await core.delete_service_token(account, ours.id, f"cfzt-{BLOG}")
    await core.delete_service_token(account, ours.id, f"cfzt-{BLOG}")  # already gone: fine
    assert sorted(t["id"] for t in live(sandbox, "service_tokens")) == sorted([ci, namesake])
    assert await core.get_service_token(account, ours.id) is None
    kept = await core.get_service_token(account, ci)
    assert kept is not None and kept.name == "cfzt-ci-pipeline" and kept.created_at and kept.client_secret is None


async def test_two_tokens_made_after_the_intent_are_ambiguous(
    core: CloudflareCore, sandbox: CloudflareSandbox, cf: cloudflare.AsyncCloudflare
) -> None:
    since = now()
    for _ in range(2):
        await hand_made_token(cf, sandbox, f"cfzt-{BLOG}")
    with pytest.raises(Conflict, match="cannot be told"):
        await core.ensure_service_token(sandbox.account_id, f"cfzt-{BLOG}", TOKEN_DURATION, Recorded(since=since))


# --- Access applications -----------------------------------------------------------------------------


async def test_the_recorded_app_is_ours_whatever_its_name_and_is_set_back(
    core: CloudflareCore, sandbox: CloudflareSandbox, cf: cloudflare.AsyncCloudflare
) -> None:
    account = sandbox.account_id
    app = await core.ensure_access_app(account, AccessAppSpec(OURS, BLOG), Recorded(since=now()))
    assert app.created_at
    await cf.zero_trust.access.applications.update(
        app.id, account_id=account, type="self_hosted", domain=BLOG, name="renamed by hand"
    )

    fixed = await core.ensure_access_app(account, AccessAppSpec(OURS, BLOG), Recorded(id=app.id, since=now(-60)))

    assert (fixed.id, fixed.name) == (app.id, OURS)


async def test_adoption_still_takes_over_a_hand_made_app_when_asked(
    core: CloudflareCore, sandbox: CloudflareSandbox, cf: cloudflare.AsyncCloudflare
) -> None:
    account = sandbox.account_id
    theirs = await hand_made_app(cf, sandbox, "hand-made", BLOG)
    backdate(sandbox, "access_apps", theirs)
    before = frozen(sandbox)

    with pytest.raises(Conflict, match="no record of creating it"):
        await core.ensure_access_app(account, AccessAppSpec(OURS, BLOG), Recorded(since=now()))
    async with core_with(sandbox, policy="create-only") as create_only:
        with pytest.raises(Conflict, match="no record of creating it"):  # adoption is an update
            await create_only.ensure_access_app(account, AccessAppSpec(OURS, BLOG, adopt=True), Recorded(since=now()))
    assert frozen(sandbox) == before

    adopted = await core.ensure_access_app(account, AccessAppSpec(OURS, BLOG, adopt=True), Recorded(since=now()))
    assert (adopted.id, adopted.name) == (theirs, OURS)


# --- the one-time-PIN identity provider ----------------------------------------------------------------


async def test_the_otp_idp_is_found_and_used_never_changed(
    core: CloudflareCore, sandbox: CloudflareSandbox, cf: cloudflare.AsyncCloudflare
) -> None:
    made = await cf.zero_trust.identity_providers.create(
        account_id=sandbox.account_id, name="PIN for staff", type="onetimepin", config={}
    )
    before = frozen(sandbox)
    sandbox.reset_log()

    found = await core.ensure_otp_idp(sandbox.account_id)

    assert made is not None and (found.id, found.name) == (made.id, "PIN for staff")
    assert frozen(sandbox) == before and writes(sandbox) == []
