"""Access policies: reusable (``/access/policies``, ``reusable: true``, ``app_count``) and
app-scoped (``/access/apps/{app_id}/policies``, exclusive to one app). Deleting a reusable policy
still attached to an application → 400/12130 (the sandbox's choice: detach it first). Through the
app-scoped routes, reusable policies attached to the app are listed and readable, but PUT/DELETE
of one → 400/12130 (manage it through /access/policies). Precedences are unique within an app
(a clash → 400/12130)."""

from __future__ import annotations

from typing import Any

from . import access_base as base
from .envelope import Reply, paginate
from .routing import Ctx, collection_routes
from .state import State, new_uuid, now_iso, public


def app_count(state: State, policy_id: str) -> int:
    return sum(1 for app in state.apps.values() if any(link["id"] == policy_id for link in app["_links"]))


def render(state: State, policy: dict[str, Any], precedence: int | None = None) -> dict[str, Any]:
    view = public(policy)
    if policy["_app_id"] is None:
        view |= {"reusable": True, "app_count": app_count(state, policy["id"])}
    else:
        view["reusable"] = False
    if precedence is not None:
        view["precedence"] = precedence
    return view


def build(
    state: State, account_id: str, body: dict[str, Any], app_id: str | None, previous: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Validate a policy document (full replace) into a stored policy."""
    name = base.require_str(body, "name")
    decision = body.get("decision")
    if decision not in base.DECISIONS:
        raise base.invalid(f"decision must be one of {', '.join(base.DECISIONS)}")
    now = now_iso()
    policy: dict[str, Any] = {
        "id": previous["id"] if previous else new_uuid(),
        "name": name,
        "decision": decision,
        "include": base.check_rules(state, account_id, body, "include", required=True),
        "exclude": base.check_rules(state, account_id, body, "exclude", required=False),
        "require": base.check_rules(state, account_id, body, "require", required=False),
        "session_duration": base.duration(body.get("session_duration", "24h"), "session_duration"),
        "approval_groups": body.get("approval_groups") or [],
        "approval_required": bool(body.get("approval_required", False)),
        "isolation_required": bool(body.get("isolation_required", False)),
        "purpose_justification_required": bool(body.get("purpose_justification_required", False)),
        "created_at": previous["created_at"] if previous else now,
        "updated_at": now,
        "_account_id": account_id,
        "_app_id": app_id,
    }
    if "purpose_justification_prompt" in body:
        policy["purpose_justification_prompt"] = body["purpose_justification_prompt"]
    return policy


def precedence_of(body: dict[str, Any], default: int) -> int:
    value = body.get("precedence", default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise base.invalid("precedence must be a positive integer")
    return value


def check_unique_precedence(links: list[dict[str, Any]]) -> None:
    seen = [x["precedence"] for x in links]
    if len(seen) != len(set(seen)):
        raise base.invalid("policy precedences must be unique within an application")


# --- reusable ------------------------------------------------------------------------------------


def _reusable(ctx: Ctx) -> dict[str, Any]:
    policy = base.owned(ctx, ctx.state.policies, "policy_id")
    if policy["_app_id"] is not None:
        raise base.not_found()
    return policy


def create(ctx: Ctx) -> Reply:
    policy = build(ctx.state, ctx.account_id, ctx.json_object(12130), None)
    ctx.state.policies[policy["id"]] = policy
    return Reply(render(ctx.state, policy), status=201)


def list_(ctx: Ctx) -> Reply:
    found = [
        render(ctx.state, p)
        for p in ctx.state.policies.values()
        if p["_account_id"] == ctx.account_id and p["_app_id"] is None
    ]
    return paginate(found, ctx.query, base.PAGES)


def get(ctx: Ctx) -> Reply:
    return Reply(render(ctx.state, _reusable(ctx)))


def update(ctx: Ctx) -> Reply:
    previous = _reusable(ctx)
    policy = build(ctx.state, ctx.account_id, ctx.json_object(12130), None, previous)
    ctx.state.policies[policy["id"]] = policy
    return Reply(render(ctx.state, policy))


def delete(ctx: Ctx) -> Reply:
    policy = _reusable(ctx)
    used = app_count(ctx.state, policy["id"])
    if used:
        raise base.invalid(f"policy is used by {used} application(s); remove it from them first")
    del ctx.state.policies[policy["id"]]
    return Reply({"id": policy["id"]}, status=202)


# --- app-scoped ----------------------------------------------------------------------------------


def _app(ctx: Ctx) -> dict[str, Any]:
    return base.owned(ctx, ctx.state.apps, "app_id")


def _linked(ctx: Ctx) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    app = _app(ctx)
    link = next((x for x in app["_links"] if x["id"] == ctx.params["policy_id"]), None)
    if link is None:
        raise base.not_found()
    return app, link, ctx.state.policies[link["id"]]


def app_create(ctx: Ctx) -> Reply:
    app = _app(ctx)
    body = ctx.json_object(12130)
    precedence = precedence_of(body, max((x["precedence"] for x in app["_links"]), default=0) + 1)
    policy = build(ctx.state, ctx.account_id, body, app["id"])
    link = {"id": policy["id"], "precedence": precedence}
    check_unique_precedence([*app["_links"], link])
    ctx.state.policies[policy["id"]] = policy
    app["_links"].append(link)
    return Reply(render(ctx.state, policy, precedence), status=201)


def app_list(ctx: Ctx) -> Reply:
    app = _app(ctx)
    links = sorted(app["_links"], key=lambda x: x["precedence"])
    found = [render(ctx.state, ctx.state.policies[x["id"]], x["precedence"]) for x in links]
    return paginate(found, ctx.query, base.PAGES)


def app_get(ctx: Ctx) -> Reply:
    _, link, policy = _linked(ctx)
    return Reply(render(ctx.state, policy, link["precedence"]))


def app_update(ctx: Ctx) -> Reply:
    app, link, previous = _linked(ctx)
    if previous["_app_id"] is None:
        raise base.invalid("reusable policies are managed through /access/policies")
    body = ctx.json_object(12130)
    precedence = precedence_of(body, link["precedence"])
    check_unique_precedence([x for x in app["_links"] if x is not link] + [{"precedence": precedence}])
    policy = build(ctx.state, ctx.account_id, body, previous["_app_id"], previous)
    ctx.state.policies[policy["id"]] = policy
    link["precedence"] = precedence
    return Reply(render(ctx.state, policy, precedence))


def app_delete(ctx: Ctx) -> Reply:
    app, link, policy = _linked(ctx)
    if policy["_app_id"] is None:
        raise base.invalid("reusable policies are managed through /access/policies")
    app["_links"].remove(link)
    del ctx.state.policies[policy["id"]]
    return Reply({"id": policy["id"]}, status=202)


ROUTES = [
    *collection_routes("/accounts/{account_id}/access/policies", "policy_id", "access.policies",
                       create=create, list_=list_, get=get, update=update, delete=delete),
    *collection_routes("/accounts/{account_id}/access/apps/{app_id}/policies", "policy_id", "access.app_policies",
                       create=app_create, list_=app_list, get=app_get, update=app_update, delete=app_delete),
]
