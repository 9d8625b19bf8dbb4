"""`chutes plan`'s diff: a pure function over two Cloudflare sandbox snapshots (table-driven)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from chutes.sandbox.snapshot_diff import diff, diff_entries, render_text, summary, summary_line

ACCOUNT = "a" * 32
ZONE = "b" * 32
TUNNEL = "11111111-1111-1111-1111-111111111111"


def base() -> dict[str, Any]:
    return {
        "accounts": [{"id": ACCOUNT, "name": "Acme"}],
        "zones": [{"id": ZONE, "name": "example.com", "account_id": ACCOUNT, "plan": "free"}],
        "tunnels": {TUNNEL: {"id": TUNNEL, "account_id": ACCOUNT, "name": "t1", "config_src": "cloudflare",
                             "created_at": "2024-01-01T00:00:00Z", "deleted_at": None, "connections": [],
                             "tunnel_secret": "<redacted>"}},
        "tunnel_configs": {TUNNEL: {"version": 1, "created_at": "x", "config": {"ingress": [
            {"hostname": "a.example.com", "service": "http://a:80"}, {"service": "http_status:404"}]}}},
        "dns_records": {ZONE: [{"id": "r1", "name": "a.example.com", "type": "CNAME", "content": f"{TUNNEL}.x",
                                "proxied": True, "ttl": 1, "comment": "chutes-operator owner=default", "tags": [],
                                "created_on": "t0", "modified_on": "t0", "meta": {}, "proxiable": True,
                                "settings": {}}]},
        "access_apps": {"app1": {"id": "app1", "account_id": ACCOUNT, "name": "chute-a", "domain": "a.example.com",
                                 "aud": "f" * 64, "session_duration": "24h", "created_at": "t0", "updated_at": "t0",
                                 "policy_links": [{"id": "p1", "precedence": 1}]}},
        "access_policies": {"p1": {"id": "p1", "account_id": ACCOUNT, "app_id": "app1", "name": "allow",
                                   "decision": "allow", "include": [{"email": {"email": "alice@example.org"}}],
                                   "created_at": "t0", "updated_at": "t0"}},
        "identity_providers": {"i1": {"id": "i1", "account_id": ACCOUNT, "name": "PIN", "type": "onetimepin",
                                      "config": {"redirect_url": "https://acme/cb"}}},
        "service_tokens": {"s1": {"id": "s1", "account_id": ACCOUNT, "name": "tok", "client_id": "c.access",
                                  "client_secret": "<redacted>", "duration": "8760h", "expires_at": "t1"}},
    }


DELETE = object()


def edit(path: str, value: Any) -> Any:
    """A function that sets `path` (dotted, list indexes as numbers) in a copy of base()."""
    def apply(snap: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = snap
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if value is DELETE:
            del node[int(last) if isinstance(node, list) else last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return apply

CASES = [
    # (id, edit of `after`, expected [(action, object, name, changed fields)])
    ("nothing", edit("accounts.0.name", "Acme"), []),
    ("volatile fields only", edit("dns_records." + ZONE + ".0.modified_on", "t9"), []),
    ("dns content", edit("dns_records." + ZONE + ".0.content", "other.x"),
     [("update", "dns_record", "CNAME a.example.com", {"content"})]),
    ("dns delete", edit("dns_records." + ZONE + ".0", DELETE), [("delete", "dns_record", "CNAME a.example.com", None)]),
    ("dns create", lambda snap: snap["dns_records"][ZONE].append(
        {"id": "r2", "name": "nas.example.com", "type": "A", "content": "192.0.2.1", "proxied": False, "ttl": 120}),
     [("create", "dns_record", "A nas.example.com", None)]),
    ("tunnel soft-deleted", edit("tunnels." + TUNNEL + ".deleted_at", "t9"),
     [("delete", "tunnel", "t1", None), ("delete", "tunnel_rule", "a.example.com", None),
      ("delete", "tunnel_rule", "*", None)]),
    ("rule service", edit("tunnel_configs." + TUNNEL + ".config.ingress.0.service", "http://b:80"),
     [("update", "tunnel_rule", "a.example.com", {"service"})]),
    ("rule hostname", edit("tunnel_configs." + TUNNEL + ".config.ingress.0.hostname", "b.example.com"),
     [("create", "tunnel_rule", "b.example.com", None), ("delete", "tunnel_rule", "a.example.com", None)]),
    ("app domain", edit("access_apps.app1.domain", "b.example.com"),
     [("update", "access_app", "chute-a (b.example.com)", {"domain"})]),
    ("policy include", edit("access_policies.p1.include", [{"email": {"email": "bob@example.org"}}]),
     [("update", "access_policy", "allow (app chute-a)", {"include"})]),
    ("idp delete", edit("identity_providers.i1", DELETE), [("delete", "identity_provider", "PIN (onetimepin)", None)]),
    ("service token duration", edit("service_tokens.s1.duration", "forever"),
     [("update", "service_token", "tok", {"duration"})]),
]


@pytest.mark.parametrize(("change", "expected"), [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_diff(change: Any, expected: list[tuple[str, str, str, set[str] | None]]) -> None:
    before, after = base(), base()
    change(after)
    found = [(c.action, c.obj.kind, c.obj.name, set(c.changed) or None) for c in diff(before, after)]
    assert sorted(found, key=str) == sorted(expected, key=str)


def test_everything_is_created_from_nothing_and_deleted_to_nothing() -> None:
    empty = {"accounts": base()["accounts"], "zones": base()["zones"]}
    created = diff(empty, base())
    assert summary(created) == {"create": 8, "update": 0, "delete": 0}
    assert {c.obj.kind for c in created} == {"tunnel", "tunnel_rule", "dns_record", "access_app", "access_policy",
                                             "identity_provider", "service_token"}
    assert summary_line(diff(base(), empty)) == "Plan: 0 to create, 0 to update, 8 to delete."


def test_changes_are_grouped_by_account_tunnel_and_zone() -> None:
    empty = {"accounts": base()["accounts"], "zones": base()["zones"]}
    lines = render_text(diff(empty, base()))
    assert lines[0] == f"account Acme ({ACCOUNT})"
    assert f"  tunnel t1 ({TUNNEL})" in lines and "zone example.com" in lines
    assert lines.index("zone example.com") > lines.index(f"  tunnel t1 ({TUNNEL})")
    assert "    + ingress rule a.example.com  → http://a:80" in lines
    assert "  + DNS record CNAME a.example.com  → 11111111-1111-1111-1111-111111111111.x  proxied=True ttl=1" in lines
    assert "  + Access app chute-a (a.example.com)  policies=['allow']" in lines


def test_an_update_lists_each_changed_field_before_and_after() -> None:
    after = base()
    after["access_policies"]["p1"]["include"] = [{"email": {"email": "bob@example.org"}}]
    lines = render_text(diff(base(), after))
    assert lines[-2].strip() == "~ Access policy allow (app chute-a)  allow include=[{\"email\": {\"email\": " \
                                "\"bob@example.org\"}}]"
    assert lines[-1].strip() == ('include: [{"email": {"email": "alice@example.org"}}] → '
                                 '[{"email": {"email": "bob@example.org"}}]')


def test_secret_looking_fields_are_redacted() -> None:
    after = copy.deepcopy(base())
    after["identity_providers"]["i2"] = {"id": "i2", "account_id": ACCOUNT, "name": "oidc", "type": "oidc",
                                         "config": {"client_id": "cid", "client_secret": "hunter2",
                                                    "token_url": "https://idp/token"}}
    after["service_tokens"]["s1"]["client_secret"] = "shh-secret-value"
    changes = diff(base(), after)
    dumped = str([c.as_dict() for c in changes]) + "\n".join(render_text(changes))
    assert "hunter2" not in dumped and "shh-secret-value" not in dumped
    (idp,) = [c for c in changes if c.obj.kind == "identity_provider"]
    assert idp.obj.fields["config"]["client_secret"] == "<redacted>" and idp.obj.fields["config"]["client_id"] == "cid"


def entry(entry_id: str, hostname: str, ip: str = "192.0.2.10", version: str = "1", **more: Any) -> dict[str, Any]:
    return {"id": entry_id, "hostname": hostname, "ip_address": ip, "comment": f"k8s:home/{hostname}",
            "aliases": [], "tags": [], "version": version, **more}


def test_router_hosts_entries_are_matched_by_id_and_compared_on_what_the_server_holds() -> None:
    before = [entry("A", "nas.lan"), entry("B", "old.lan"), entry("C", "same.lan"), entry("D", "moved.lan")]
    after = [entry("A", "nas.lan", aliases=["files.lan"], version="2"), entry("C", "same.lan", version="7"),
             entry("D", "renamed.lan", ip="192.0.2.11", version="3"), entry("E", "new.lan")]
    changes = diff_entries(before, after)
    found = [(c.action, c.obj.name, c.changed) for c in changes]
    assert found == [  # sorted by hostname; a version that moved alone is no change
        ("update", "nas.lan", {"aliases": ([], ["files.lan"])}),
        ("create", "new.lan", {}),
        ("delete", "old.lan", {}),
        ("update", "renamed.lan", {"comment": ("k8s:home/moved.lan", "k8s:home/renamed.lan"),
                                   "hostname": ("moved.lan", "renamed.lan"), "ip": ("192.0.2.10", "192.0.2.11")}),
    ]
    assert changes[1].as_dict() == {"action": "create", "object": "host_entry", "name": "new.lan",
                                    "scope": ["router-hosts server"], "id": "E",
                                    "fields": {"hostname": "new.lan", "ip": "192.0.2.10", "aliases": [], "tags": [],
                                               "comment": "k8s:home/new.lan"}}
    lines = render_text(changes)
    assert lines[0] == "router-hosts server"
    assert lines[1] == ('  ~ host entry nas.lan  → 192.0.2.10  aliases=["files.lan"] tags=[] '
                        'comment="k8s:home/nas.lan"')
    assert lines[2] == '      aliases: [] → ["files.lan"]'
    assert summary_line(changes, "Router-hosts plan") == "Router-hosts plan: 1 to create, 2 to update, 1 to delete."
