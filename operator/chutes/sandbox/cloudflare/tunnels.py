"""Cloudflare Tunnels (cfd_tunnel): CRUD with soft delete, connector token, remote configuration.

Error codes (the reference leaves most unverified; these are the sandbox's documented choices):
400/1001 invalid request · 404/1002 tunnel not found (also: any write, token or configuration call
on a deleted tunnel) · 409/1013 live tunnel with that name · 400/1022 delete without
``cascade=true`` while connectors are attached · 400/1055 configuration PUT on a ``config_src:
local`` tunnel (refused: its ingress lives in cloudflared's local file) · 400/1056 invalid
configuration ("Bad Configuration: Validation failed: ...").
GET of a deleted tunnel returns it with ``deleted_at``; configuration GET of a tunnel that never
had a PUT returns ``{"version": 0, "config": null, ...}``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
from collections.abc import Mapping
from typing import Any

from .envelope import ApiError, PageRules, Reply, paginate, parse_bool
from .routing import Ctx, Route, collection_routes
from .state import State, Tunnel, TunnelConfig, new_uuid, now_iso, parse_iso

BAD_REQUEST = 1001
PAGES = PageRules(default_per_page=20, max_per_page=1000, error_code=BAD_REQUEST)
SERVICE_SCHEMES = ("http://", "https://", "unix:", "unix+tls:", "tcp://", "ssh://", "rdp://", "smb://")
SERVICE_WORDS = ("hello_world", "hello-world", "bastion", "socks5")
CATCH_ALL = "The last ingress rule must match all URLs (i.e. it should not have a hostname or path filter)"


def render(t: Tunnel) -> dict[str, Any]:
    if t.connections:
        status = "healthy"
    elif t.conns_active_at is not None:
        status = "down"
    else:
        status = "inactive"
    return {
        "id": t.id,
        "account_tag": t.account_id,
        "name": t.name,
        "created_at": t.created_at,
        "deleted_at": t.deleted_at,
        "connections": [dict(c) for c in t.connections],
        "conns_active_at": t.conns_active_at,
        "conns_inactive_at": t.conns_inactive_at,
        "status": status,
        "tun_type": "cfd_tunnel",
        "remote_config": t.config_src == "cloudflare",
        "config_src": t.config_src,
        "metadata": {},
    }


def connector_token(t: Tunnel) -> str:
    payload = json.dumps({"a": t.account_id, "t": t.id, "s": t.secret}, separators=(",", ":"))
    return base64.b64encode(payload.encode()).decode()


def _find(ctx: Ctx, *, live: bool) -> Tunnel:
    tunnel = ctx.state.tunnels.get(ctx.params["tunnel_id"])
    if tunnel is None or tunnel.account_id != ctx.account_id or (live and tunnel.deleted_at is not None):
        raise ApiError(404, 1002, "Tunnel not found")
    return tunnel


def _check_name(state: State, account_id: str, name: Any, exclude: str | None = None) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ApiError(400, BAD_REQUEST, "Tunnel name is required and must be a non-empty string")
    for other in state.tunnels.values():
        if other.account_id == account_id and other.deleted_at is None and other.name == name and other.id != exclude:
            raise ApiError(
                409,
                1013,
                "You already have a tunnel with this name. Delete the existing tunnel, "
                "or choose a different name for your new tunnel",
            )
    return name


def _check_secret(raw: Any) -> str:
    try:
        decoded = base64.b64decode(raw, validate=True) if isinstance(raw, str) else b""
    except (binascii.Error, ValueError):
        decoded = b""
    if len(decoded) < 32:
        raise ApiError(400, BAD_REQUEST, "tunnel_secret must be a base64-encoded value of at least 32 bytes")
    return str(raw)


def create_tunnel(state: State, account_id: str, body: dict[str, Any]) -> Tunnel:
    name = _check_name(state, account_id, body.get("name"))
    config_src = body.get("config_src", "local")
    if config_src not in ("local", "cloudflare"):
        raise ApiError(400, BAD_REQUEST, "config_src must be 'local' or 'cloudflare'")
    secret = body.get("tunnel_secret")
    secret = _check_secret(secret) if secret is not None else base64.b64encode(secrets.token_bytes(32)).decode()
    tunnel = Tunnel(
        id=new_uuid(), account_id=account_id, name=name, config_src=config_src, secret=secret, created_at=now_iso()
    )
    state.tunnels[tunnel.id] = tunnel
    return tunnel


def create(ctx: Ctx) -> Reply:
    tunnel = create_tunnel(ctx.state, ctx.account_id, ctx.json_object(BAD_REQUEST))
    result = render(tunnel) | {
        "token": connector_token(tunnel),
        "credentials_file": {
            "AccountTag": tunnel.account_id,
            "TunnelID": tunnel.id,
            "TunnelName": tunnel.name,
            "TunnelSecret": tunnel.secret,
        },
    }
    return Reply(result)


def list_(ctx: Ctx) -> Reply:
    q = ctx.query
    is_deleted = parse_bool(q, "is_deleted", BAD_REQUEST)
    moments = {key: _moment(q, key) for key in ("existed_at", "was_active_at", "was_inactive_at")}
    status = q.get("status")
    if status is not None and status not in ("inactive", "degraded", "healthy", "down"):
        raise ApiError(400, BAD_REQUEST, f"Invalid 'status' parameter: {status!r}")
    found = []
    for t in ctx.state.tunnels.values():
        view = render(t)
        if t.account_id != ctx.account_id:
            continue
        if is_deleted is not None and (t.deleted_at is not None) != is_deleted:
            continue
        if "name" in q and t.name != q["name"]:
            continue
        if "uuid" in q and t.id != q["uuid"]:
            continue
        if status is not None and view["status"] != status:
            continue
        if "include_prefix" in q and not t.name.startswith(q["include_prefix"]):
            continue
        if "exclude_prefix" in q and t.name.startswith(q["exclude_prefix"]):
            continue
        if not _existed(t, moments["existed_at"]):
            continue
        active, inactive = moments["was_active_at"], moments["was_inactive_at"]
        if active is not None and (t.conns_active_at is None or t.conns_active_at > active):
            continue
        if inactive is not None and (t.conns_inactive_at is None or t.conns_inactive_at > inactive):
            continue
        found.append(view)
    return paginate(found, q, PAGES)


def _moment(query: Mapping[str, str], key: str) -> str | None:
    raw = query.get(key)
    if raw is None:
        return None
    try:
        return parse_iso(raw).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    except ValueError:
        raise ApiError(400, BAD_REQUEST, f"Invalid '{key}' parameter: {raw!r} is not an RFC 3339 time") from None


def _existed(t: Tunnel, moment: str | None) -> bool:
    if moment is None:
        return True
    return t.created_at <= moment and (t.deleted_at is None or t.deleted_at > moment)


def get(ctx: Ctx) -> Reply:
    return Reply(render(_find(ctx, live=False)))


def edit(ctx: Ctx) -> Reply:
    tunnel = _find(ctx, live=True)
    body = ctx.json_object(BAD_REQUEST)
    name = _check_name(ctx.state, ctx.account_id, body["name"], exclude=tunnel.id) if "name" in body else None
    secret = _check_secret(body["tunnel_secret"]) if "tunnel_secret" in body else None
    if name is not None:
        tunnel.name = name
    if secret is not None:
        tunnel.secret = secret
    return Reply(render(tunnel))


def delete(ctx: Ctx) -> Reply:
    tunnel = _find(ctx, live=True)
    cascade = parse_bool(ctx.query, "cascade", BAD_REQUEST) or False
    if tunnel.connections and not cascade:
        raise ApiError(
            400, 1022, "Cannot delete a tunnel with active connections; stop its connectors or use cascade=true"
        )
    now = now_iso()
    if tunnel.connections:
        tunnel.connections = []
        tunnel.conns_inactive_at = now
    tunnel.deleted_at = now
    return Reply(render(tunnel))


def token(ctx: Ctx) -> Reply:
    return Reply(connector_token(_find(ctx, live=True)))


def _config_result(tunnel: Tunnel, config: TunnelConfig | None) -> dict[str, Any]:
    return {
        "tunnel_id": tunnel.id,
        "account_id": tunnel.account_id,
        "version": config.version if config else 0,
        "config": json.loads(json.dumps(config.config)) if config else None,
        "source": "cloudflare" if tunnel.config_src == "cloudflare" else "local",
        "created_at": config.created_at if config else tunnel.created_at,
    }


def config_get(ctx: Ctx) -> Reply:
    tunnel = _find(ctx, live=True)
    return Reply(_config_result(tunnel, ctx.state.tunnel_configs.get(tunnel.id)))


def config_put(ctx: Ctx) -> Reply:
    tunnel = _find(ctx, live=True)
    if tunnel.config_src != "cloudflare":
        raise ApiError(
            400, 1055, "This tunnel is locally configured (config_src: local); its configuration cannot be set remotely"
        )
    config = ctx.json_object(1056).get("config")
    validate_config(config)
    assert isinstance(config, dict)
    previous = ctx.state.tunnel_configs.get(tunnel.id)
    stored = TunnelConfig(version=(previous.version if previous else 0) + 1, config=config, created_at=now_iso())
    ctx.state.tunnel_configs[tunnel.id] = stored
    return Reply(_config_result(tunnel, stored))


def _bad_config(reason: str) -> ApiError:
    return ApiError(400, 1056, f"Bad Configuration: Validation failed: {reason}")


def validate_config(config: Any) -> None:
    """cloudflared's ingress rules, as the API checks them on PUT."""
    if not isinstance(config, dict):
        raise _bad_config("'config' must be an object")
    if "originRequest" in config and not isinstance(config["originRequest"], dict):
        raise _bad_config("'originRequest' must be an object")
    if "ingress" not in config:
        return
    rules = config["ingress"]
    if not isinstance(rules, list) or not rules:
        raise _bad_config("The config file doesn't have any ingress rules")
    for number, rule in enumerate(rules, start=1):
        _check_rule(number, rule)
        if _matches_all(rule) and number != len(rules):
            raise _bad_config(f"Rule #{number} matches all URLs but is not the last rule")
    if not _matches_all(rules[-1]):
        raise _bad_config(CATCH_ALL)


def _matches_all(rule: dict[str, Any]) -> bool:
    return rule.get("hostname") in (None, "", "*") and not rule.get("path")


def _check_rule(number: int, rule: Any) -> None:
    if not isinstance(rule, dict):
        raise _bad_config(f"Rule #{number} must be an object")
    service = rule.get("service")
    if not isinstance(service, str) or not service:
        raise _bad_config(f"Rule #{number} is missing the 'service' field")
    status = re.fullmatch(r"http_status:(\d{3})", service)
    if not (service.startswith(SERVICE_SCHEMES) or service in SERVICE_WORDS or status):
        raise _bad_config(f"Rule #{number} has an invalid service {service!r}")
    if status and not 100 <= int(status.group(1)) <= 599:
        raise _bad_config(f"Rule #{number} has an invalid HTTP status {status.group(1)}")
    hostname = rule.get("hostname")
    if hostname not in (None, ""):
        if not isinstance(hostname, str):
            raise _bad_config(f"Rule #{number}: hostname must be a string")
        if ":" in hostname:
            raise _bad_config("Hostname cannot contain a port")
        if "*" in hostname and hostname != "*" and (hostname.count("*") > 1 or not hostname.startswith("*.")):
            raise _bad_config(
                'Hostname patterns can have at most one wildcard character ("*") and it can only be used '
                'for subdomains, e.g. "*.example.com"'
            )
    path = rule.get("path")
    if path not in (None, ""):
        try:
            re.compile(str(path))
        except re.error as error:
            raise _bad_config(f"Rule #{number} has an invalid path regex: {error}") from None
    if "originRequest" in rule and not isinstance(rule["originRequest"], dict):
        raise _bad_config(f"Rule #{number}: originRequest must be an object")


def add_connection(state: State, tunnel_id: str, colo: str) -> dict[str, Any]:
    with state.lock:
        tunnel = state.tunnels[tunnel_id]
        connection_id, opened_at = new_uuid(), now_iso()
        connection: dict[str, Any] = {
            "id": connection_id,
            "uuid": connection_id,
            "client_id": new_uuid(),
            "client_version": "2025.1.0",
            "colo_name": colo,
            "is_pending_reconnect": False,
            "opened_at": opened_at,
            "origin_ip": "192.0.2.1",
        }
        tunnel.connections.append(connection)
        tunnel.conns_active_at = tunnel.conns_active_at or opened_at
        return dict(connection)


_T = "/accounts/{account_id}/cfd_tunnel"
ROUTES = [
    *collection_routes(_T, "tunnel_id", "tunnels", create=create, list_=list_, get=get, edit=edit, delete=delete),
    Route("GET", _T + "/{tunnel_id}/token", "tunnels.token", token),
    Route("GET", _T + "/{tunnel_id}/configurations", "tunnels.config.get", config_get),
    Route("PUT", _T + "/{tunnel_id}/configurations", "tunnels.config.put", config_put, mutates=True),
]
