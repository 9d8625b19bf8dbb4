"""Adoption is the operator's permission, not the tenant's: a source's request (annotation, spec.adopt) is
honoured only with the installation's ``allow_adoption`` or a hostname rule saying ``adopt: true``."""

from __future__ import annotations

import pytest

from chutes.authorization import HostnameRules
from chutes.frontdoors.adoption import NOT_PERMITTED, permitted

RULES = HostnameRules.from_data({"rules": [
    {"namespaces": ["platform"], "hostnames": ["www.example.com"], "adopt": True},
    {"namespaces": ["*"], "hostnames": ["*.{namespace}.example.com"]},
]})


@pytest.mark.parametrize(("asked", "namespace", "hostname", "rules", "allow_all", "honoured"), [
    (False, "platform", "www.example.com", RULES, True, False),  # nobody asked: never
    (True, "platform", "www.example.com", RULES, False, True),  # a rule allows it
    (True, "evil", "www.example.com", RULES, False, False),  # not that namespace's rule
    (True, "evil", "shop.evil.example.com", RULES, False, False),  # may publish, may not adopt
    (True, "evil", "shop.example.com", HostnameRules.allow_all(), False, False),  # the chart's default
    (True, "evil", "shop.example.com", None, False, False),  # no rules at all
    (True, "evil", "shop.example.com", HostnameRules.allow_all(), True, True),  # the installation allows it
    (True, "evil", "shop.example.com", None, True, True),
])
def test_a_request_is_honoured_only_with_the_operators_permission(
        asked: bool, namespace: str, hostname: str, rules: HostnameRules | None, allow_all: bool,
        honoured: bool) -> None:
    assert permitted(asked, namespace, hostname, rules, allow_all) is honoured


def test_the_refusal_names_the_settings_that_would_permit_it() -> None:
    assert "not permitted by the operator's settings" in NOT_PERMITTED
    assert "allowAdoption" in NOT_PERMITTED and "adopt: true" in NOT_PERMITTED
