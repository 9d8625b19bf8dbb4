"""Tunnels and the co-owned tunnel configuration, through the real SDK against the emulator."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import cloudflare
import pytest

from chutes.cloudflare_core import CloudflareCore, Conflict, IngressRule, NotFound, Recorded, TransientError, Tunnel
from chutes.sandbox.cloudflare import CloudflareSandbox
from chutes.sandbox.cloudflare.tunnels import create_tunnel
from harness.core import intent, rules_at
from harness.retries import short_cloudflare_retries

FOREIGN = [
    {"hostname": "foreign-1.example.com", "service": "http://f1:80"},
    {"hostname": "foreign-2.example.com", "path": "^/docs", "service": "http://f2:80"},
]
CUSTOM_CATCH_ALL = {"service": "http_status:503"}


def live_tunnels(sandbox: CloudflareSandbox, name: str) -> list[dict[str, Any]]:
    tunnels = sandbox.snapshot()["tunnels"]
    items = tunnels.values() if isinstance(tunnels, dict) else tunnels
    return [t for t in items if t["name"] == name and not t.get("deleted_at")]


async def seed_config(sandbox: CloudflareSandbox, tunnel_id: str, config: dict[str, Any]) -> None:
    """Write a configuration as another tool would (plain SDK), then forget the requests."""
    other = cloudflare.AsyncCloudflare(api_token=sandbox.token, base_url=sandbox.base_url, max_retries=0)
    async with other:
        await other.zero_trust.tunnels.cloudflared.configurations.update(
            tunnel_id,
            account_id=sandbox.account_id,
            config=config,  # type: ignore[arg-type]
        )
    sandbox.reset_log()


async def test_ensure_tunnel_twice_gives_one_tunnel(core: CloudflareCore, sandbox: CloudflareSandbox) -> None:
    first = await core.ensure_tunnel(sandbox.account_id, "op-one", intent())
    sandbox.reset_log()
    second = await core.ensure_tunnel(sandbox.account_id, "op-one", Recorded(id=first.id))

    assert second == first and not first.deleted
    assert await core.find_tunnel(sandbox.account_id, "op-one") == first
    assert await core.find_tunnel(sandbox.account_id, "op-none") is None
    assert len(live_tunnels(sandbox, "op-one")) == 1
    assert sandbox.counters == {"tunnels.list": 3}
    assert {c.query["is_deleted"] for c in sandbox.calls(op="tunnels.list")} == {"false"}


async def test_replayed_create_after_dropped_connection_is_adopted(
    core: CloudflareCore, sandbox: CloudflareSandbox
) -> None:
    sandbox.faults.drop_after_write(op="tunnels.create", count=1)

    tunnel = await core.ensure_tunnel(sandbox.account_id, "op-dropped", intent())

    assert [t["id"] for t in live_tunnels(sandbox, "op-dropped")] == [tunnel.id]
    assert sandbox.counters["tunnels.create"] == 2  # applied + replayed (409/1013)
    assert [r.status for r in sandbox.calls(op="tunnels.create")][-1] == 409


async def test_tunnel_token_and_delete(core: CloudflareCore, sandbox: CloudflareSandbox) -> None:
    tunnel = await core.ensure_tunnel(sandbox.account_id, "op-token", intent())
    token = await core.get_tunnel_token(sandbox.account_id, tunnel.id)
    assert json.loads(base64.b64decode(token))["t"] == tunnel.id

    await core.delete_tunnel(sandbox.account_id, tunnel.id, "op-token", connected_ok=True)
    await core.delete_tunnel(sandbox.account_id, tunnel.id, "op-token", connected_ok=True)  # already deleted: fine
    unknown = "6f1f8a8e-0000-4000-8000-000000000000"
    await core.delete_tunnel(sandbox.account_id, unknown, "op-token", connected_ok=True)  # unknown: fine

    assert live_tunnels(sandbox, "op-token") == []
    assert [c.query.get("cascade") for c in sandbox.calls(op="tunnels.delete")] == ["true"]
    assert await core.list_tunnels(sandbox.account_id, prefix="op-") == []


async def test_tunnels_ensured_then_deleted_together_are_looked_up_in_one_listing_each_time(
    core: CloudflareCore, sandbox: CloudflareSandbox
) -> None:
    account = sandbox.account_id
    foreign = create_tunnel(sandbox.state, account, {"name": "op-many-3", "config_src": "cloudflare"})
    foreign.created_at = "2020-01-01T00:00:00.000000Z"  # made by hand long before our intent
    sandbox.reset_log()
    names = [f"op-many-{i}" for i in range(8)]

    made = await asyncio.gather(*(core.ensure_tunnel(account, name, intent()) for name in names),
                                return_exceptions=True)

    refused = made.pop(3)
    assert isinstance(refused, Conflict) and "no record of creating it" in refused.message
    ours = [tunnel for tunnel in made if isinstance(tunnel, Tunnel)]
    assert [tunnel.name for tunnel in ours] == [name for name in names if name != "op-many-3"]
    assert sandbox.counters == {"tunnels.list": 1, "tunnels.create": 7}  # one listing, not one per name
    [listing] = sandbox.calls(op="tunnels.list")
    assert (listing.query["include_prefix"], listing.query["is_deleted"]) == ("op-many-", "false")

    sandbox.reset_log()
    await asyncio.gather(*(core.delete_tunnel(account, t.id, t.name, connected_ok=False) for t in ours))
    with pytest.raises(Conflict, match="not the tunnel 'op-many-0'"):  # checked as before: by its name
        await core.delete_tunnel(account, foreign.id, "op-many-0", connected_ok=True)

    assert [t["id"] for t in live_tunnels(sandbox, "op-many-3")] == [foreign.id]
    assert all(live_tunnels(sandbox, name) == [] for name in names if name != "op-many-3")
    assert sandbox.counters == {"tunnels.list": 2, "tunnels.delete": 7, "tunnels.get": 1}  # the last one: by id


async def test_a_lookup_asked_while_a_listing_is_in_flight_is_answered_by_the_next_one(
    core: CloudflareCore, sandbox: CloudflareSandbox
) -> None:
    account = sandbox.account_id
    late: list[asyncio.Future[Tunnel | None]] = []

    async def asked_meanwhile() -> None:  # the first listing is at the emulator, not answered yet
        late.append(asyncio.ensure_future(core.find_tunnel(account, "op-late")))
        await asyncio.sleep(0.01)

    def made_meanwhile() -> None:  # after the first listing: only a listing begun later shows it
        create_tunnel(sandbox.state, account, {"name": "op-late", "config_src": "cloudflare"})

    sandbox.faults.before("tunnels.list", asked_meanwhile)
    sandbox.faults.before("tunnels.list", made_meanwhile)

    assert await core.find_tunnel(account, "op-early") is None
    found = await late[0]
    assert found is not None and found.name == "op-late"
    assert [call.query.get("name") for call in sandbox.calls(op="tunnels.list")] == ["op-early", "op-late"]


async def test_fifty_concurrent_edits_cost_one_get_and_one_put(
    core: CloudflareCore, sandbox: CloudflareSandbox
) -> None:
    account = sandbox.account_id
    tunnel = await core.ensure_tunnel(account, "op-shared", intent())
    ours_before = [{"hostname": f"old-{i}.example.com", "service": "http://old:80"} for i in range(10)]
    await seed_config(
        sandbox,
        tunnel.id,
        {
            "ingress": [FOREIGN[0], *ours_before, FOREIGN[1], CUSTOM_CATCH_ALL],
            "originRequest": {"connectTimeout": 10},
        },
    )

    ours = rules_at(*(f"{age}-{i}.example.com" for age in ("old", "new") for i in range(40)))
    sets = [
        core.set_ingress_rule(account, tunnel.id, IngressRule(f"new-{i}.example.com", f"http://svc-{i}:80"), ours)
        for i in range(40)
    ]
    removes = [core.remove_ingress_rule(account, tunnel.id, f"old-{i}.example.com", None, ours) for i in range(10)]
    results = await asyncio.gather(*sets, *removes)

    assert results == [None] * 40 + [True] * 10  # every removal reports it removed its rule
    assert sandbox.counters == {"tunnels.config.get": 1, "tunnels.config.put": 1}
    config = await core.get_tunnel_config(account, tunnel.id)
    assert config is not None
    ingress = config["ingress"]
    assert [r for r in ingress if r.get("hostname", "").startswith("foreign")] == FOREIGN
    assert ingress[-1] == CUSTOM_CATCH_ALL
    assert {r["hostname"] for r in ingress[:-1]} == {
        *(f"new-{i}.example.com" for i in range(40)),
        "foreign-1.example.com",
        "foreign-2.example.com",
    }
    assert config["originRequest"] == {"connectTimeout": 10}


async def test_edits_arriving_during_a_flush_go_to_the_next_one(
    core: CloudflareCore, sandbox: CloudflareSandbox
) -> None:
    tunnel = await core.ensure_tunnel(sandbox.account_id, "op-waves", intent())
    ours = rules_at(*(f"{wave}{i}.example.com" for wave in "ab" for i in range(5)))
    sandbox.faults.latency = 0.05
    in_flight = asyncio.Event()
    sandbox.faults.before("tunnels.config.get", in_flight.set)  # the first flush's read reaches Cloudflare
    first = asyncio.gather(
        *(
            core.set_ingress_rule(sandbox.account_id, tunnel.id, IngressRule(f"a{i}.example.com", "http://a:80"), ours)
            for i in range(5)
        )
    )
    await in_flight.wait()  # the first flush is now in flight
    second = asyncio.gather(
        *(
            core.set_ingress_rule(sandbox.account_id, tunnel.id, IngressRule(f"b{i}.example.com", "http://b:80"), ours)
            for i in range(5)
        )
    )
    await asyncio.gather(first, second)
    sandbox.faults.latency = 0.0

    assert sandbox.counters["tunnels.config.put"] == 2
    config = await core.get_tunnel_config(sandbox.account_id, tunnel.id)
    assert config is not None and len(config["ingress"]) == 11


async def test_exact_hostnames_before_wildcards_and_no_put_when_unchanged(
    core: CloudflareCore, sandbox: CloudflareSandbox
) -> None:
    account = sandbox.account_id
    tunnel = await core.ensure_tunnel(account, "op-order", intent())
    ours = rules_at("*.example.com", "app.example.com", ("app.example.com", "^/api/v1"), ("app.example.com", "^/api"))
    await core.set_ingress_rule(account, tunnel.id, IngressRule("*.example.com", "http://wild:80"), ours)
    await core.set_ingress_rule(account, tunnel.id, IngressRule("app.example.com", "http://app:80"), ours)
    await core.set_ingress_rule(account, tunnel.id, IngressRule("app.example.com", "http://api:80", "^/api/v1"), ours)
    await core.set_ingress_rule(account, tunnel.id, IngressRule("app.example.com", "http://api:80", "^/api"), ours)
    config = await core.get_tunnel_config(account, tunnel.id)
    assert config is not None
    assert [(r.get("hostname"), r.get("path")) for r in config["ingress"]] == [
        ("app.example.com", "^/api/v1"),
        ("app.example.com", "^/api"),
        ("app.example.com", None),
        ("*.example.com", None),
        (None, None),
    ]

    sandbox.reset_log()
    await core.set_ingress_rule(account, tunnel.id, IngressRule("app.example.com", "http://app:80"), ours)
    await core.remove_ingress_rule(account, tunnel.id, "missing.example.com", None, ours)
    assert sandbox.counters == {"tunnels.config.get": 2}  # steady state: no PUT


async def test_rule_edits_on_a_deleted_tunnel(core: CloudflareCore, sandbox: CloudflareSandbox) -> None:
    tunnel = await core.ensure_tunnel(sandbox.account_id, "op-gone", intent())
    ours = rules_at("app.example.com", "b.example.com")
    await core.set_ingress_rule(sandbox.account_id, tunnel.id, IngressRule("app.example.com", "http://app:80"), ours)
    other = cloudflare.AsyncCloudflare(api_token=sandbox.token, base_url=sandbox.base_url, max_retries=0)
    async with other:
        await other.zero_trust.tunnels.cloudflared.delete(tunnel.id, account_id=sandbox.account_id)

    # nothing left to remove
    assert await core.remove_ingress_rule(sandbox.account_id, tunnel.id, "app.example.com", None, ours) is False
    with pytest.raises(NotFound):
        await core.set_ingress_rule(sandbox.account_id, tunnel.id, IngressRule("b.example.com", "http://b:80"), ours)


async def test_a_failed_flush_reaches_every_caller_and_the_next_flush_recovers(
    core: CloudflareCore, sandbox: CloudflareSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    short_cloudflare_retries(monkeypatch)  # the flush's pauses between its three attempts
    tunnel = await core.ensure_tunnel(sandbox.account_id, "op-fail", intent())
    ours = rules_at(*(f"h{i}.example.com" for i in range(4)))
    sandbox.faults.fail(op="tunnels.config.put", status=500, count=3)
    results = await asyncio.gather(
        *(
            core.set_ingress_rule(sandbox.account_id, tunnel.id, IngressRule(f"h{i}.example.com", "http://h:80"), ours)
            for i in range(4)
        ),
        return_exceptions=True,
    )
    # A 5xx answer to a write may hide an applied write: each caller learns it is transient and unknown.
    assert [type(r).__name__ for r in results] == ["OutcomeUnknown"] * 4
    assert all(isinstance(r, TransientError) for r in results)

    await core.set_ingress_rule(sandbox.account_id, tunnel.id, IngressRule("h0.example.com", "http://h:80"), ours)
    config = await core.get_tunnel_config(sandbox.account_id, tunnel.id)
    assert config is not None and [r.get("hostname") for r in config["ingress"]] == ["h0.example.com", None]
