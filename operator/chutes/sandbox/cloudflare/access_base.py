"""Shared by the Zero Trust Access endpoints: error shapes, pagination, durations, rules.

Codes (field reports show 12130 for most Access errors): 404/12130 ``access.api.error.not_found``
· 400/12130 ``access.api.error.invalid_request: ...`` · 409/12131 ``access.api.error.conflict:
...`` (the sandbox's choice for conflicts: second OTP IdP, second self-hosted app on a domain).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from .envelope import ApiError, PageRules
from .routing import Ctx
from .state import State

PAGES = PageRules(default_per_page=25, max_per_page=1000, error_code=12130)
DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")
UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
RULE_KEYS = frozenset(
    {
        "email", "email_list", "email_domain", "everyone", "ip", "ip_list", "certificate", "group",
        "azureAD", "github-organization", "gsuite", "okta", "saml", "oidc", "service_token",
        "any_valid_service_token", "external_evaluation", "geo", "auth_method", "device_posture",
        "login_method", "common_name", "auth_context", "linked_app_token",
    }
)  # fmt: skip
DECISIONS = ("allow", "deny", "non_identity", "bypass")


def not_found() -> ApiError:
    return ApiError(404, 12130, "access.api.error.not_found")


def owned(ctx: Ctx, objects: dict[str, dict[str, Any]], param: str) -> dict[str, Any]:
    """The object of `objects` that the path parameter `param` names, when it is the caller's account's;
    else 404."""
    found = objects.get(ctx.params[param])
    if found is None or found["_account_id"] != ctx.account_id:
        raise not_found()
    return found


def invalid(message: str) -> ApiError:
    return ApiError(400, 12130, f"access.api.error.invalid_request: {message}")


def conflict(message: str) -> ApiError:
    return ApiError(409, 12131, f"access.api.error.conflict: {message}")


def duration(raw: Any, field: str, *, allow_forever: bool = False) -> str:
    if isinstance(raw, str) and (DURATION.match(raw) or (allow_forever and raw == "forever")):
        return raw
    raise invalid(f"{field} must be a duration such as 24h or 30m")


def seconds(value: str) -> float:
    return sum(float(n) * UNITS[u] for n, _, u in re.findall(r"(\d+(\.\d+)?)(ns|us|µs|ms|s|m|h)", value))


def expiry(start: datetime, value: str) -> str | None:
    if value == "forever":
        return None
    return (start + timedelta(seconds=seconds(value))).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def require_str(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value.strip():
        raise invalid(f"{field} is required")
    return value


def check_rules(state: State, account_id: str, body: dict[str, Any], field: str, required: bool) -> list[Any]:
    rules = body.get(field)
    if rules is None and not required:
        return []
    if not isinstance(rules, list) or (required and not rules):
        raise invalid(f"{field} must be a non-empty list of rules" if required else f"{field} must be a list")
    for rule in rules:
        if not isinstance(rule, dict) or len(rule) != 1 or next(iter(rule)) not in RULE_KEYS:
            raise invalid(f"invalid rule in {field}: {rule!r}")
        kind, value = next(iter(rule.items()))
        if not isinstance(value, dict):
            raise invalid(f"invalid rule in {field}: {rule!r}")
        if kind == "service_token":
            token = state.service_tokens.get(str(value.get("token_id")))
            if token is None or token["_account_id"] != account_id:
                raise invalid(f"service token {value.get('token_id')!r} does not exist")
        if kind == "login_method":
            idp = state.idps.get(str(value.get("id")))
            if idp is None or idp["_account_id"] != account_id:
                raise invalid(f"identity provider {value.get('id')!r} does not exist")
    return rules


def team_domain(account_name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", account_name.lower()).strip("-") or "sandbox"
    return f"{slug}.cloudflareaccess.com"
