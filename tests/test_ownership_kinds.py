"""The kinds of Cloudflare objects the operator uses but never owns (issue 11: "the same checks for every kind"):
the account's one-time-PIN identity provider and reusable Access policies are found and used, never changed nor
deleted — not when a gateway and a route using them publish, not when they are deleted, not by a sweep."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from harness import gateways
from harness.two_doors import Both, both_doors
from harness.waiting import wait_for


@pytest.fixture()
def both(kube: Any, cloudflare: Any) -> Iterator[Both]:
    with both_doors(kube, cloudflare, resync=None) as world:  # started by the test, once the objects exist
        yield world


def used_only(state: dict[str, Any]) -> dict[str, Any]:
    """The identity providers and reusable policies, without what Cloudflare counts for them (app_count)."""
    policies = {pid: {k: v for k, v in p.items() if k != "app_count"}
                for pid, p in state["access_policies"].items() if p.get("app_id") is None}
    return copy.deepcopy({"idps": state["identity_providers"], "policies": policies})


def test_the_identity_provider_and_reusable_policies_are_used_and_never_changed_nor_deleted(both: Both) -> None:
    made = both.rt.sdk.zero_trust.identity_providers.create(account_id=both.rt.account, name="Company PIN",
                                                           type="onetimepin", config={})
    team = both.rt.reusable_policy("Team")
    before = used_only(both.cf.snapshot())
    assert made.id in before["idps"] and team in before["policies"]

    both.start(resync=1.0)
    both.gw.ready_config()
    assert both.gw.get_config()["status"]["otpIdentityProviderId"] == made.id  # used as it is
    both.gw.service()
    both.gw.gateway("blog")
    both.gw.ready_gateway("blog")
    both.rt.token_secret()
    both.rt.tenant()
    both.rt.route("web", "web.example.com", **{"access.enabled": "true", "access.existingPolicyNames": "Team"})
    both.rt.wait_ready("web")
    [app] = both.rt.apps("web.example.com")
    assert team in [link["id"] for link in app["policy_links"]]
    both.rt.quiesce(quiet=1.5, timeout=6.0)  # a few resyncs
    assert used_only(both.cf.snapshot()) == before

    both.rt.delete_route("web")
    both.gw.custom.delete_namespaced_custom_object(gateways.GROUP, gateways.VERSION, gateways.NS, "chutegateways",
                                                   "blog")
    wait_for("the route's app gone", lambda: not both.rt.apps("web.example.com"))
    wait_for("the gateway's app gone", lambda: not both.rt.apps("blog.example.com"), timeout=60.0)
    # The ChuteConfig is deleted once the gateway is gone: while the gateway still holds it, the config's cleanup
    # waits for it (woken when it goes, or re-checked a minute later: tests/test_gateways_blocked_deletion.py).
    gateways_left = both.gw.custom.list_namespaced_custom_object
    wait_for("the gateway gone", lambda: not gateways_left(gateways.GROUP, gateways.VERSION, gateways.NS,
                                                           "chutegateways")["items"], timeout=90.0)  # its tunnel
    # goes after its connectors, retried (a CI run saw the gateway still there 30 s after its app went)
    both.gw.custom.delete_cluster_custom_object(gateways.GROUP, gateways.VERSION, "chuteconfigs", "default")
    configs = both.gw.custom.list_cluster_custom_object
    wait_for("the ChuteConfig gone", lambda: not configs(gateways.GROUP, gateways.VERSION, "chuteconfigs")["items"])
    assert used_only(both.cf.snapshot()) == before
