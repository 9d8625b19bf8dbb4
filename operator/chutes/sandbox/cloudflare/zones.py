"""Zones (read-only): list with name/status/account filters, get.

A token restricted to some zones sees only those in lists; a zone id it may not use → 403/10000.
"""

from __future__ import annotations

from typing import Any

from .envelope import ApiError, PageRules, Reply, paginate
from .routing import Ctx, Route
from .state import PLAN_NAMES, ZoneInfo, derived_plan_id

BAD_REQUEST = 1001
PAGES = PageRules(default_per_page=20, max_per_page=50, min_per_page=5, error_code=BAD_REQUEST)
NAME_SERVERS = ["ada.ns.cloudflare.com", "bob.ns.cloudflare.com"]


def render(zone: ZoneInfo, account_name: str) -> dict[str, Any]:
    plan = zone.plan
    return {
        "id": zone.id,
        "name": zone.name,
        "status": "active",
        "paused": False,
        "type": "full",
        "development_mode": 0,
        "name_servers": list(NAME_SERVERS),
        "original_name_servers": None,
        "original_registrar": None,
        "original_dnshost": None,
        "vanity_name_servers": [],
        "created_on": zone.created_on,
        "modified_on": zone.created_on,
        "activated_on": zone.created_on,
        "meta": {
            "step": 4,
            "custom_certificate_quota": 0,
            "page_rule_quota": 3 if plan == "free" else 20,
            "phishing_detected": False,
        },
        "owner": {"id": zone.seed.account_id, "type": "organization", "name": account_name},
        "account": {"id": zone.seed.account_id, "name": account_name},
        "permissions": ["#dns_records:edit", "#dns_records:read", "#zone:read"],
        "plan": {
            "id": derived_plan_id(plan),
            "name": PLAN_NAMES[plan],
            "price": 0 if plan == "free" else 20,
            "currency": "USD",
            "frequency": "" if plan == "free" else "monthly",
            "is_subscribed": True,
            "can_subscribe": False,
            "legacy_id": plan,
            "legacy_discount": False,
            "externally_managed": False,
        },
    }


def _text_match(value: str, wanted: str) -> bool:
    """Cloudflare's zone ``name`` filter: exact, or ``contains:``/``starts_with:``/``ends_with:``."""
    value, wanted = value.lower(), wanted.lower()
    for prefix, test in (
        ("contains:", str.__contains__),
        ("starts_with:", str.startswith),
        ("ends_with:", str.endswith),
        ("equal:", str.__eq__),
    ):
        if wanted.startswith(prefix):
            return bool(test(value, wanted[len(prefix) :]))
    return value == wanted


def list_(ctx: Ctx) -> Reply:
    q = ctx.query
    match_any = q.get("match", "all")
    if match_any not in ("all", "any"):
        raise ApiError(400, BAD_REQUEST, f"Invalid 'match' parameter: {match_any!r}")
    status = q.get("status")
    if status is not None and status not in ("initializing", "pending", "active", "moved"):
        raise ApiError(400, BAD_REQUEST, f"Invalid 'status' parameter: {status!r}")
    order = q.get("order", "name")
    if order not in ("name", "status", "account.id", "account.name"):
        raise ApiError(400, BAD_REQUEST, f"Invalid 'order' parameter: {order!r}")
    direction = q.get("direction", "asc")
    if direction not in ("asc", "desc"):
        raise ApiError(400, BAD_REQUEST, f"Invalid 'direction' parameter: {direction!r}")
    found = []
    for zone in ctx.state.zones.values():
        if not ctx.token.allows_zone(zone.id, zone.seed.account_id):
            continue
        view = render(zone, ctx.state.accounts[zone.seed.account_id])
        tests = []
        if "name" in q:
            tests.append(_text_match(zone.name, q["name"]))
        if status is not None:
            tests.append(view["status"] == status)
        if "account.id" in q:
            tests.append(zone.seed.account_id == q["account.id"])
        if "account.name" in q:
            tests.append(_text_match(view["account"]["name"], q["account.name"]))
        if tests and not (any(tests) if match_any == "any" else all(tests)):
            continue
        found.append(view)
    key = order.split(".")
    found.sort(key=lambda z: str(z[key[0]] if len(key) == 1 else z[key[0]][key[1]]), reverse=direction == "desc")
    return paginate(found, q, PAGES)


def get(ctx: Ctx) -> Reply:
    zone = ctx.zone
    return Reply(render(zone, ctx.state.accounts[zone.seed.account_id]))


ROUTES = [
    Route("GET", "/zones", "zones.list", list_),
    Route("GET", "/zones/{zone_id}", "zones.get", get),
]
