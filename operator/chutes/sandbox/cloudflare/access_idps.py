"""Access identity providers (``/access/identity_providers``). Only one ``onetimepin`` provider
per account: a second → 409/12131 "access.api.error.conflict: a onetimepin connection already
exists". Every provider's ``config`` gains the account's ``redirect_url``."""

from __future__ import annotations

from typing import Any

from . import access_base as base
from .envelope import Reply, paginate, parse_bool
from .routing import Ctx, collection_routes
from .state import new_uuid, public

TYPES = (
    "onetimepin", "azureAD", "saml", "centrify", "facebook", "github", "google-apps", "google",
    "linkedin", "oidc", "okta", "onelogin", "pingone", "yandex",
)  # fmt: skip


def _build(ctx: Ctx, body: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    name = base.require_str(body, "name")
    idp_type = body.get("type")
    if idp_type not in TYPES:
        raise base.invalid("type is missing or invalid")
    config = body.get("config")
    if not isinstance(config, dict):
        raise base.invalid("config is required and must be an object")
    idp_id = previous["id"] if previous else new_uuid()
    if idp_type == "onetimepin":
        if "scim_config" in body:
            raise base.invalid("scim_config is not supported for onetimepin")
        for other in ctx.state.idps.values():
            same_account = other["_account_id"] == ctx.account_id
            if same_account and other["type"] == "onetimepin" and other["id"] != idp_id:
                raise base.conflict("a onetimepin connection already exists")
    team = base.team_domain(ctx.state.accounts[ctx.account_id])
    idp: dict[str, Any] = {
        "id": idp_id,
        "name": name,
        "type": idp_type,
        "config": dict(config) | {"redirect_url": f"https://{team}/cdn-cgi/access/callback"},
        "_account_id": ctx.account_id,
    }
    scim = body.get("scim_config")
    if scim is not None:
        if not isinstance(scim, dict):
            raise base.invalid("scim_config must be an object")
        idp["scim_config"] = {k: v for k, v in scim.items() if k != "secret"}
    return idp


def _find(ctx: Ctx) -> dict[str, Any]:
    return base.owned(ctx, ctx.state.idps, "identity_provider_id")


def create(ctx: Ctx) -> Reply:
    idp = _build(ctx, ctx.json_object(12130), None)
    ctx.state.idps[idp["id"]] = idp
    return Reply(public(idp), status=201)


def list_(ctx: Ctx) -> Reply:
    scim = parse_bool(ctx.query, "scim_enabled", 12130)
    found = [
        public(i)
        for i in ctx.state.idps.values()
        if i["_account_id"] == ctx.account_id
        and (scim is None or bool(i.get("scim_config", {}).get("enabled", False)) == scim)
    ]
    return paginate(found, ctx.query, base.PAGES)


def get(ctx: Ctx) -> Reply:
    return Reply(public(_find(ctx)))


def update(ctx: Ctx) -> Reply:
    idp = _build(ctx, ctx.json_object(12130), _find(ctx))
    ctx.state.idps[idp["id"]] = idp
    return Reply(public(idp))


def delete(ctx: Ctx) -> Reply:
    idp = _find(ctx)
    del ctx.state.idps[idp["id"]]
    return Reply({"id": idp["id"]}, status=202)


ROUTES = collection_routes("/accounts/{account_id}/access/identity_providers", "identity_provider_id", "idps",
                           create=create, list_=list_, get=get, update=update, delete=delete)
