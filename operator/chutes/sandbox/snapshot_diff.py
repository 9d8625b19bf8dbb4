"""What changed in Cloudflare, or in a router-hosts server, between two sandbox snapshots, per object: the plan
of ``chutes plan``.

Pure functions over :meth:`CloudflareSandbox.snapshot` dictionaries. Objects are matched by their
Cloudflare id (tunnel ingress rules, which have none, by tunnel, hostname and path); a deleted tunnel
(``deleted_at``) counts as absent. Timestamps, versions and other fields Cloudflare sets by itself are
not compared, so a write that changed nothing is no change. Secret-looking fields are redacted.

:func:`diff_entries` does the same over two :meth:`RouterHostsServer.snapshot` lists: entries matched by id,
compared on hostname, ip, aliases, tags and comment (the version is the server's own).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Action = Literal["create", "update", "delete"]
SYMBOL: dict[str, str] = {"create": "+", "update": "~", "delete": "-"}
# Print order inside a scope.
OBJECTS = ("identity_provider", "tunnel", "tunnel_rule", "access_app", "access_policy", "service_token", "dns_record",
           "host_entry")
LABELS = {"identity_provider": "identity provider", "tunnel": "tunnel", "tunnel_rule": "ingress rule",
          "access_app": "Access app", "access_policy": "Access policy", "service_token": "service token",
          "dns_record": "DNS record", "host_entry": "host entry"}
ROUTER_HOSTS_SCOPE = "router-hosts server"
VOLATILE = frozenset({
    "id", "aud", "account_id", "app_id", "created_at", "updated_at", "created_on", "modified_on", "comment_modified_on",
    "tags_modified_on", "expires_at", "last_seen_at", "connections", "deleted_at", "meta", "proxiable", "version",
    "policy_links", "app_count", "reusable", "tunnel_secret", "client_secret",
})
SECRET_WORDS = ("secret", "token", "password", "private_key")
REDACTED = "<redacted>"


@dataclass(frozen=True)
class Obj:
    """One Cloudflare object as the plan shows it."""

    kind: str  # one of OBJECTS
    name: str
    scope: tuple[str, ...]  # ("account <name> (<id>)",), (..., "tunnel <name>") or ("zone <name>",)
    fields: dict[str, Any]
    id: str | None = None


@dataclass(frozen=True)
class Change:
    action: Action
    obj: Obj
    changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # update: field -> (before, after)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.action, "object": self.obj.kind, "name": self.obj.name,
                               "scope": list(self.obj.scope), "id": self.obj.id}
        if self.action == "update":
            out["changes"] = {k: {"before": b, "after": a} for k, (b, a) in self.changed.items()}
        else:
            out["fields"] = self.obj.fields
        return out


def redact(value: Any, key: str = "") -> Any:
    """Secret-looking keys (``client_secret``, ``token``...) keep their key, never their value."""
    lowered = key.lower()
    if any(word in lowered for word in SECRET_WORDS) and lowered not in ("token_id",) and value not in (None, ""):
        return REDACTED
    if isinstance(value, Mapping):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def _fields(raw: Mapping[str, Any], drop: Iterable[str] = ()) -> dict[str, Any]:
    skip = VOLATILE | set(drop)
    return {k: redact(v, k) for k, v in sorted(raw.items()) if k not in skip}


def _account_scope(snap: Mapping[str, Any], account_id: str | None) -> str:
    names = {a["id"]: a.get("name") for a in snap.get("accounts") or ()}
    name = names.get(account_id) if account_id else None
    if account_id is None:
        return "account ?"
    return f"account {name} ({account_id})" if name and name != account_id else f"account {account_id}"


def objects(snap: Mapping[str, Any]) -> dict[tuple[str, ...], Obj]:
    """Every object of a snapshot, keyed by (kind, id) or, for ingress rules, (kind, tunnel id, hostname, path)."""
    found: dict[tuple[str, ...], Obj] = {}
    tunnels = {t["id"]: t for t in (snap.get("tunnels") or {}).values() if not t.get("deleted_at")}
    scope: tuple[str, ...]
    key: tuple[str, ...]
    for tunnel in tunnels.values():
        scope = (_account_scope(snap, tunnel.get("account_id")),)
        found[("tunnel", tunnel["id"])] = Obj("tunnel", tunnel["name"], scope, _fields(tunnel), tunnel["id"])
    for tunnel_id, config in (snap.get("tunnel_configs") or {}).items():
        tunnel = tunnels.get(tunnel_id)
        if tunnel is None:
            continue
        scope = (_account_scope(snap, tunnel.get("account_id")), f"tunnel {tunnel['name']} ({tunnel_id})")
        for position, rule in enumerate(((config or {}).get("config") or {}).get("ingress") or ()):
            hostname, path = rule.get("hostname"), rule.get("path")
            name = (hostname or "*") + (path or "")
            key = ("tunnel_rule", tunnel_id, hostname or "", path or "")
            if key in found:  # a duplicate rule (never ours): keep both apart
                key = (*key, str(position))
            found[key] = Obj("tunnel_rule", name, scope, _fields(rule), None)
    zones = {z["id"]: z for z in snap.get("zones") or ()}
    for zone_id, records in (snap.get("dns_records") or {}).items():
        zone_name = (zones.get(zone_id) or {}).get("name", zone_id)
        for record in records:
            name = f"{record['type']} {record['name']}"
            found[("dns_record", record["id"])] = Obj("dns_record", name, (f"zone {zone_name}",), _fields(record),
                                                     record["id"])
    policies = snap.get("access_policies") or {}
    apps = snap.get("access_apps") or {}
    for app in apps.values():
        fields = _fields(app)
        links = sorted(app.get("policy_links") or (), key=lambda link: link.get("precedence", 0))
        fields["policies"] = [(policies.get(link["id"]) or {}).get("name", link["id"]) for link in links]
        scope = (_account_scope(snap, app.get("account_id")),)
        found[("access_app", app["id"])] = Obj("access_app", f"{app['name']} ({app.get('domain')})", scope, fields,
                                               app["id"])
    for policy in policies.values():
        scope = (_account_scope(snap, policy.get("account_id")),)
        app = apps.get(policy.get("app_id") or "")
        name = f"{policy['name']} (app {app['name']})" if app else f"{policy['name']} (reusable)"
        found[("access_policy", policy["id"])] = Obj("access_policy", name, scope, _fields(policy), policy["id"])
    for idp in (snap.get("identity_providers") or {}).values():
        scope = (_account_scope(snap, idp.get("account_id")),)
        found[("identity_provider", idp["id"])] = Obj("identity_provider", f"{idp['name']} ({idp.get('type')})",
                                                      scope, _fields(idp), idp["id"])
    for token in (snap.get("service_tokens") or {}).values():
        scope = (_account_scope(snap, token.get("account_id")),)
        found[("service_token", token["id"])] = Obj("service_token", token["name"], scope, _fields(token), token["id"])
    return found


def entry_objects(entries: Iterable[Mapping[str, Any]]) -> dict[tuple[str, ...], Obj]:
    """Every entry of a router-hosts snapshot, keyed by ("host_entry", id)."""
    found: dict[tuple[str, ...], Obj] = {}
    for entry in entries:
        fields = {"hostname": entry["hostname"], "ip": entry["ip_address"], "aliases": list(entry.get("aliases") or ()),
                  "tags": list(entry.get("tags") or ()), "comment": entry.get("comment")}
        found[("host_entry", entry["id"])] = Obj("host_entry", entry["hostname"], (ROUTER_HOSTS_SCOPE,), fields,
                                                 entry["id"])
    return found


def _order(change: Change) -> tuple[Any, ...]:
    scope = change.obj.scope
    return (scope[:1], len(scope), scope, OBJECTS.index(change.obj.kind), change.obj.name, change.action)


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[Change]:
    """The changes that turn snapshot ``before`` into ``after``, grouped by scope and sorted."""
    return _changes(objects(before), objects(after))


def diff_entries(before: Iterable[Mapping[str, Any]], after: Iterable[Mapping[str, Any]]) -> list[Change]:
    """The changes that turn router-hosts snapshot ``before`` into ``after``, sorted by hostname."""
    return _changes(entry_objects(before), entry_objects(after))


def _changes(old: Mapping[tuple[str, ...], Obj], new: Mapping[tuple[str, ...], Obj]) -> list[Change]:
    changes: list[Change] = []
    for key, obj in new.items():
        if key not in old:
            changes.append(Change("create", obj))
            continue
        previous = old[key]
        changed = {k: (previous.fields.get(k), obj.fields.get(k))
                   for k in sorted(set(previous.fields) | set(obj.fields))
                   if previous.fields.get(k) != obj.fields.get(k)}
        if changed:
            changes.append(Change("update", obj, changed))
    changes.extend(Change("delete", obj) for key, obj in old.items() if key not in new)
    return sorted(changes, key=_order)


def summary(changes: Iterable[Change]) -> dict[str, int]:
    counts = {"create": 0, "update": 0, "delete": 0}
    for change in changes:
        counts[change.action] += 1
    return counts


def summary_line(changes: Iterable[Change], title: str = "Plan") -> str:
    counts = summary(changes)
    return f"{title}: {counts['create']} to create, {counts['update']} to update, {counts['delete']} to delete."


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(", ", ": "))
    return text if len(text) <= 120 else text[:117] + "..."


def describe(obj: Obj) -> str:
    """A one-line summary of what the object does."""
    f = obj.fields
    if obj.kind == "dns_record":
        return f"→ {f.get('content')}  proxied={f.get('proxied')} ttl={f.get('ttl')}"
    if obj.kind == "tunnel_rule":
        return f"→ {f.get('service')}"
    if obj.kind == "access_app":
        return f"policies={f.get('policies')}"
    if obj.kind == "access_policy":
        return f"{f.get('decision')} include={_short(f.get('include'))}"
    if obj.kind == "host_entry":
        return (f"→ {f.get('ip')}  aliases={_short(f.get('aliases'))} tags={_short(f.get('tags'))} "
                f"comment={_short(f.get('comment'))}")
    return ""


def render_text(changes: list[Change]) -> list[str]:
    """Lines of the plan: a header per scope, one line per change, one more per changed field."""
    lines: list[str] = []
    current: tuple[str, ...] = ()
    for change in changes:
        scope = change.obj.scope
        for depth, label in enumerate(scope):
            if current[: depth + 1] != scope[: depth + 1]:
                lines.append("  " * depth + label)
        current = scope
        indent = "  " * len(scope)
        detail = describe(change.obj)
        lines.append(f"{indent}{SYMBOL[change.action]} {LABELS[change.obj.kind]} {change.obj.name}"
                     + (f"  {detail}" if detail else ""))
        for name, (before, after) in change.changed.items():
            lines.append(f"{indent}    {name}: {_short(before)} → {_short(after)}")
    return lines
