"""merge_ingress: the co-owned tunnel configuration rules (DESIGN invariant 2), pure. Every rule here but
the foreign ones (FOREIGN_A, FOREIGN_B) is the test's own: its edits' `owns` says so."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import pytest

from chutes.cloudflare_core import IngressRule, InvalidInput, RemoveRule, SetRule, merge_ingress
from chutes.cloudflare_core.tunnel_config import must_precede

FOREIGN_A = {"hostname": "a.example.com", "service": "http://a:80"}
FOREIGN_B = {"hostname": "b.example.com", "path": "^/x", "service": "http://b:80"}
CUSTOM_CATCH_ALL = {"service": "http_status:503"}


def config(*rules: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"ingress": [copy.deepcopy(rule) for rule in rules], **top}


def ours(rule: Mapping[str, Any]) -> bool:
    return rule.get("hostname") not in {FOREIGN_A["hostname"], FOREIGN_B["hostname"]}


def hostnames(document: dict[str, Any]) -> list[tuple[str | None, str | None]]:
    return [(rule.get("hostname"), rule.get("path")) for rule in document["ingress"]]


def rule(hostname: str, path: str | None = None, service: str = "http://svc:80", **origin: Any) -> SetRule:
    return SetRule(IngressRule(hostname, service, path, origin or None), ours)


def test_adds_rule_before_custom_catch_all_and_keeps_everything_else() -> None:
    current = config(FOREIGN_A, FOREIGN_B, CUSTOM_CATCH_ALL, originRequest={"connectTimeout": 10})
    current["warp-routing"] = {"enabled": False}
    before = copy.deepcopy(current)

    merged = merge_ingress(current, [rule("new.example.com")])

    assert merged["ingress"] == [
        FOREIGN_A,
        FOREIGN_B,
        {"hostname": "new.example.com", "service": "http://svc:80"},
        CUSTOM_CATCH_ALL,
    ]
    assert merged["originRequest"] == {"connectTimeout": 10}
    assert merged["warp-routing"] == {"enabled": False}
    assert current == before  # the input is not modified


def test_adds_default_catch_all_only_when_there_is_none() -> None:
    merged = merge_ingress(config(FOREIGN_A), [rule("new.example.com")])
    assert merged["ingress"][-1] == {"service": "http_status:404"}
    assert hostnames(merged) == [("a.example.com", None), ("new.example.com", None), (None, None)]

    merged_empty = merge_ingress(None, [rule("new.example.com")])
    assert merged_empty == {
        "ingress": [{"hostname": "new.example.com", "service": "http://svc:80"}, {"service": "http_status:404"}]
    }


def test_replaces_only_the_rule_with_the_same_hostname_and_path_in_place() -> None:
    ours_root = {"hostname": "app.example.com", "service": "http://old:80"}
    ours_api = {"hostname": "app.example.com", "path": "^/api", "service": "http://api:80"}
    current = config(FOREIGN_A, ours_root, ours_api, FOREIGN_B, CUSTOM_CATCH_ALL)

    merged = merge_ingress(current, [rule("App.Example.com", service="http://new:80")])

    assert merged["ingress"] == [
        FOREIGN_A,
        {"hostname": "app.example.com", "service": "http://new:80"},
        ours_api,
        FOREIGN_B,
        CUSTOM_CATCH_ALL,
    ]


def test_remove_drops_only_the_matching_key() -> None:
    ours_root = {"hostname": "app.example.com", "service": "http://app:80"}
    ours_api = {"hostname": "app.example.com", "path": "^/api", "service": "http://api:80"}
    current = config(FOREIGN_A, ours_root, ours_api, CUSTOM_CATCH_ALL)

    merged = merge_ingress(current, [RemoveRule("app.example.com", "^/api", ours)])

    assert merged["ingress"] == [FOREIGN_A, ours_root, CUSTOM_CATCH_ALL]


def test_no_change_returns_the_same_document() -> None:
    current = config(FOREIGN_A, {"hostname": "app.example.com", "service": "http://svc:80"}, CUSTOM_CATCH_ALL)
    assert merge_ingress(current, [rule("app.example.com")]) == current
    assert merge_ingress(current, [RemoveRule("gone.example.com", None, ours)]) == current
    assert merge_ingress(None, [RemoveRule("gone.example.com", None, ours)]) == {}


def test_empty_origin_request_added_by_the_api_is_not_a_difference() -> None:
    current = config({"hostname": "app.example.com", "service": "http://svc:80", "originRequest": {}})
    assert merge_ingress(current, [rule("app.example.com")]) == current


def test_origin_request_is_written_in_camel_case() -> None:
    merged = merge_ingress(None, [rule("app.example.com", no_tls_verify=True, http_host_header="app")])
    assert merged["ingress"][0]["originRequest"] == {"noTLSVerify": True, "httpHostHeader": "app"}


def test_exact_hostname_goes_before_a_wildcard_that_would_shadow_it() -> None:
    wildcard = {"hostname": "*.example.com", "service": "http://wild:80"}
    merged = merge_ingress(config(FOREIGN_B, wildcard, CUSTOM_CATCH_ALL), [rule("app.example.com")])
    assert hostnames(merged) == [
        ("b.example.com", "^/x"),
        ("app.example.com", None),
        ("*.example.com", None),
        (None, None),
    ]


def test_wildcard_of_another_domain_does_not_move_a_rule() -> None:
    wildcard = {"hostname": "*.example.org", "service": "http://wild:80"}
    merged = merge_ingress(config(wildcard), [rule("app.example.com")])
    assert hostnames(merged)[:2] == [("*.example.org", None), ("app.example.com", None)]


def test_longer_path_goes_before_shorter_and_before_none() -> None:
    root = {"hostname": "app.example.com", "service": "http://root:80"}
    short = {"hostname": "app.example.com", "path": "^/a", "service": "http://a:80"}
    current = config(short, root)

    merged = merge_ingress(current, [rule("app.example.com", "^/a/long"), rule("app.example.com", "^/b")])

    assert hostnames(merged) == [
        ("app.example.com", "^/a/long"),
        ("app.example.com", "^/a"),
        ("app.example.com", "^/b"),
        ("app.example.com", None),
        (None, None),
    ]


def test_edits_apply_in_order_last_one_wins() -> None:
    merged = merge_ingress(
        None,
        [rule("x.example.com", service="http://one:80"), RemoveRule("x.example.com", None, ours),
         rule("y.example.com")],
    )
    assert hostnames(merged) == [("y.example.com", None), (None, None)]


@pytest.mark.parametrize(
    ("new", "existing", "expected"),
    [
        ({"hostname": "a.example.com"}, {"hostname": "*.example.com"}, True),
        ({"hostname": "a.b.example.com"}, {"hostname": "*.example.com"}, True),
        ({"hostname": "*.example.com"}, {"hostname": "a.example.com"}, False),
        ({"hostname": "*.b.example.com"}, {"hostname": "*.example.com"}, True),
        ({"hostname": "a.example.com"}, {"path": "^/x"}, True),
        ({"hostname": "a.example.com", "path": "^/x"}, {"hostname": "a.example.com"}, True),
        ({"hostname": "a.example.com"}, {"hostname": "a.example.com", "path": "^/x"}, False),
        ({"hostname": "a.example.com", "path": "^/x"}, {"hostname": "b.example.com"}, False),
    ],
)
def test_must_precede(new: dict[str, str], existing: dict[str, str], expected: bool) -> None:
    assert must_precede(new, existing) is expected


@pytest.mark.parametrize(
    ("hostname", "service"),
    [("bad host.example.com", "http://x:80"), ("a.example.com", "ftp://x"), ("a.example.com", "")],
)
def test_invalid_rules_are_refused_before_any_call(hostname: str, service: str) -> None:
    with pytest.raises(InvalidInput):
        IngressRule(hostname, service)


def test_set_defaults_sets_the_catch_all_and_the_tunnel_wide_origin_settings_and_keeps_the_rules() -> None:
    from chutes.cloudflare_core import SetDefaults

    before = config({"hostname": "a.example.com", "service": "http://a:80"}, {"service": "http_status:404"},
                    **{"warp-routing": {"enabled": True}})
    after = merge_ingress(before, [SetDefaults("http://fallback:80", {"noTLSVerify": True})])
    assert after["ingress"] == [{"hostname": "a.example.com", "service": "http://a:80"},
                                {"service": "http://fallback:80"}]
    assert after["originRequest"] == {"noTLSVerify": True} and after["warp-routing"] == {"enabled": True}
    assert merge_ingress(after, [SetDefaults("http://fallback:80", {"noTLSVerify": True})]) == after  # steady
    reset = merge_ingress(after, [SetDefaults("http_status:404", {})])
    assert reset["ingress"][-1] == {"service": "http_status:404"} and "originRequest" not in reset


def test_set_defaults_without_origin_settings_sets_the_catch_all_only() -> None:
    from chutes.cloudflare_core import SetDefaults

    shared = config({"hostname": "a.example.com", "service": "http://a:80"}, {"service": "http://theirs:80"},
                    originRequest={"connectTimeout": 5})
    after = merge_ingress(shared, [SetDefaults("http_status:503", None)])
    assert after["ingress"][-1] == {"service": "http_status:503"} and after["originRequest"] == {"connectTimeout": 5}
    assert merge_ingress(after, [SetDefaults("http_status:503", None)]) == after  # steady: nothing to write
