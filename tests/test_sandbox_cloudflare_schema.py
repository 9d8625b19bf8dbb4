"""Every kind of response the Cloudflare sandbox produces — success and error, for every operation —
validates against Cloudflare's OpenAPI subset (tests/data/cloudflare-openapi-subset.json)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from chutes.sandbox.cloudflare import CloudflareSandbox, ResponseEvent, SandboxConfig
from chutes.sandbox.cloudflare.sandbox import ROUTES
from harness.openapi import (
    COMPONENT_RESULTS,
    ENVELOPE,
    OPERATIONS,
    RESULT_INFO_KEYS,
    SchemaWatch,
    answer_problems,
    problems,
    spec_schema,
)

GENERIC = {403, 429, 500}  # every operation: token not allowed, rate limited, server failure
# Statuses each operation must answer in the scenario (besides GENERIC): exactly these.
EXPECTED: dict[str, set[int]] = {
    "tunnels.create": {200, 400, 409},
    "tunnels.list": {200, 400},
    "tunnels.get": {200, 404},
    "tunnels.edit": {200, 400, 404, 409},
    "tunnels.delete": {200, 400, 404},
    "tunnels.token": {200, 404},
    "tunnels.config.get": {200, 404},
    "tunnels.config.put": {200, 400, 404},
    "zones.list": {200, 400},
    "zones.get": {200, 404},
    "dns.create": {200, 400},
    "dns.list": {200, 400},
    "dns.get": {200, 404},
    "dns.update": {200, 400, 404},
    "dns.edit": {200, 400, 404},
    "dns.delete": {200, 404},
    "dns.batch": {200, 400},
    "access.apps.create": {201, 400, 409},
    "access.apps.list": {200, 400},
    "access.apps.get": {200, 404},
    "access.apps.update": {200, 400, 404},
    "access.apps.delete": {202, 404},
    "access.app_policies.create": {201, 400, 404},
    "access.app_policies.list": {200, 404},
    "access.app_policies.get": {200, 404},
    "access.app_policies.update": {200, 400, 404},
    "access.app_policies.delete": {202, 400, 404},
    "access.policies.create": {201, 400},
    "access.policies.list": {200, 400},
    "access.policies.get": {200, 404},
    "access.policies.update": {200, 400, 404},
    "access.policies.delete": {202, 400, 404},
    "idps.create": {201, 400, 409},
    "idps.list": {200, 400},
    "idps.get": {200, 404},
    "idps.update": {200, 400, 404},
    "idps.delete": {202, 404},
    "service_tokens.create": {201, 400},
    "service_tokens.list": {200, 400},
    "service_tokens.get": {200, 404},
    "service_tokens.update": {200, 400, 404},
    "service_tokens.delete": {200, 404},
    "service_tokens.rotate": {200, 400, 404},
    "service_tokens.refresh": {200, 404},
}
MISSING_UUID = "00000000-0000-4000-8000-000000000000"
MISSING_HEX = "0" * 32
RULE = [{"email_domain": {"domain": "example.com"}}]
GOOD_CONFIG = {
    "config": {
        "ingress": [
            {"hostname": "a.example.com", "service": "http://a.ns.svc:80", "originRequest": {"noTLSVerify": True}},
            {"hostname": "b.example.com", "path": "^/v1/", "service": "https://b.ns.svc:443"},
            {"service": "http_status:404"},
        ],
        "originRequest": {"connectTimeout": 10},
        "warp-routing": {"enabled": False},
    }
}


@dataclass(frozen=True)
class Step:
    method: str
    path: str  # formatted with the ids collected so far
    status: int
    json: Any = None
    params: dict[str, str] | None = None
    save: str | None = None  # remember result["id"] under this name


def scenario() -> list[Step]:
    tunnel = "{account_path}/cfd_tunnel/{tunnel_id}"
    dns = "/zones/{zone_id}/dns_records"
    record = dns + "/{record_id}"
    access = "{account_path}/access"
    app = access + "/apps/{app_id}"
    token = access + "/service_tokens/{service_token_id}"
    return [
        # tunnels
        Step("POST", "{account_path}/cfd_tunnel", 200, {"name": "t1", "config_src": "cloudflare"}, save="tunnel_id"),
        Step("POST", "{account_path}/cfd_tunnel", 409, {"name": "t1", "config_src": "cloudflare"}),
        Step("POST", "{account_path}/cfd_tunnel", 400, {"config_src": "cloudflare"}),
        Step("POST", "{account_path}/cfd_tunnel", 200, {"name": "local"}, save="local_tunnel_id"),
        Step("GET", "{account_path}/cfd_tunnel", 200, params={"is_deleted": "false", "per_page": "1"}),
        Step("GET", "{account_path}/cfd_tunnel", 400, params={"is_deleted": "maybe"}),
        Step("GET", tunnel, 200),
        Step("GET", "{account_path}/cfd_tunnel/" + MISSING_UUID, 404),
        Step("PATCH", tunnel, 200, {"name": "t1-renamed"}),
        Step("PATCH", tunnel, 400, {"tunnel_secret": "c2hvcnQ="}),
        Step("PATCH", tunnel, 409, {"name": "local"}),
        Step("PATCH", "{account_path}/cfd_tunnel/" + MISSING_UUID, 404, {"name": "x"}),
        Step("GET", tunnel + "/token", 200),
        Step("GET", "{account_path}/cfd_tunnel/" + MISSING_UUID + "/token", 404),
        Step("GET", tunnel + "/configurations", 200),
        Step("GET", "{account_path}/cfd_tunnel/" + MISSING_UUID + "/configurations", 404),
        Step("PUT", tunnel + "/configurations", 200, GOOD_CONFIG),
        Step("GET", tunnel + "/configurations", 200),
        Step(
            "PUT",
            tunnel + "/configurations",
            400,
            {"config": {"ingress": [{"hostname": "a.example.com", "service": "http://a"}]}},
        ),
        Step("PUT", "{account_path}/cfd_tunnel/{local_tunnel_id}/configurations", 400, GOOD_CONFIG),
        Step("PUT", "{account_path}/cfd_tunnel/" + MISSING_UUID + "/configurations", 404, GOOD_CONFIG),
        Step("DELETE", tunnel, 400),  # a connector is attached (see the test)
        Step("DELETE", tunnel, 200, params={"cascade": "true"}),
        Step("GET", tunnel, 200),  # soft-deleted: still readable, with deleted_at
        Step("DELETE", "{account_path}/cfd_tunnel/" + MISSING_UUID, 404),
        # zones
        Step("GET", "/zones", 200, params={"name": "example.com"}),
        Step("GET", "/zones", 400, params={"order": "colour"}),
        Step("GET", "/zones/{zone_id}", 200),
        Step("GET", "/zones/{pro_zone_id}", 200),
        Step("GET", "/zones/" + MISSING_HEX, 404),
        # DNS
        Step(
            "POST",
            dns,
            200,
            {"name": "app.example.com", "type": "CNAME", "content": "t.cfargotunnel.com", "proxied": True},
            save="record_id",
        ),
        Step("POST", dns, 400, {"name": "app.example.com", "type": "A", "content": "192.0.2.1"}),
        Step("POST", dns, 200, {"name": "v6.example.com", "type": "AAAA", "content": "2001:db8::1", "ttl": 300}),
        Step("POST", dns, 200, {"name": "txt.example.com", "type": "TXT", "content": "hello", "comment": "note"}),
        Step("POST", dns, 200, {"name": "example.com", "type": "MX", "content": "mx.example.net", "priority": 10}),
        Step("POST", dns, 200, {"name": "sub.example.com", "type": "NS", "content": "ns1.example.net"}),
        Step(
            "POST",
            "/zones/{pro_zone_id}/dns_records",
            200,
            {"name": "a.example.net", "type": "A", "content": "192.0.2.1", "tags": ["owner:op"]},
        ),
        Step("GET", dns, 200, params={"name.endswith": ".example.com", "per_page": "2"}),
        Step("GET", dns, 200, params={"page": "99"}),
        Step("GET", dns, 400, params={"order": "colour"}),
        Step("GET", record, 200),
        Step("GET", dns + "/" + MISSING_HEX, 404),
        Step(
            "PUT", record, 200, {"name": "app.example.com", "type": "CNAME", "content": "u.cfargotunnel.com", "ttl": 1}
        ),
        Step(
            "PUT", record, 400, {"name": "app.example.com", "type": "CNAME", "content": "u.cfargotunnel.com", "ttl": 5}
        ),
        Step("PUT", dns + "/" + MISSING_HEX, 404, {"name": "m.example.com", "type": "A", "content": "192.0.2.1"}),
        Step("PATCH", record, 200, {"comment": "managed-by=op"}),
        Step("PATCH", record, 400, {"comment": "x" * 101}),
        Step("PATCH", dns + "/" + MISSING_HEX, 404, {"comment": "x"}),
        Step(
            "POST",
            dns + "/batch",
            200,
            {
                "patches": [{"id": "{record_id}", "proxied": False}],
                "posts": [{"name": "b.example.com", "type": "A", "content": "192.0.2.2"}],
            },
        ),
        Step("POST", dns + "/batch", 400, {"deletes": [{"id": MISSING_HEX}]}),
        Step("DELETE", record, 200),
        Step("DELETE", record, 404),
        # identity providers
        Step(
            "POST",
            access + "/identity_providers",
            201,
            {"name": "PIN", "type": "onetimepin", "config": {}},
            save="idp_id",
        ),
        Step("POST", access + "/identity_providers", 409, {"name": "PIN 2", "type": "onetimepin", "config": {}}),
        Step("POST", access + "/identity_providers", 400, {"name": "x", "type": "carrier-pigeon", "config": {}}),
        Step(
            "POST",
            access + "/identity_providers",
            201,
            {"name": "GH", "type": "github", "config": {"client_id": "c"}},
            save="idp2_id",
        ),
        Step("GET", access + "/identity_providers", 200),
        Step("GET", access + "/identity_providers", 400, params={"scim_enabled": "maybe"}),
        Step("GET", access + "/identity_providers/{idp_id}", 200),
        Step("GET", access + "/identity_providers/" + MISSING_UUID, 404),
        Step("PUT", access + "/identity_providers/{idp_id}", 200, {"name": "PIN", "type": "onetimepin", "config": {}}),
        Step("PUT", access + "/identity_providers/{idp_id}", 400, {"name": "PIN"}),
        Step("PUT", access + "/identity_providers/" + MISSING_UUID, 404, {"name": "x", "type": "github", "config": {}}),
        Step("DELETE", access + "/identity_providers/{idp2_id}", 202),
        Step("DELETE", access + "/identity_providers/" + MISSING_UUID, 404),
        # service tokens
        Step("POST", access + "/service_tokens", 201, {"name": "bot"}, save="service_token_id"),
        Step("POST", access + "/service_tokens", 400, {"name": "bot", "duration": "a while"}),
        Step("GET", access + "/service_tokens", 200),
        Step("GET", access + "/service_tokens", 400, params={"page": "0"}),
        Step("GET", token, 200),
        Step("GET", access + "/service_tokens/" + MISSING_UUID, 404),
        Step("PUT", token, 200, {"name": "bot-2", "duration": "forever"}),
        Step("PUT", token, 400, {"enabled": "yes"}),
        Step("PUT", access + "/service_tokens/" + MISSING_UUID, 404, {"name": "x"}),
        Step("POST", token + "/rotate", 200),
        Step("POST", token + "/rotate", 400, {"previous_client_secret_expires_at": "soon"}),
        Step("POST", access + "/service_tokens/" + MISSING_UUID + "/rotate", 404),
        Step("POST", token + "/refresh", 200),
        Step("POST", access + "/service_tokens/" + MISSING_UUID + "/refresh", 404),
        # reusable policies
        Step(
            "POST", access + "/policies", 201, {"name": "allow", "decision": "allow", "include": RULE}, save="policy_id"
        ),
        Step("POST", access + "/policies", 400, {"name": "allow", "decision": "maybe", "include": RULE}),
        Step("GET", access + "/policies", 200),
        Step("GET", access + "/policies", 400, params={"per_page": "many"}),
        Step("GET", access + "/policies/{policy_id}", 200),
        Step("GET", access + "/policies/" + MISSING_UUID, 404),
        Step(
            "PUT",
            access + "/policies/{policy_id}",
            200,
            {"name": "allow", "decision": "allow", "include": RULE, "exclude": [{"everyone": {}}]},
        ),
        Step("PUT", access + "/policies/{policy_id}", 400, {"name": "allow", "decision": "allow"}),
        Step("PUT", access + "/policies/" + MISSING_UUID, 404, {"name": "a", "decision": "allow", "include": RULE}),
        # applications
        Step(
            "POST",
            access + "/apps",
            201,
            {
                "type": "self_hosted",
                "domain": "app.example.com",
                "name": "app",
                "allowed_idps": ["{idp_id}"],
                "policies": ["{policy_id}"],
            },
            save="app_id",
        ),
        Step("POST", access + "/apps", 409, {"type": "self_hosted", "domain": "app.example.com"}),
        Step("POST", access + "/apps", 400, {"type": "self_hosted", "domain": "app.elsewhere.org"}),
        Step("GET", access + "/apps", 200, params={"domain": "app.example.com", "exact": "true"}),
        Step("GET", access + "/apps", 400, params={"exact": "maybe"}),
        Step("GET", app, 200),
        Step("GET", access + "/apps/" + MISSING_UUID, 404),
        Step(
            "PUT",
            app,
            200,
            {
                "type": "self_hosted",
                "domain": "app.example.com",
                "session_duration": "8h",
                "policies": [{"id": "{policy_id}", "precedence": 2}],
            },
        ),
        Step("PUT", app, 400, {"type": "saas-ish", "domain": "app.example.com"}),
        Step("PUT", access + "/apps/" + MISSING_UUID, 404, {"type": "self_hosted", "domain": "app.example.com"}),
        Step("DELETE", access + "/policies/{policy_id}", 400),  # still used by the app
        # app-scoped policies
        Step(
            "POST",
            app + "/policies",
            201,
            {
                "name": "bots",
                "decision": "non_identity",
                "include": [{"service_token": {"token_id": "{service_token_id}"}}],
                "precedence": 1,
            },
            save="app_policy_id",
        ),
        Step("POST", app + "/policies", 400, {"name": "bots", "decision": "allow"}),
        Step(
            "POST",
            access + "/apps/" + MISSING_UUID + "/policies",
            404,
            {"name": "b", "decision": "allow", "include": RULE},
        ),
        Step("GET", app + "/policies", 200),
        Step("GET", access + "/apps/" + MISSING_UUID + "/policies", 404),
        Step("GET", app + "/policies/{app_policy_id}", 200),
        Step("GET", app + "/policies/" + MISSING_UUID, 404),
        Step(
            "PUT",
            app + "/policies/{app_policy_id}",
            200,
            {"name": "robots", "decision": "non_identity", "include": [{"any_valid_service_token": {}}]},
        ),
        Step(
            "PUT", app + "/policies/{app_policy_id}", 400, {"name": "robots", "decision": "non_identity", "include": []}
        ),
        Step("PUT", app + "/policies/" + MISSING_UUID, 404, {"name": "r", "decision": "allow", "include": RULE}),
        Step("GET", app, 200),
        Step("DELETE", app + "/policies/{policy_id}", 400),  # reusable: not through the app route
        Step("DELETE", app + "/policies/{app_policy_id}", 202),
        Step("DELETE", app + "/policies/" + MISSING_UUID, 404),
        Step("DELETE", app, 202),
        Step("DELETE", access + "/apps/" + MISSING_UUID, 404),
        Step("DELETE", access + "/policies/{policy_id}", 202),
        Step("DELETE", access + "/policies/" + MISSING_UUID, 404),
        Step("DELETE", token, 200),
        Step("DELETE", token, 404),
    ]


def fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**ids) if "{" in value and "}" in value and not value.startswith("^") else value
    if isinstance(value, list):
        return [fill(v, ids) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, ids) for k, v in value.items()}
    return value


@pytest.fixture()
async def sb() -> AsyncIterator[CloudflareSandbox]:
    sandbox = await CloudflareSandbox(SandboxConfig.default()).start()
    try:
        yield sandbox
    finally:
        await sandbox.stop()


async def run_scenario(sb: CloudflareSandbox, client: httpx.AsyncClient, ids: dict[str, str]) -> None:
    for step in scenario():
        if step.method == "DELETE" and step.status == 400 and "cfd_tunnel" in step.path:
            sb.connect_tunnel(ids["tunnel_id"])
        answer = await client.request(step.method, fill(step.path, ids), json=fill(step.json, ids), params=step.params)
        assert answer.status_code == step.status, (step, answer.text)
        if step.save:
            ids[step.save] = answer.json()["result"]["id"]


async def run_generic_failures(sb: CloudflareSandbox, client: httpx.AsyncClient, ids: dict[str, str]) -> None:
    """Each route once with a token not allowed there, once rate limited, once failing inside."""
    values = ids | {"dns_record_id": ids["record_id"], "identity_provider_id": ids["idp_id"]}
    for route in ROUTES:
        path = route.template.format(**values)
        bad = await client.request(route.method, path, headers={"Authorization": "Bearer not-a-token"})
        sb.faults.rate_limit(count=1, retry_after=30)
        limited = await client.request(route.method, path)
        sb.faults.fail(op=route.op, status=500, count=1)
        failed = await client.request(route.method, path)
        assert (bad.status_code, limited.status_code, failed.status_code) == (403, 429, 500), route.op


async def test_every_response_kind_validates_against_the_openapi_subset(sb: CloudflareSandbox) -> None:
    events: list[ResponseEvent] = []
    sb.on_response = events.append
    ids = {"account_path": f"/accounts/{sb.account_id}", "account_id": sb.account_id}
    ids |= {"zone_id": sb.zone_id("example.com"), "pro_zone_id": sb.zone_id("example.net")}
    headers = {"Authorization": f"Bearer {sb.token}"}
    async with httpx.AsyncClient(base_url=sb.base_url, headers=headers) as client:
        await run_scenario(sb, client, ids)
        await run_generic_failures(sb, client, ids)
        odd: list[tuple[str, str, dict[str, str] | None, int]] = [
            ("GET", "/no/such/route", None, 404),
            ("DELETE", "/zones/" + ids["zone_id"], None, 405),
            ("GET", "/zones", {"Authorization": ""}, 400),
            ("GET", "/zones", {"X-Auth-Email": "a@b.c", "X-Auth-Key": "k"}, 400),  # a key of the wrong shape
            ("GET", "/zones", {"X-Auth-Email": "a@b.c", "X-Auth-Key": "0" * 37}, 403),  # a key nobody has
        ]
        for method, path, extra_headers, status in odd:
            answer = await client.request(method, path, headers=extra_headers)
            assert answer.status_code == status

    seen: dict[str, set[int]] = {}
    failures = []
    for event in events:
        failures += [f"{event.op} {event.status} envelope: {p}" for p in problems(ENVELOPE, event.body)]
        assert (event.status >= 400) is (event.body["success"] is False)
        if event.status == 200 and isinstance(event.body["result"], list):
            assert set(event.body["result_info"]) == RESULT_INFO_KEYS, event
        if event.op is None:
            continue
        assert event.route is not None
        if event.op in OPERATIONS:
            assert OPERATIONS[event.op] == (event.route, event.method.lower()), "route drifted from the spec mapping"
        seen.setdefault(event.op, set()).add(event.status)
        schema = spec_schema(event.op, event.status)
        if schema is not None:
            failures += [f"{event.op} {event.status}: {p}" for p in problems(schema, event.body)]
    assert failures == []
    watch = SchemaWatch()  # the soak's check of every answer agrees with this one
    for event in events:
        watch(event)
    assert (watch.checked, watch.problems) == (len(events), [])
    assert set(EXPECTED) == {r.op for r in ROUTES} == set(OPERATIONS) | set(COMPONENT_RESULTS)
    assert seen == {op: statuses | GENERIC for op, statuses in EXPECTED.items()}
    assert {(e.op, e.status) for e in events if e.op is None} == {(None, 404), (None, 405)}


def test_the_validation_catches_broken_payloads() -> None:
    record = {
        "id": "a" * 32,
        "name": "a.example.com",
        "type": "CNAME",
        "content": "t.cfargotunnel.com",
        "proxiable": True,
        "proxied": True,
        "ttl": 1,
        "settings": {},
        "meta": {},
        "comment": None,
        "tags": [],
        "created_on": "2026-01-01T00:00:00.000000Z",
        "modified_on": "2026-01-01T00:00:00.000000Z",
    }
    good = {"success": True, "errors": [], "messages": [], "result": record}
    schema = spec_schema("dns.get", 200)
    assert schema is not None and problems(schema, good) == []
    for broken in (
        good | {"result": record | {"ttl": 5}},
        good | {"result": record | {"created_on": "yesterday"}},
        good | {"result": {k: v for k, v in record.items() if k != "proxiable"}},
        good | {"success": False},
    ):
        assert problems(schema, broken), broken
    tunnel = spec_schema("tunnels.get", 200)
    assert tunnel is not None and problems(tunnel, good | {"result": {"id": "not-a-uuid"}})
    failure = spec_schema("dns.get", 404)
    error = {"success": False, "errors": [{"code": 81044, "message": "Record does not exist."}], "messages": []}
    assert failure is not None and problems(failure, error | {"result": None}) == []
    assert problems(failure, error | {"result": {"id": "x"}})
    assert problems(ENVELOPE, {"success": False, "errors": [{"code": 1}], "messages": [], "result": None})


def test_the_watch_of_every_answer_names_each_answer_off_the_schema() -> None:
    """The soak's check (harness.openapi.SchemaWatch): an answer off Cloudflare's schema, or whose status and
    `success` disagree, is named once with its operation; a good one is not."""
    record = {"id": "a" * 32, "name": "a.example.com", "type": "CNAME", "content": "t.cfargotunnel.com",
              "proxiable": True, "proxied": True, "ttl": 1, "settings": {}, "meta": {}, "comment": None, "tags": [],
              "created_on": "2026-01-01T00:00:00.000000Z", "modified_on": "2026-01-01T00:00:00.000000Z"}
    good = {"success": True, "errors": [], "messages": [], "result": record}
    route = "/zones/{zone_id}/dns_records/{dns_record_id}"
    watch = SchemaWatch()
    watch(ResponseEvent("dns.get", "GET", route, 200, good))
    assert (watch.checked, watch.problems) == (1, [])
    for _ in range(2):
        watch(ResponseEvent("dns.get", "GET", route, 200, good | {"result": record | {"ttl": 5}}))
    watch(ResponseEvent("dns.get", "GET", route, 500, good))
    listing = {**good, "result": [record, record | {"id": "b" * 32, "ttl": 5}], "result_info": {
        "page": 1, "per_page": 100, "count": 2, "total_count": 2, "total_pages": 1}}
    watch(ResponseEvent("dns.list", "GET", "/zones/{zone_id}/dns_records", 200, listing))
    assert watch.checked == 5
    assert len(watch.problems) == 3
    assert [line.split(":")[0] for line in watch.problems] == [
        f"GET {route} (dns.get) 200", f"GET {route} (dns.get) 500", "GET /zones/{zone_id}/dns_records (dns.list) 200"]
    assert "ttl" in watch.problems[0] and "ttl" in watch.problems[2]  # an item of a listing is validated too
    assert any("500 with success=True" in line for line in watch.problems)
    assert answer_problems(ResponseEvent(None, "GET", None, 404, {"success": False, "errors": [{"code": 7003,
                                         "message": "No route"}], "messages": [], "result": None})) == []
