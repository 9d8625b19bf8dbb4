"""Access applications. Results embed full policy objects (with ``precedence``); ``aud`` is 64 hex.

Choices: create 201, delete 202 (as the spec). PUT is a full replace of the app's fields and of its
links to reusable policies (``policies`` omitted → none); exclusive app-scoped policies stay (they
are managed under /apps/{id}/policies). ``policies`` items are reusable-policy ids, ``{id,
precedence}`` links (explicit precedences must be unique; implicit ones take their position or the
next free number) or inline policy objects (creating exclusive policies); an unknown policy id →
400/12130. A second self-hosted app on the same domain → 409/12131; a domain outside the account's
zones → 400/12130 "domain does not belong to zone"; unknown ``allowed_idps`` → 400/12130.
"""

from __future__ import annotations

import copy
import secrets
from typing import Any

from . import access_base as base
from . import access_policies
from .envelope import Reply, paginate, parse_bool
from .routing import Ctx, collection_routes
from .state import State, new_uuid, now_iso, public

TYPES = ("self_hosted", "ssh", "vnc")
RESERVED = frozenset({"id", "aud", "created_at", "updated_at", "policies", "type", "domain", "name"})
DEFAULTS: dict[str, Any] = {
    "allowed_idps": [],
    "app_launcher_visible": True,
    "auto_redirect_to_identity": False,
    "enable_binding_cookie": False,
    "http_only_cookie_attribute": True,
    "options_preflight_bypass": False,
    "service_auth_401_redirect": False,
    "skip_interstitial": False,
    "tags": [],
}


def render(state: State, app: dict[str, Any]) -> dict[str, Any]:
    links = sorted(app["_links"], key=lambda x: x["precedence"])
    policies = [access_policies.render(state, state.policies[x["id"]], x["precedence"]) for x in links]
    return public(app) | {"policies": policies}


def _check_domain(state: State, account_id: str, domain: Any) -> str:
    if not isinstance(domain, str) or not domain.strip():
        raise base.invalid("domain is required")
    host = domain.split("/", 1)[0].lower().rstrip(".")
    bare = host[2:] if host.startswith("*.") else host
    zones = [z.name for z in state.zones_of(account_id)]
    if not any(bare == z or bare.endswith("." + z) for z in zones):
        raise base.invalid("domain does not belong to zone")
    return domain


def _links(state: State, account_id: str, raw: Any, app_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Validated policy links plus exclusive policies to create (nothing is stored here)."""
    if raw is None:
        return [], []
    if not isinstance(raw, list):
        raise base.invalid("policies must be a list")
    links: list[dict[str, Any]] = []  # precedence None: implicit (numbered by _number)
    created: list[dict[str, Any]] = []
    for index, item in enumerate(raw, start=1):
        if isinstance(item, str):
            item = {"id": item}
        if not isinstance(item, dict):
            raise base.invalid(f"invalid policy reference {item!r}")
        precedence = access_policies.precedence_of(item, index) if "precedence" in item else None
        if "id" not in item:
            policy = access_policies.build(state, account_id, item, app_id)
            created.append(policy)
            links.append({"id": policy["id"], "precedence": precedence})
            continue
        existing = state.policies.get(str(item["id"]))
        usable = (
            existing is not None and existing["_account_id"] == account_id and existing["_app_id"] in (None, app_id)
        )
        if not usable:
            raise base.invalid(f"policy {item['id']!r} does not exist")
        links.append({"id": str(item["id"]), "precedence": precedence})
    return links, created


def _number(links: list[dict[str, Any]]) -> None:
    """Explicit precedences must be unique; implicit ones take their position or the next free one."""
    access_policies.check_unique_precedence([x for x in links if x["precedence"] is not None])
    used = {x["precedence"] for x in links if x["precedence"] is not None}
    for position, link in enumerate(links, start=1):
        if link["precedence"] is None:
            while position in used:
                position += 1
            link["precedence"] = position
            used.add(position)


def _build(ctx: Ctx, body: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    state, account_id = ctx.state, ctx.account_id
    app_type = body.get("type")
    if app_type not in TYPES:
        raise base.invalid("app type is missing or invalid")
    domain = _check_domain(state, account_id, body.get("domain"))
    app_id = previous["id"] if previous else new_uuid()
    for other in state.apps.values():
        same = other["domain"].lower() == domain.lower() and other["type"] == "self_hosted" == app_type
        if same and other["_account_id"] == account_id and other["id"] != app_id:
            raise base.conflict("an application with this domain already exists")
    name = body.get("name", domain)
    if not isinstance(name, str) or not name:
        raise base.invalid("name must be a non-empty string")
    idps = body.get("allowed_idps", [])
    if not isinstance(idps, list) or any(
        not isinstance(i, str) or i not in state.idps or state.idps[i]["_account_id"] != account_id for i in idps
    ):
        raise base.invalid("allowed_idps must list identity providers of this account")
    links, created = _links(state, account_id, body.get("policies"), app_id)
    if previous:
        linked = {x["id"] for x in links}
        kept = [x for x in previous["_links"] if state.policies[x["id"]]["_app_id"] == app_id]
        links += [dict(x) for x in kept if x["id"] not in linked]
    _number(links)
    now = now_iso()
    extras = {k: v for k, v in body.items() if k not in RESERVED}
    app = (
        {"id": app_id, "aud": previous["aud"] if previous else secrets.token_hex(32), "type": app_type}
        | {"name": name, "domain": domain, "self_hosted_domains": [domain]}
        | copy.deepcopy(DEFAULTS)
        | extras
        | {
            "session_duration": base.duration(body.get("session_duration", "24h"), "session_duration"),
            "created_at": previous["created_at"] if previous else now,
            "updated_at": now,
            "_account_id": account_id,
            "_links": links,
            "_created": created,
        }
    )
    return app


def _store(state: State, app: dict[str, Any]) -> None:
    for policy in app.pop("_created"):
        state.policies[policy["id"]] = policy
    state.apps[app["id"]] = app


def _find(ctx: Ctx) -> dict[str, Any]:
    return base.owned(ctx, ctx.state.apps, "app_id")


def create(ctx: Ctx) -> Reply:
    app = _build(ctx, ctx.json_object(12130), None)
    _store(ctx.state, app)
    return Reply(render(ctx.state, app), status=201)


def list_(ctx: Ctx) -> Reply:
    q = ctx.query
    exact = parse_bool(q, "exact", 12130) or False
    found = []
    for app in ctx.state.apps.values():
        if app["_account_id"] != ctx.account_id:
            continue
        if "aud" in q and app["aud"] != q["aud"]:
            continue
        if not all(_text(app[key], q[key], exact) for key in ("name", "domain") if key in q):
            continue
        search = q.get("search", "").lower()
        if search and search not in app["name"].lower() and search not in app["domain"].lower():
            continue
        found.append(render(ctx.state, app))
    return paginate(found, q, base.PAGES)


def _text(value: str, wanted: str, exact: bool) -> bool:
    return value.lower() == wanted.lower() if exact else wanted.lower() in value.lower()


def get(ctx: Ctx) -> Reply:
    return Reply(render(ctx.state, _find(ctx)))


def update(ctx: Ctx) -> Reply:
    previous = _find(ctx)
    app = _build(ctx, ctx.json_object(12130), previous)
    _store(ctx.state, app)
    return Reply(render(ctx.state, app))


def delete(ctx: Ctx) -> Reply:
    app = _find(ctx)
    for link in app["_links"]:
        if ctx.state.policies[link["id"]]["_app_id"] == app["id"]:
            del ctx.state.policies[link["id"]]
    del ctx.state.apps[app["id"]]
    return Reply({"id": app["id"]}, status=202)


ROUTES = collection_routes("/accounts/{account_id}/access/apps", "app_id", "access.apps",
                           create=create, list_=list_, get=get, update=update, delete=delete)
