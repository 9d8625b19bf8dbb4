"""Cloudflare's published OpenAPI schema (its subset in tests/data/cloudflare-openapi-subset.json, copied from
../shared with its provenance there) as a check of the Cloudflare emulator's answers: the mapping of the emulator's
operations to the subset's paths, the response envelope, and :class:`SchemaWatch`, an ``on_response`` hook that
validates every answer of a run (the soak's), so that an emulator kinder or stranger than Cloudflare shows."""

from __future__ import annotations

import dataclasses
import functools
import json
import threading
import time
from pathlib import Path
from typing import Any

from openapi_schema_validator import OAS30Validator, oas30_format_checker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from chutes.sandbox.cloudflare import ResponseEvent

SPEC = json.loads((Path(__file__).parents[1] / "data" / "cloudflare-openapi-subset.json").read_text())
SPEC_URI = "urn:cloudflare-openapi-subset"
REGISTRY: Registry[Any] = Registry().with_resource(SPEC_URI, Resource.from_contents(SPEC, default_specification=DRAFT4))

_A = "/accounts/{account_id}"
_T = _A + "/cfd_tunnel"
_D = "/zones/{zone_id}/dns_records"
_X = _A + "/access"
# Emulator operation → (OpenAPI path template, method), spelled out so a drift on either side fails.
# rotate/refresh are not paths of the subset: their results are checked against its components.
OPERATIONS: dict[str, tuple[str, str]] = {
    "tunnels.create": (_T, "post"),
    "tunnels.list": (_T, "get"),
    "tunnels.get": (_T + "/{tunnel_id}", "get"),
    "tunnels.edit": (_T + "/{tunnel_id}", "patch"),
    "tunnels.delete": (_T + "/{tunnel_id}", "delete"),
    "tunnels.token": (_T + "/{tunnel_id}/token", "get"),
    "tunnels.config.get": (_T + "/{tunnel_id}/configurations", "get"),
    "tunnels.config.put": (_T + "/{tunnel_id}/configurations", "put"),
    "zones.list": ("/zones", "get"),
    "zones.get": ("/zones/{zone_id}", "get"),
    "dns.create": (_D, "post"),
    "dns.list": (_D, "get"),
    "dns.get": (_D + "/{dns_record_id}", "get"),
    "dns.update": (_D + "/{dns_record_id}", "put"),
    "dns.edit": (_D + "/{dns_record_id}", "patch"),
    "dns.delete": (_D + "/{dns_record_id}", "delete"),
    "dns.batch": (_D + "/batch", "post"),
    "access.apps.create": (_X + "/apps", "post"),
    "access.apps.list": (_X + "/apps", "get"),
    "access.apps.get": (_X + "/apps/{app_id}", "get"),
    "access.apps.update": (_X + "/apps/{app_id}", "put"),
    "access.apps.delete": (_X + "/apps/{app_id}", "delete"),
    "access.app_policies.create": (_X + "/apps/{app_id}/policies", "post"),
    "access.app_policies.list": (_X + "/apps/{app_id}/policies", "get"),
    "access.app_policies.get": (_X + "/apps/{app_id}/policies/{policy_id}", "get"),
    "access.app_policies.update": (_X + "/apps/{app_id}/policies/{policy_id}", "put"),
    "access.app_policies.delete": (_X + "/apps/{app_id}/policies/{policy_id}", "delete"),
    "access.policies.create": (_X + "/policies", "post"),
    "access.policies.list": (_X + "/policies", "get"),
    "access.policies.get": (_X + "/policies/{policy_id}", "get"),
    "access.policies.update": (_X + "/policies/{policy_id}", "put"),
    "access.policies.delete": (_X + "/policies/{policy_id}", "delete"),
    "idps.create": (_X + "/identity_providers", "post"),
    "idps.list": (_X + "/identity_providers", "get"),
    "idps.get": (_X + "/identity_providers/{identity_provider_id}", "get"),
    "idps.update": (_X + "/identity_providers/{identity_provider_id}", "put"),
    "idps.delete": (_X + "/identity_providers/{identity_provider_id}", "delete"),
    "service_tokens.create": (_X + "/service_tokens", "post"),
    "service_tokens.list": (_X + "/service_tokens", "get"),
    "service_tokens.get": (_X + "/service_tokens/{service_token_id}", "get"),
    "service_tokens.update": (_X + "/service_tokens/{service_token_id}", "put"),
    "service_tokens.delete": (_X + "/service_tokens/{service_token_id}", "delete"),
}
COMPONENT_RESULTS = {
    "service_tokens.rotate": "access_create_response",
    "service_tokens.refresh": "access_service-tokens_components-schemas-single_response",
}
_MESSAGES = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["code", "message"],
        "properties": {"code": {"type": "integer"}, "message": {"type": "string"}},
    },
}
ENVELOPE = {
    "type": "object",
    "required": ["success", "errors", "messages", "result"],
    "properties": {"success": {"type": "boolean"}, "errors": _MESSAGES, "messages": _MESSAGES},
    "oneOf": [
        {"properties": {"success": {"enum": [True]}, "errors": {"maxItems": 0}}},
        {"properties": {"success": {"enum": [False]}, "errors": {"minItems": 1}, "result": {"enum": [None]}}},
    ],
}
RESULT_INFO_KEYS = {"page", "per_page", "count", "total_count", "total_pages"}


def _pointer(*parts: str) -> str:
    return f"{SPEC_URI}#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def spec_schema(op: str, status: int) -> dict[str, Any] | None:
    """The subset's response schema for this answer (status, then NXX, then default), if any."""
    if op in COMPONENT_RESULTS:
        return {"$ref": _pointer("components", "schemas", COMPONENT_RESULTS[op])} if status < 300 else None
    path, method = OPERATIONS[op]
    responses = SPEC["paths"][path][method]["responses"]
    for key in (str(status), f"{status // 100}XX", "default"):
        if key in responses:
            return {"$ref": _pointer("paths", path, method, "responses", key, "content", "application/json", "schema")}
    return None


@functools.cache
def _validator(schema: str) -> OAS30Validator:
    return OAS30Validator(json.loads(schema), registry=REGISTRY, format_checker=oas30_format_checker)


def problems(schema: dict[str, Any], body: Any) -> list[str]:
    """What in `body` breaks `schema` (a schema of the subset, or one referring to it), one line each."""
    validator = _validator(json.dumps(schema, sort_keys=True))
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in validator.iter_errors(body)]


def answer_problems(event: ResponseEvent) -> list[str]:
    """What is wrong with one answer of the emulator, measured against the subset: its envelope (success and errors
    agree with the status; a list's result_info), and its body against the operation's response schema (status,
    then NXX, then default). Unknown paths (op None) are checked for their envelope only."""
    body = event.body
    found = [f"envelope: {p}" for p in problems(ENVELOPE, body)]
    if isinstance(body, dict):
        if (event.status >= 400) is not (body.get("success") is False):
            found.append(f"status {event.status} with success={body.get('success')!r}")
        if event.status == 200 and isinstance(body.get("result"), list) and set(body.get("result_info") or {}) \
                != RESULT_INFO_KEYS:
            found.append(f"result_info keys {sorted(body.get('result_info') or {})}")
    if event.op is not None and (event.op in OPERATIONS or event.op in COMPONENT_RESULTS):
        schema = spec_schema(event.op, event.status)
        if schema is not None:
            found += problems(schema, body)
    return [f"{event.method} {event.route or '?'} ({event.op}) {event.status}: {p}" for p in found]


class SchemaWatch:
    """An ``on_response`` hook (or called from one) validating every answer with :func:`answer_problems`;
    thread-safe. `problems`: the first `keep` answers found wrong (each once); `checked`: the answers validated;
    `seconds`: the time spent validating.

    Validation is slow (a DNS record is checked against a oneOf of every record type: ~10 ms), and a run lists the
    same objects again and again: an answer met before (the same operation, status and body) is not validated again,
    and a listing's items are validated once per distinct content (its envelope and result_info every time)."""

    def __init__(self, keep: int = 20) -> None:
        self.keep = keep
        self.checked = 0
        self.seconds = 0.0
        self.problems: list[str] = []
        self._seen: set[tuple[str | None, int, str]] = set()
        self._lock = threading.Lock()

    def __call__(self, event: ResponseEvent) -> None:
        started = time.perf_counter()
        body = event.body
        with self._lock:
            self.checked += 1
            if isinstance(body, dict) and isinstance(body.get("result"), list):
                fresh = [item for item in body["result"] if self._first(event, item)]
                event = dataclasses.replace(event, body=body | {"result": fresh})
            elif not self._first(event, body):
                return
        found = answer_problems(event)
        with self._lock:
            self.seconds += time.perf_counter() - started
            for line in found:
                if line not in self.problems and len(self.problems) < self.keep:
                    self.problems.append(line)

    def _first(self, event: ResponseEvent, value: Any) -> bool:
        key = (event.op, event.status, json.dumps(value, sort_keys=True, default=str))
        if key in self._seen:
            return False
        self._seen.add(key)
        return True
