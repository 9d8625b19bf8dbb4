"""Access service tokens. ``client_secret`` appears only in the create and rotate results; the
sandbox keeps nothing but its SHA-256. ``client_id`` is ``<32 hex>.access``; ``duration`` defaults
to 8760h (``forever`` → ``expires_at: null``); refresh extends ``expires_at`` by ``duration``."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime
from typing import Any

from . import access_base as base
from .envelope import Reply, paginate
from .routing import Ctx, Route, collection_routes
from .state import new_uuid, now_iso, parse_iso, public


def _secret(token: dict[str, Any]) -> str:
    secret = secrets.token_hex(32)
    token["_secret_sha256"] = hashlib.sha256(secret.encode()).hexdigest()
    return secret


def _find(ctx: Ctx) -> dict[str, Any]:
    return base.owned(ctx, ctx.state.service_tokens, "service_token_id")


def create(ctx: Ctx) -> Reply:
    body = ctx.json_object(12130)
    name = base.require_str(body, "name")
    duration = base.duration(body.get("duration", "8760h"), "duration", allow_forever=True)
    now = now_iso()
    token: dict[str, Any] = {
        "id": new_uuid(),
        "name": name,
        "client_id": f"{secrets.token_hex(16)}.access",
        "duration": duration,
        "enabled": True,
        "created_at": now,
        "updated_at": now,
        "expires_at": base.expiry(parse_iso(now), duration),
        "last_seen_at": None,
        "_account_id": ctx.account_id,
    }
    secret = _secret(token)
    ctx.state.service_tokens[token["id"]] = token
    return Reply(public(token) | {"client_secret": secret}, status=201)


def list_(ctx: Ctx) -> Reply:
    q = ctx.query
    search = q.get("search", "").lower()
    found = [
        public(t)
        for t in ctx.state.service_tokens.values()
        if t["_account_id"] == ctx.account_id
        and ("name" not in q or t["name"] == q["name"])
        and (not search or search in t["name"].lower())
    ]
    return paginate(found, q, base.PAGES)


def get(ctx: Ctx) -> Reply:
    return Reply(public(_find(ctx)))


def update(ctx: Ctx) -> Reply:
    token = _find(ctx)
    body = ctx.json_object(12130)
    name = base.require_str(body, "name") if "name" in body else token["name"]
    duration = base.duration(body.get("duration", token["duration"]), "duration", allow_forever=True)
    enabled = body.get("enabled", token["enabled"])
    if not isinstance(enabled, bool):
        raise base.invalid("enabled must be a boolean")
    now = now_iso()
    if duration != token["duration"]:
        token["expires_at"] = base.expiry(parse_iso(token["created_at"]), duration)
    token |= {"name": name, "duration": duration, "enabled": enabled, "updated_at": now}
    return Reply(public(token))


def delete(ctx: Ctx) -> Reply:
    token = _find(ctx)
    del ctx.state.service_tokens[token["id"]]
    return Reply(public(token))


def rotate(ctx: Ctx) -> Reply:
    token = _find(ctx)
    body = ctx.json_object(12130)
    previous_expiry = body.get("previous_client_secret_expires_at")
    if previous_expiry is not None:
        try:
            parse_iso(str(previous_expiry))
        except ValueError:
            raise base.invalid("previous_client_secret_expires_at must be an RFC 3339 time") from None
    secret = _secret(token)
    token["updated_at"] = now_iso()
    return Reply(public(token) | {"client_secret": secret})


def refresh(ctx: Ctx) -> Reply:
    token = _find(ctx)
    token["expires_at"] = base.expiry(datetime.now(UTC), token["duration"])
    token["updated_at"] = now_iso()
    return Reply(public(token))


_S = "/accounts/{account_id}/access/service_tokens"
ROUTES = [
    *collection_routes(_S, "service_token_id", "service_tokens",
                       create=create, list_=list_, get=get, update=update, delete=delete),
    Route("POST", _S + "/{service_token_id}/rotate", "service_tokens.rotate", rotate, mutates=True),
    Route("POST", _S + "/{service_token_id}/refresh", "service_tokens.refresh", refresh, mutates=True),
]
