"""The hostname rules (namespace -> hostname patterns): matching, globs, ``{namespace}``, malformed files, and
the runtime reading them at start."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from chutes.authorization import HostnameRules, HostnameRulesError
from chutes.runtime import load_hostname_rules
from chutes.settings import SettingsError, load_settings

TEAMS = HostnameRules.from_data({"rules": [
    {"namespaces": ["team-a", "team-*"], "hostnames": ["*.{namespace}.example.com", "app.example.com"]},
    {"namespaces": ["platform"], "hostnames": ["*"]},
    {"namespaces": ["*"], "hostnames": ["status.example.com"]},
]})


def test_without_rules_every_namespace_may_publish_anything_but_a_wildcard() -> None:
    rules = HostnameRules.allow_all()
    assert not rules.configured
    assert rules.allows("anything", "whatever.example.org")
    assert not rules.allows("anything", "*.example.org")
    assert rules.explain("evil", "*.Example.org.") == (
        "namespace evil may not publish the wildcard hostname *.example.org: a wildcard covers names other sources "
        "may hold, so wildcards need an explicit hostname rule (a '*' or '*.domain' pattern covering it) (operator "
        "hostname rules: none are configured)")


WILDCARDS = HostnameRules.from_data({"rules": [
    {"namespaces": ["edge"], "hostnames": ["*.example.com"]},
    {"namespaces": ["team-*"], "hostnames": ["*.{namespace}.example.com", "app.example.com"]},
    {"namespaces": ["platform"], "hostnames": ["*"], "adopt": True},
    {"namespaces": ["*"], "hostnames": ["status.example.com"]},
]})


@pytest.mark.parametrize(("namespace", "hostname", "allowed"), [
    ("edge", "*.example.com", True),  # a *.domain pattern covering it
    ("edge", "*.a.example.com", True),  # every name it covers is under *.example.com
    ("edge", "*.example.org", False),
    ("team-a", "*.team-a.example.com", True),
    ("team-a", "*.example.com", False),  # covers more than *.team-a.example.com
    ("team-a", "*.team-b.example.com", False),
    ("team-a", "*.app.example.com", False),  # an exact pattern never allows a wildcard under it
    ("platform", "*.anything.example.org", True),  # a lone "*"
    ("default", "*.status.example.com", False),
    ("edge", "*.*.example.com", False),  # only the whole first label may be "*"
    ("edge", "a.*.example.com", False),
    ("edge", "a*.example.com", False),
    ("platform", "*", False),
    ("platform", "app*.example.org", False),
])
def test_a_wildcard_hostname_needs_a_rule_that_allows_it_explicitly(namespace: str, hostname: str,
                                                                     allowed: bool) -> None:
    assert WILDCARDS.allows(namespace, hostname) is allowed
    assert WILDCARDS.may_adopt(namespace, hostname) is (allowed and namespace == "platform")


def test_explain_says_a_wildcard_needs_an_explicit_rule() -> None:
    assert WILDCARDS.explain("team-a", "*.example.com") == (
        "namespace team-a may not publish the wildcard hostname *.example.com: a wildcard covers names other "
        "sources may hold, so wildcards need an explicit hostname rule (a '*' or '*.domain' pattern covering it) "
        "(operator hostname rules: it may publish *.team-a.example.com, app.example.com, status.example.com)")
    assert WILDCARDS.explain("nobody", "*.example.com").endswith("(operator hostname rules: it may publish "
                                                                 "status.example.com)")
    assert "no rule allows it any hostname" in HostnameRules.from_data({"rules": []}).explain("a", "*.example.com")


@pytest.mark.parametrize(("namespace", "hostname"), [
    ("team-a", "blog.team-a.example.com"),
    ("team-a", "a.b.team-a.example.com"),  # one or more labels under the suffix
    ("team-a", "app.example.com"),
    ("team-b", "x.team-b.example.com"),  # the glob team-* and {namespace} = team-b
    ("team-a", "Blog.Team-A.Example.COM."),  # case and a trailing dot do not matter
    ("platform", "anything.example.org"),
    ("default", "status.example.com"),  # "*" = every namespace
])
def test_allowed(namespace: str, hostname: str) -> None:
    assert TEAMS.allows(namespace, hostname)


@pytest.mark.parametrize(("namespace", "hostname"), [
    ("team-a", "team-a.example.com"),  # *.x.y does not match x.y itself
    ("team-a", "blog.team-b.example.com"),  # another team's subdomain
    ("team-a", "blog.team-a.example.com.evil.org"),
    ("team-a", "xteam-a.example.com"),  # a suffix match must be on a label boundary
    ("team-a", "app.example.org"),
    ("default", "app.example.com"),
    ("teamc", "app.example.com"),  # team-* needs the dash
    ("team-a", ""),
])
def test_refused(namespace: str, hostname: str) -> None:
    assert not TEAMS.allows(namespace, hostname)


def test_explain_names_the_namespace_the_hostname_and_the_patterns_it_may_use() -> None:
    message = TEAMS.explain("team-a", "Blog.Other.example.com")
    assert message == ("namespace team-a may not publish blog.other.example.com (operator hostname rules: it may "
                       "publish *.team-a.example.com, app.example.com, status.example.com)")
    lonely = HostnameRules.from_data({"rules": [{"namespaces": ["team-a"], "hostnames": ["a.example.com"]}]})
    assert "no rule allows it any hostname" in lonely.explain("team-b", "a.example.com")


def test_an_empty_rule_list_refuses_everything() -> None:
    rules = HostnameRules.from_data({"rules": []})
    assert rules.configured
    assert not rules.allows("team-a", "a.example.com")


def test_load_reads_a_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - namespaces: [team-a]\n    hostnames: ['*.{namespace}.example.com']\n")
    rules = HostnameRules.load(path)
    assert rules.allows("team-a", "x.team-a.example.com")
    assert not rules.allows("team-b", "x.team-b.example.com")


@pytest.mark.parametrize(("data", "complaint"), [
    (None, "expected a mapping with a 'rules' list, got nothing"),
    ([], "expected a mapping with a 'rules' list, got list"),
    ({"rule": []}, "unknown key(s) rule"),
    ({"rules": {"namespaces": ["a"]}}, "'rules' must be a list, got dict"),
    ({"rules": ["team-a"]}, "rules[0] must be a mapping"),
    ({"rules": [{"namespaces": ["a"]}]}, "rules[0].hostnames is required"),
    ({"rules": [{"hostnames": ["a.example.com"]}]}, "rules[0].namespaces is required"),
    ({"rules": [{"namespaces": "a", "hostnames": ["a.example.com"]}]},
     "rules[0].namespaces must be a non-empty list of strings, got str"),
    ({"rules": [{"namespaces": [], "hostnames": ["a.example.com"]}]}, "rules[0].namespaces must be a non-empty"),
    ({"rules": [{"namespaces": ["a", 3], "hostnames": ["a.example.com"]}]}, "rules[0].namespaces[1] must be"),
    ({"rules": [{"namespaces": ["Team A"], "hostnames": ["a.example.com"]}]}, "rules[0].namespaces[0] 'Team A'"),
    ({"rules": [{"namespaces": ["a"], "hostnames": ["a.example.com"], "ports": [80]}]}, "unknown key(s) ports"),
    ({"rules": [{"namespaces": ["a"], "hostnames": ["a.example.com"], "adopt": "yes"}]},
     "rules[0].adopt must be true or false, got 'yes'"),
    ({"rules": [{"namespaces": ["a"], "hostnames": ["a.example.com"], "adopts": True}]}, "unknown key(s) adopts"),
    ({"rules": [{"namespaces": ["a"], "hostnames": ["app.*.example.com"]}]},
     "rules[0].hostnames[0] 'app.*.example.com': '*' may only stand alone or as the whole first label"),
    ({"rules": [{"namespaces": ["a"], "hostnames": ["app*.example.com"]}]}, "'*' may only stand alone"),
    ({"rules": [{"namespaces": ["a"], "hostnames": ["*."]}]}, "'*.' must be followed by a domain"),
    ({"rules": [{"namespaces": ["a"], "hostnames": ["{name}.example.com"]}]}, "the only placeholder is {namespace}"),
    ({"rules": [{"namespaces": ["a"], "hostnames": ["localhost"]}]}, "expected a DNS name with a domain"),
    ({"rules": [{"namespaces": ["a"], "hostnames": ["a..example.com"]}]}, "label '' is not a DNS label"),
    ({"rules": [{"namespaces": ["a"], "hostnames": ["a b.example.com"]}]}, "label 'a b' is not a DNS label"),
], ids=lambda value: value if isinstance(value, str) else "")
def test_malformed_rules_are_refused_naming_what_is_wrong(data: Any, complaint: str) -> None:
    with pytest.raises(HostnameRulesError) as raised:
        HostnameRules.from_data(data)
    assert complaint in str(raised.value)
    assert isinstance(raised.value, ValueError)


def test_a_malformed_or_missing_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(HostnameRulesError, match=f"^{re.escape(str(missing))}: cannot read the hostname rules"):
        HostnameRules.load(missing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("rules:\n  - namespaces: [a\n")
    with pytest.raises(HostnameRulesError, match=f"^{re.escape(str(broken))}: the hostname rules are not valid YAML"):
        HostnameRules.load(broken)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("rules:\n  - namespaces: [a]\n")
    with pytest.raises(HostnameRulesError, match=rf"^{re.escape(str(wrong))}: rules\[0\]\.hostnames is required"):
        HostnameRules.load(wrong)


def test_the_runtime_loads_the_configured_file_and_refuses_a_bad_one_as_a_setting(tmp_path: Path) -> None:
    assert not load_hostname_rules(load_settings({})).configured
    good = tmp_path / "rules.yaml"
    good.write_text("rules: [{namespaces: [a], hostnames: [a.example.com]}]\n")
    rules = load_hostname_rules(load_settings({"CHUTES_HOSTNAME_RULES": str(good)}))
    assert rules.configured and rules.allows("a", "a.example.com") and not rules.allows("b", "a.example.com")
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules: nope\n")
    complaint = f"CHUTES_HOSTNAME_RULES (--hostname-rules): {bad}: 'rules' must be a list"
    with pytest.raises(SettingsError, match=re.escape(complaint)):
        load_hostname_rules(load_settings({}, hostname_rules=str(bad)))


ADOPTING = HostnameRules.from_data({"rules": [
    {"namespaces": ["team-*"], "hostnames": ["*.{namespace}.example.com"]},
    {"namespaces": ["platform"], "hostnames": ["www.example.com", "*.legacy.example.com"], "adopt": True},
    {"namespaces": ["team-a"], "hostnames": ["shop.example.com"], "adopt": False},
]})


@pytest.mark.parametrize(("namespace", "hostname", "may"), [
    ("platform", "www.example.com", True),
    ("platform", "WWW.Example.com.", True),
    ("platform", "a.b.legacy.example.com", True),
    ("platform", "legacy.example.com", False),  # *.x.y does not match x.y
    ("platform", "app.example.com", False),  # no rule allows it at all
    ("team-a", "www.example.com", False),  # the adopting rule is platform's
    ("team-a", "x.team-a.example.com", False),  # allowed to publish, not to adopt
    ("team-a", "shop.example.com", False),  # adopt: false
    ("team-a", "", False),
])
def test_only_a_rule_saying_adopt_lets_a_namespace_adopt(namespace: str, hostname: str, may: bool) -> None:
    assert ADOPTING.may_adopt(namespace, hostname) is may


def test_adopt_defaults_to_false_and_no_rules_never_allow_adoption() -> None:
    assert [rule.adopt for rule in TEAMS.rules] == [False, False, False]
    assert not HostnameRules.allow_all().may_adopt("anything", "www.example.com")
    assert not TEAMS.may_adopt("platform", "anything.example.org")  # publishing is not adopting
    assert ADOPTING.allows("platform", "www.example.com")  # an adopting rule also allows publishing
