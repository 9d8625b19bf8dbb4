"""The Cloudflare sandbox behaves like Cloudflare for the real SDK: tunnels, zones, DNS, auth,
rate limit, faults. (Access: test_sandbox_cloudflare_access.py; schemas: ..._schema.py; CLI and
thread: ..._cli.py.)"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import cloudflare
import httpx
import pytest

from chutes.sandbox.cloudflare import CloudflareSandbox, SandboxConfig


@pytest.fixture()
async def raw(sandbox: CloudflareSandbox) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {sandbox.token}"}
    async with httpx.AsyncClient(base_url=sandbox.base_url, headers=headers) as client:
        yield client


# The SDK types nearly every result as Optional and every rule/record as a wide union: for tests of
# wire behaviour the client is typed loosely.
Client = Any


def codes(error: cloudflare.APIStatusError) -> list[int | None]:
    return [e.code for e in error.errors]


# --- tunnels -----------------------------------------------------------------------------------


async def test_tunnel_create_returns_token_and_credentials_and_refuses_a_live_duplicate(
    sandbox: CloudflareSandbox, cf: Client
) -> None:
    tunnels = cf.zero_trust.tunnels.cloudflared
    tunnel = await tunnels.create(account_id=sandbox.account_id, name="op-a", config_src="cloudflare")
    assert tunnel.config_src == "cloudflare" and tunnel.deleted_at is None and tunnel.status == "inactive"
    extra = tunnel.model_extra or {}
    assert json.loads(base64.b64decode(extra["token"])) == {
        "a": sandbox.account_id,
        "t": tunnel.id,
        "s": extra["credentials_file"]["TunnelSecret"],
    }
    with pytest.raises(cloudflare.ConflictError) as caught:
        await tunnels.create(account_id=sandbox.account_id, name="op-a", config_src="cloudflare")
    assert caught.value.status_code == 409 and codes(caught.value) == [1013]
    local = await tunnels.create(account_id=sandbox.account_id, name="op-local")
    assert local.config_src == "local"
    assert len(sandbox.snapshot()["tunnels"]) == 2


async def test_tunnel_token_is_base64_json_of_account_tunnel_and_secret(sandbox: CloudflareSandbox, cf: Client) -> None:
    secret = base64.b64encode(b"s" * 32).decode()
    tunnels = cf.zero_trust.tunnels.cloudflared
    tunnel = await tunnels.create(account_id=sandbox.account_id, name="op-t", tunnel_secret=secret)
    token = await tunnels.token.get(tunnel.id, account_id=sandbox.account_id)
    assert isinstance(token, str)
    assert json.loads(base64.b64decode(token)) == {"a": sandbox.account_id, "t": tunnel.id, "s": secret}
    with pytest.raises(cloudflare.BadRequestError):
        await tunnels.create(account_id=sandbox.account_id, name="op-short", tunnel_secret="c2hvcnQ=")


async def test_tunnel_soft_delete_is_filtered_by_is_deleted_and_frees_the_name(
    sandbox: CloudflareSandbox, cf: Client
) -> None:
    tunnels, account = cf.zero_trust.tunnels.cloudflared, sandbox.account_id
    old = await tunnels.create(account_id=account, name="op-d", config_src="cloudflare")
    deleted = await tunnels.delete(old.id, account_id=account)
    assert deleted.deleted_at is not None
    assert (await tunnels.get(old.id, account_id=account)).deleted_at == deleted.deleted_at
    new = await tunnels.create(account_id=account, name="op-d", config_src="cloudflare")

    async def ids(**filters: Any) -> list[str]:
        return [t.id async for t in tunnels.list(account_id=account, name="op-d", **filters) if t.id]

    assert await ids() == [old.id, new.id]
    assert await ids(is_deleted=True) == [old.id]
    assert await ids(is_deleted=False) == [new.id]
    for call in (tunnels.delete(old.id, account_id=account), tunnels.token.get(old.id, account_id=account)):
        with pytest.raises(cloudflare.NotFoundError) as caught:
            await call
        assert codes(caught.value) == [1002]


async def test_tunnel_list_filters(sandbox: CloudflareSandbox, cf: Client) -> None:
    tunnels, account = cf.zero_trust.tunnels.cloudflared, sandbox.account_id
    made = [await tunnels.create(account_id=account, name=name) for name in ("op-a", "op-b", "other")]
    before = made[0].created_at
    await tunnels.delete(made[1].id, account_id=account)

    async def names(**filters: Any) -> list[str]:
        return [t.name async for t in tunnels.list(account_id=account, **filters)]

    assert await names(include_prefix="op-") == ["op-a", "op-b"]
    assert await names(exclude_prefix="op-") == ["other"]
    assert await names(uuid=made[2].id) == ["other"]
    assert await names(existed_at=before.isoformat(), is_deleted=False) == ["op-a"]
    assert await names(status="inactive", is_deleted=False) == ["op-a", "other"]
    with pytest.raises(cloudflare.BadRequestError):
        await tunnels.list(account_id=account, existed_at="yesterday")


async def test_tunnel_delete_with_connectors_needs_cascade_which_clears_them(
    sandbox: CloudflareSandbox, cf: Client, raw: httpx.AsyncClient
) -> None:
    tunnels, account = cf.zero_trust.tunnels.cloudflared, sandbox.account_id
    tunnel = await tunnels.create(account_id=account, name="op-c", config_src="cloudflare")
    sandbox.connect_tunnel(tunnel.id)
    assert (await tunnels.get(tunnel.id, account_id=account)).status == "healthy"
    with pytest.raises(cloudflare.BadRequestError) as caught:
        await tunnels.delete(tunnel.id, account_id=account)
    assert codes(caught.value) == [1022]
    answer = await raw.delete(f"/accounts/{account}/cfd_tunnel/{tunnel.id}", params={"cascade": "true"})
    assert answer.status_code == 200
    assert answer.json()["result"]["connections"] == [] and answer.json()["result"]["deleted_at"]


async def test_tunnel_edit_renames_but_not_onto_a_live_name(sandbox: CloudflareSandbox, cf: Client) -> None:
    tunnels, account = cf.zero_trust.tunnels.cloudflared, sandbox.account_id
    first = await tunnels.create(account_id=account, name="op-1")
    await tunnels.create(account_id=account, name="op-2")
    with pytest.raises(cloudflare.ConflictError):
        await tunnels.edit(first.id, account_id=account, name="op-2")
    assert (await tunnels.edit(first.id, account_id=account, name="op-3")).name == "op-3"


async def test_config_put_needs_a_catch_all_keeps_other_keys_and_counts_versions(
    sandbox: CloudflareSandbox, cf: Client, raw: httpx.AsyncClient
) -> None:
    tunnels, account = cf.zero_trust.tunnels.cloudflared, sandbox.account_id
    tunnel = await tunnels.create(account_id=account, name="op-cfg", config_src="cloudflare")
    never = await tunnels.configurations.get(tunnel.id, account_id=account)
    assert never.config is None and never.version == 0 and never.source == "cloudflare"
    rule = {"hostname": "a.example.com", "service": "http://a.ns.svc:80"}
    with pytest.raises(cloudflare.BadRequestError) as caught:
        await tunnels.configurations.update(tunnel.id, account_id=account, config={"ingress": [rule]})
    assert codes(caught.value) == [1056]
    assert "The last ingress rule must match all URLs" in str(caught.value.errors[0].message)
    assert sandbox.snapshot()["tunnel_configs"] == {}
    document = {
        "ingress": [rule, {"service": "http_status:404"}],
        "originRequest": {"connectTimeout": 10},
        "warp-routing": {"enabled": False},
    }
    path = f"/accounts/{account}/cfd_tunnel/{tunnel.id}/configurations"
    versions = [(await raw.put(path, json={"config": document})).json()["result"]["version"] for _ in range(2)]
    assert versions == [1, 2]
    got = (await raw.get(path)).json()["result"]
    assert got["config"] == document
    assert {got["tunnel_id"], got["account_id"], got["source"]} == {tunnel.id, account, "cloudflare"}
    for bad in ([{"hostname": "x.example.com"}, {"service": "http_status:404"}], [{"service": "nope"}]):
        assert (await raw.put(path, json={"config": {"ingress": bad}})).status_code == 400
    local = await tunnels.create(account_id=account, name="op-local")
    with pytest.raises(cloudflare.BadRequestError) as caught:
        await tunnels.configurations.update(local.id, account_id=account, config=document)  # type: ignore[arg-type]
    assert codes(caught.value) == [1055]


# --- zones, auth, routing ------------------------------------------------------------------------


async def test_zones_list_filters_and_get(sandbox: CloudflareSandbox, cf: Client) -> None:
    assert [z.name async for z in cf.zones.list()] == ["example.com", "example.net"]
    found = [z async for z in cf.zones.list(name="example.net", account={"id": sandbox.account_id})]
    assert [(z.id, z.plan.legacy_id if z.plan else None) for z in found] == [(sandbox.zone_id("example.net"), "pro")]
    assert [z async for z in cf.zones.list(name="nope.org")] == []
    zone = await cf.zones.get(zone_id=sandbox.zone_id("example.com"))
    assert zone is not None and zone.account.id == sandbox.account_id and zone.status == "active"


async def test_unknown_token_missing_header_and_global_keys_are_refused(sandbox: CloudflareSandbox) -> None:
    async with cloudflare.AsyncCloudflare(api_token="wrong", base_url=sandbox.base_url, max_retries=0) as bad:
        with pytest.raises(cloudflare.PermissionDeniedError) as caught:
            await bad.zones.list()
    assert caught.value.status_code == 403 and codes(caught.value) == [10000]
    async with httpx.AsyncClient(base_url=sandbox.base_url) as client:
        missing = await client.get("/zones")
        keys = await client.get("/zones", headers={"X-Auth-Email": "a@b.c", "X-Auth-Key": "0" * 37})
    assert missing.status_code == 400
    assert missing.json()["errors"][0]["code"] == 6003
    assert missing.json()["errors"][0]["error_chain"][0]["code"] == 6111
    assert keys.status_code == 403 and keys.json()["errors"][0]["code"] == 9103  # no global key is seeded
    assert all(r.token_name is None for r in sandbox.requests)


async def test_routing_errors_use_cloudflare_codes(sandbox: CloudflareSandbox, raw: httpx.AsyncClient) -> None:
    cases = {
        "/nothing/here": (404, 7000),
        f"/accounts/{'0' * 32}/cfd_tunnel": (404, 7003),
        "/accounts/not-an-id/cfd_tunnel": (404, 7003),
        f"/zones/{'0' * 32}/dns_records": (404, 7003),
    }
    for path, (status, code) in cases.items():
        answer = await raw.get(path)
        assert (answer.status_code, answer.json()["errors"][0]["code"]) == (status, code), path
        assert answer.json()["result"] is None and answer.json()["success"] is False
    answer = await raw.delete("/zones")
    assert answer.status_code == 405
    answer = await raw.post(f"/zones/{sandbox.zone_id('example.com')}/dns_records", content=b"{nope")
    assert (answer.status_code, answer.json()["errors"][0]["code"]) == (400, 6007)


async def test_restricted_token_sees_only_its_zone() -> None:
    cfg = SandboxConfig.from_dict(
        {"tokens": [{"name": "admin"}, {"name": "net-only", "value": "net-token", "zones": ["example.net"]}]}
    )
    async with CloudflareSandbox(cfg) as sandbox:
        async with cloudflare.AsyncCloudflare(api_token="net-token", base_url=sandbox.base_url, max_retries=0) as cf:
            assert [z.name async for z in cf.zones.list()] == ["example.net"]
            with pytest.raises(cloudflare.PermissionDeniedError) as caught:
                await cf.dns.records.list(zone_id=sandbox.zone_id("example.com"))
            assert codes(caught.value) == [10000]
            assert [r async for r in cf.dns.records.list(zone_id=sandbox.zone_id("example.net"))] == []
        assert [r.token_name for r in sandbox.requests] == ["net-only"] * 4


# --- DNS -----------------------------------------------------------------------------------------


async def test_dns_record_objects_carry_every_field_the_sdk_dispatches_on(
    sandbox: CloudflareSandbox, cf: Client, raw: httpx.AsyncClient
) -> None:
    zone = sandbox.zone_id("example.com")
    record = await cf.dns.records.create(
        zone_id=zone, name="App.Example.com.", ttl=1, type="CNAME", content="t1.cfargotunnel.com", proxied=True
    )
    assert type(record).__name__ == "CNAMERecord"
    assert record.name == "app.example.com" and record.comment is None and record.tags == []
    body = (await raw.get(f"/zones/{zone}/dns_records/{record.id}")).json()["result"]
    required = {"id", "name", "type", "content", "proxiable", "proxied", "ttl", "settings", "meta", "comment", "tags"}
    assert required | {"created_on", "modified_on"} <= set(body)
    a = await cf.dns.records.create(zone_id=zone, name="a.example.com", ttl=300, type="A", content="192.0.2.1")
    assert type(a).__name__ == "ARecord" and a.ttl == 300


async def test_dns_conflicts_identical_records_and_unknown_ids(sandbox: CloudflareSandbox, cf: Client) -> None:
    zone, records = sandbox.zone_id("example.com"), cf.dns.records
    cname = await records.create(zone_id=zone, name="x.example.com", ttl=1, type="CNAME", content="t.cfargotunnel.com")
    attempts = [
        ({"type": "A", "content": "192.0.2.7"}, 81053),
        ({"type": "CNAME", "content": "t.cfargotunnel.com"}, 81058),
        ({"type": "CNAME", "content": "other.example.net"}, 81053),
        ({"type": "TXT", "content": "hello"}, 81054),
        ({"type": "CNAME", "content": "x.example.com"}, 9039),
        ({"type": "A", "content": "not-an-ip"}, 9005),
        ({"type": "A", "content": "192.0.2.8", "ttl": 30}, 9021),
        ({"type": "TXT", "content": "t", "proxied": True}, 9004),
        ({"type": "A", "content": "10.0.0.1", "proxied": True}, 9003),
    ]
    for fields, code in attempts:
        with pytest.raises(cloudflare.BadRequestError) as caught:
            await records.create(zone_id=zone, name="x.example.com", **({"ttl": 1} | fields))  # type: ignore[operator]
        assert codes(caught.value) == [code], fields
    with pytest.raises(cloudflare.BadRequestError) as caught:
        await records.create(zone_id=zone, name="x.other.org", ttl=1, type="A", content="192.0.2.1")
    assert codes(caught.value) == [9000]
    a1 = await records.create(zone_id=zone, name="multi.example.com", ttl=1, type="A", content="192.0.2.1")
    a2 = await records.create(zone_id=zone, name="multi.example.com", ttl=1, type="A", content="192.0.2.2")
    for call in (
        records.update(a2.id, zone_id=zone, name="multi.example.com", ttl=1, type="A", content="192.0.2.1"),
        records.edit(a2.id, zone_id=zone, name="multi.example.com", ttl=1, type="A", content="192.0.2.1"),
    ):
        with pytest.raises(cloudflare.BadRequestError) as caught:
            await call
        assert codes(caught.value) == [81058]
    missing = "f" * 32
    for call in (
        records.get(missing, zone_id=zone),
        records.delete(missing, zone_id=zone),
        records.update(missing, zone_id=zone, name="m.example.com", ttl=1, type="A", content="192.0.2.1"),
        records.edit(missing, zone_id=zone, name="m.example.com", ttl=1, type="A", content="192.0.2.1"),
    ):
        with pytest.raises(cloudflare.NotFoundError) as missed:
            await call
        assert codes(missed.value) == [81044]
    assert {r["id"] for r in sandbox.snapshot()["dns_records"][zone]} == {cname.id, a1.id, a2.id}


async def test_dns_put_replaces_and_patch_merges(
    sandbox: CloudflareSandbox, cf: Client, raw: httpx.AsyncClient
) -> None:
    zone = sandbox.zone_id("example.net")
    created = await cf.dns.records.create(
        zone_id=zone,
        name="p.example.net",
        ttl=1,
        type="A",
        content="192.0.2.1",
        proxied=True,
        comment="c",
        tags=["a:b"],
    )
    path = f"/zones/{zone}/dns_records/{created.id}"
    patched = (await raw.patch(path, json={"comment": "changed"})).json()["result"]
    assert (patched["comment"], patched["tags"], patched["proxied"]) == ("changed", ["a:b"], True)
    put = (await raw.put(path, json={"name": "p.example.net", "type": "A", "content": "192.0.2.9"})).json()["result"]
    assert (put["comment"], put["tags"], put["proxied"], put["created_on"]) == (None, [], False, created_on(created))


def created_on(record: Any) -> str:
    return str(record.created_on.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))


async def test_dns_list_filters_are_case_insensitive_with_operator_keys(sandbox: CloudflareSandbox, cf: Client) -> None:
    zone, records = sandbox.zone_id("example.net"), cf.dns.records
    specs = [
        ("api.example.net", "CNAME", "t1.cfargotunnel.com", "managed-by=op/c1/ns/api", ["owner:op", "env:prod"]),
        ("web.example.net", "CNAME", "t2.cfargotunnel.com", "managed-by=op/c2/ns/web", ["owner:op"]),
        ("mail.example.net", "A", "192.0.2.25", None, []),
    ]
    for name, rtype, content, comment, tags in specs:
        await records.create(zone_id=zone, name=name, ttl=1, type=rtype, content=content, comment=comment, tags=tags)  # type: ignore[arg-type]

    async def names(**filters: Any) -> list[str]:
        return sorted([r.name async for r in records.list(zone_id=zone, **filters) if r.name])

    assert await names(name="API.example.net") == ["api.example.net"]
    assert await names(name={"endswith": ".EXAMPLE.net"}) == ["api.example.net", "mail.example.net", "web.example.net"]
    assert await names(name={"contains": "ai"}) == ["mail.example.net"]
    assert await names(content={"startswith": "T2."}) == ["web.example.net"]
    assert await names(comment={"startswith": "MANAGED-BY=op/c1/"}) == ["api.example.net"]
    # The SDK drops empty query values: presence operators need any non-empty value.
    assert await names(comment={"absent": "true"}) == ["mail.example.net"]
    assert await names(comment={"present": "true"}) == ["api.example.net", "web.example.net"]
    assert await names(tag="owner") == ["api.example.net", "web.example.net"]
    assert await names(tag={"exact": "ENV:prod"}) == ["api.example.net"]
    assert await names(tag={"absent": "env"}) == ["mail.example.net", "web.example.net"]
    assert await names(type="A") == ["mail.example.net"]
    assert await names(type="CNAME", proxied=True) == []
    assert await names(match="any", type="A", name="web.example.net") == ["mail.example.net", "web.example.net"]
    listed = [r.name async for r in records.list(zone_id=zone, order="name", direction="desc")]
    assert listed == ["web.example.net", "mail.example.net", "api.example.net"]
    with pytest.raises(cloudflare.BadRequestError):
        await records.list(zone_id=zone, order="colour")  # type: ignore[arg-type]


async def test_pages_past_the_end_are_empty_and_sdk_iteration_collects_everything(
    sandbox: CloudflareSandbox, cf: Client, raw: httpx.AsyncClient
) -> None:
    zone = sandbox.zone_id("example.com")
    for i in range(5):
        await cf.dns.records.create(zone_id=zone, name=f"h{i}.example.com", ttl=1, type="A", content=f"192.0.2.{i + 1}")
    sandbox.reset_log()
    names = [r.name async for r in cf.dns.records.list(zone_id=zone, per_page=2)]
    assert sorted(names) == [f"h{i}.example.com" for i in range(5)]
    assert [r.query.get("page") for r in sandbox.calls(op="dns.list")] == [None, "2", "3", "4"]
    past = (await raw.get(f"/zones/{zone}/dns_records", params={"page": 9, "per_page": 2})).json()
    assert past["result"] == []
    assert past["result_info"] == {"page": 9, "per_page": 2, "count": 0, "total_count": 5, "total_pages": 3}
    for i in range(3):
        await cf.zero_trust.tunnels.cloudflared.create(account_id=sandbox.account_id, name=f"t{i}")
    tunnels = [t.name async for t in cf.zero_trust.tunnels.cloudflared.list(account_id=sandbox.account_id, per_page=1)]
    assert tunnels == ["t0", "t1", "t2"]


async def test_free_plan_limits_comment_length_and_refuses_tags_paid_plans_allow_them(
    sandbox: CloudflareSandbox, cf: Client
) -> None:
    free, pro, records = sandbox.zone_id("example.com"), sandbox.zone_id("example.net"), cf.dns.records
    ok = await records.create(
        zone_id=free, name="c.example.com", ttl=1, type="A", content="192.0.2.1", comment="x" * 100
    )
    assert ok.comment == "x" * 100
    for extra, code in (({"comment": "x" * 101}, 9313), ({"tags": ["owner:op"]}, 9300)):
        with pytest.raises(cloudflare.BadRequestError) as caught:
            await records.create(zone_id=free, name="d.example.com", ttl=1, type="A", content="192.0.2.2", **extra)
        assert codes(caught.value) == [code]
    tagged = await records.create(
        zone_id=pro, name="d.example.net", ttl=1, type="A", content="192.0.2.2", comment="y" * 500, tags=["owner:op"]
    )
    assert tagged.tags == ["owner:op"]
    for extra, code in (({"comment": "y" * 501}, 9313), ({"tags": ["no-colon"]}, 9301)):
        with pytest.raises(cloudflare.BadRequestError) as caught:
            await records.create(zone_id=pro, name="e.example.net", ttl=1, type="A", content="192.0.2.3", **extra)
        assert codes(caught.value) == [code]
    assert len(sandbox.snapshot()["dns_records"][free]) == 1


async def test_batch_runs_deletes_patches_puts_posts_all_or_nothing(sandbox: CloudflareSandbox, cf: Client) -> None:
    zone, records = sandbox.zone_id("example.com"), cf.dns.records
    old = await records.create(
        zone_id=zone, name="move.example.com", ttl=1, type="CNAME", content="t1.cfargotunnel.com"
    )
    keep = await records.create(zone_id=zone, name="keep.example.com", ttl=1, type="A", content="192.0.2.1")
    before = sandbox.snapshot()["dns_records"]
    with pytest.raises(cloudflare.BadRequestError) as caught:
        await records.batch(
            zone_id=zone,
            deletes=[{"id": old.id}],
            posts=[
                {"name": "move.example.com", "type": "CNAME", "content": "t2.cfargotunnel.com", "ttl": 1},
                {"name": "keep.example.com", "type": "CNAME", "content": "t2.cfargotunnel.com", "ttl": 1},
            ],
        )
    assert codes(caught.value) == [81053]
    assert caught.value.body["errors"][0]["source"] == {"pointer": "/posts/1"}  # type: ignore[index]
    assert sandbox.snapshot()["dns_records"] == before
    swapped = await records.batch(
        zone_id=zone,
        deletes=[{"id": old.id}],
        patches=[{"id": keep.id, "content": "192.0.2.99"}],  # type: ignore[typeddict-item]
        posts=[{"name": "move.example.com", "type": "CNAME", "content": "t2.cfargotunnel.com", "ttl": 1}],
    )
    assert swapped is not None
    assert [r.id for r in swapped.deletes or []] == [old.id]
    assert [r.content for r in swapped.patches or []] == ["192.0.2.99"]
    assert [type(r).__name__ for r in swapped.posts or []] == ["CNAMERecord"]
    contents = {(r["name"], r["content"]) for r in sandbox.snapshot()["dns_records"][zone]}
    assert contents == {("move.example.com", "t2.cfargotunnel.com"), ("keep.example.com", "192.0.2.99")}


async def test_free_zone_quota_and_batch_size_limits(sandbox: CloudflareSandbox, cf: Client) -> None:
    zone, records = sandbox.zone_id("example.com"), cf.dns.records

    def posts(n: int, prefix: str) -> list[Any]:
        return [{"name": f"{prefix}{i}.example.com", "type": "A", "content": "192.0.2.1", "ttl": 1} for i in range(n)]

    with pytest.raises(cloudflare.BadRequestError) as caught:
        await records.batch(zone_id=zone, posts=posts(201, "too"))
    assert codes(caught.value) == [1004]
    await records.batch(zone_id=zone, posts=posts(199, "r"))
    await records.create(zone_id=zone, name="last.example.com", ttl=1, type="A", content="192.0.2.1")
    with pytest.raises(cloudflare.BadRequestError) as caught:
        await records.create(zone_id=zone, name="over.example.com", ttl=1, type="A", content="192.0.2.1")
    assert codes(caught.value) == [81045]
    assert len(sandbox.snapshot()["dns_records"][zone]) == 200


async def test_a_zone_seeded_with_a_record_quota_holds_that_many_records() -> None:
    """Cloudflare raises an Enterprise zone's quota on request (bench/scale.py's zones hold thousands)."""
    seed = SandboxConfig.from_dict({"zones": [{"name": "big.example", "plan": "enterprise", "record_quota": 2}]})
    async with CloudflareSandbox(seed) as sandbox:
        zone = sandbox.zone_id("big.example")
        async with cloudflare.AsyncCloudflare(api_token=sandbox.token, base_url=sandbox.base_url,
                                              max_retries=0) as client:
            for name in ("a.big.example", "b.big.example"):
                await client.dns.records.create(zone_id=zone, name=name, ttl=1, type="A", content="192.0.2.1")
            with pytest.raises(cloudflare.BadRequestError) as caught:
                await client.dns.records.create(zone_id=zone, name="c.big.example", ttl=1, type="A",
                                                content="192.0.2.1")
    assert codes(caught.value) == [81045]


# --- rate limit and faults -------------------------------------------------------------------


async def test_rate_limit_answers_429_971_with_retry_after_and_refused_calls_have_no_effect() -> None:
    tokens = [{"name": "one"}, {"name": "two", "value": "second-token"}]
    cfg = SandboxConfig.from_dict({"rate_limit": {"requests": 3, "period": 60}, "tokens": tokens})
    async with CloudflareSandbox(cfg) as sandbox:
        async with cloudflare.AsyncCloudflare(api_token=sandbox.token, base_url=sandbox.base_url, max_retries=0) as cf:
            tunnels = cf.zero_trust.tunnels.cloudflared
            for i in range(3):
                await tunnels.create(account_id=sandbox.account_id, name=f"t{i}")
            with pytest.raises(cloudflare.RateLimitError) as caught:
                await tunnels.create(account_id=sandbox.account_id, name="t3")
        assert codes(caught.value) == [971]
        assert 0 < int(caught.value.response.headers["retry-after"]) <= 60
        assert [r.status for r in sandbox.calls(op="tunnels.create")] == [200, 200, 200, 429]
        assert len(sandbox.snapshot()["tunnels"]) == 3
        async with cloudflare.AsyncCloudflare(
            api_token="second-token", base_url=sandbox.base_url, max_retries=0
        ) as other:
            assert await other.zones.get(zone_id=sandbox.zone_id("example.com")) is not None  # its own budget
        sandbox.set_rate_limit(requests=100)
        sandbox.faults.rate_limit(count=1, retry_after=300)
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {sandbox.token}"}) as client:
            forced = await client.get(sandbox.base_url + "/zones")
            after = await client.get(sandbox.base_url + "/zones")
        assert (forced.status_code, forced.headers["retry-after"]) == (429, "300")
        assert forced.json()["errors"] == [
            {"code": 971, "message": "Please wait and consider throttling your request speed"}
        ]
        assert after.status_code == 200


async def test_injected_failures_count_down_and_leave_no_trace(sandbox: CloudflareSandbox, cf: Client) -> None:
    sandbox.faults.fail(op="dns.create", status=503, count=2)
    zone = sandbox.zone_id("example.com")
    for _ in range(2):
        with pytest.raises(cloudflare.InternalServerError):
            await cf.dns.records.create(zone_id=zone, name="f.example.com", ttl=1, type="A", content="192.0.2.1")
    assert sandbox.snapshot()["dns_records"][zone] == []
    await cf.dns.records.create(zone_id=zone, name="f.example.com", ttl=1, type="A", content="192.0.2.1")
    sandbox.faults.fail(op="zones.list", status=500, rate=0.5, seed=7)
    outcomes = []
    for _ in range(20):
        try:
            await cf.zones.list()
            outcomes.append(True)
        except cloudflare.InternalServerError:
            outcomes.append(False)
    assert 0 < outcomes.count(False) < 20
    assert sandbox.counters["zones.list"] == 20 and sandbox.counters["dns.create"] == 3


async def test_latency_is_added_to_every_request(sandbox: CloudflareSandbox, raw: httpx.AsyncClient) -> None:
    sandbox.faults.latency = 0.05
    started = time.monotonic()
    await raw.get("/zones")
    assert time.monotonic() - started >= 0.05
    sandbox.faults.clear()
    assert sandbox.faults.latency == 0


async def test_dropped_write_is_replayed_by_the_sdk_and_meets_the_duplicate_error(sandbox: CloudflareSandbox) -> None:
    zone = sandbox.zone_id("example.com")
    sandbox.faults.drop_after_write(op="dns.create")
    async with cloudflare.AsyncCloudflare(api_token=sandbox.token, base_url=sandbox.base_url, max_retries=2) as cf:
        with pytest.raises(cloudflare.BadRequestError) as caught:
            await cf.dns.records.create(zone_id=zone, name="d.example.com", ttl=1, type="A", content="192.0.2.1")
        assert codes(caught.value) == [81058]
        sandbox.faults.drop_after_write(op="tunnels.create")
        with pytest.raises(cloudflare.ConflictError) as conflict:
            await cf.with_options(max_retries=1).zero_trust.tunnels.cloudflared.create(
                account_id=sandbox.account_id, name="replayed"
            )
        assert codes(conflict.value) == [1013]
    assert [(r.status, r.dropped) for r in sandbox.calls(op="dns.create")] == [(200, True), (400, False)]
    assert [(r.status, r.dropped) for r in sandbox.calls(op="tunnels.create")] == [(200, True), (409, False)]
    assert len(sandbox.snapshot()["dns_records"][zone]) == 1 and len(sandbox.snapshot()["tunnels"]) == 1


async def test_log_redacts_secrets_and_snapshot_hides_them(sandbox: CloudflareSandbox, raw: httpx.AsyncClient) -> None:
    secret = base64.b64encode(b"k" * 32).decode()
    await raw.post(f"/accounts/{sandbox.account_id}/cfd_tunnel", json={"name": "s", "tunnel_secret": secret})
    assert sandbox.requests[0].body == {"name": "s", "tunnel_secret": "<redacted>"}
    assert sandbox.requests[0].token_name == "default"
    dumped = json.dumps([r.as_dict() for r in sandbox.requests]) + json.dumps(sandbox.snapshot())
    assert secret not in dumped and sandbox.token not in dumped
