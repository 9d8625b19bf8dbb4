"""One hostname, one holder, across front doors (issue 11, item 2): an annotated HTTPRoute in another namespace
asking for a hostname a protected ChuteGateway holds gets ``HostnameConflict`` naming the gateway, and the
gateway's CNAME, tunnel rule and Access application stay exactly as they were, resync after resync (before the
fix the route took the CNAME and the rule over with ``Ready=True`` and the two doors flipped it at every
resync). The same the other way round, and the ledger shows one holder per hostname."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from harness import gateways
from harness.two_doors import Both, both_doors


@pytest.fixture()
def both(kube: Any, cloudflare: Any) -> Iterator[Both]:
    with both_doors(kube, cloudflare) as world:
        yield world


def test_a_route_in_another_namespace_cannot_take_a_protected_gateways_hostname(both: Both) -> None:
    both.gw.ready_config()
    both.gw.service()
    both.gw.gateway("blog")
    both.gw.ready_gateway("blog")
    before = both.published("blog.example.com")
    assert before["apps"] and before["records"] and before["rules"]

    both.rt.token_secret()
    both.rt.tenant()
    both.rt.route("takeover", "blog.example.com", namespace="evil")
    refused = both.rt.wait_reason("takeover", "HostnameConflict", namespace="evil")
    assert "ChuteGateway" in refused["message"] and "team-a" in refused["message"]

    # Several resyncs of both doors later: nothing moved, the gateway is still Ready, one holder. (The resync runs
    # every second, so the operator is never quiet for 1.5 s: each round lasts its timeout, 3 s, and sees two or
    # three passes of each door.)
    for _ in range(3):
        both.rt.quiesce(quiet=1.5, timeout=3.0)
        assert both.published("blog.example.com") == before
    assert both.gw.condition(both.gw.get_gateway("blog"))["status"] == "True"
    assert both.claim_sources()["blog.example.com"] == f"ChuteGateway/{gateways.NS}/blog"
    [record] = before["records"]
    assert "src=ChuteGateway/team-a/blog" in record["comment"]


def test_a_gateway_cannot_take_a_hostname_a_route_holds(both: Both) -> None:
    both.rt.token_secret()
    both.rt.tenant()
    both.rt.route("site", "www.example.com", namespace="apps")
    both.rt.wait_ready("site")
    before = both.published("www.example.com")

    both.gw.ready_config()
    both.gw.service()
    both.gw.gateway("www")
    refused = both.gw.wait_reason("HostnameConflict", name="www")
    message = both.gw.condition(refused)["message"]
    assert "HTTPRoute" in message and "apps" in message
    both.rt.quiesce(quiet=1.2, timeout=6.0)
    assert both.published("www.example.com") == before
    assert not [t for t in both.gw.live_tunnels() if t["name"] == f"chute-{gateways.NS}-www"]
    assert both.claim_sources()["www.example.com"] == "HTTPRoute/apps/site"
    assert both.rt.ready("site")["status"] == "True"


def test_the_waiting_source_gets_the_hostname_once_the_holder_is_gone(both: Both) -> None:
    both.gw.ready_config()
    both.gw.service()
    both.gw.gateway("blog")
    both.gw.ready_gateway("blog")
    both.rt.token_secret()
    both.rt.tenant()
    both.rt.route("takeover", "blog.example.com", namespace="evil")
    both.rt.wait_reason("takeover", "HostnameConflict", namespace="evil")

    both.gw.custom.delete_namespaced_custom_object(gateways.GROUP, gateways.VERSION, gateways.NS, "chutegateways",
                                                   "blog")
    both.rt.wait_ready("takeover", namespace="evil", timeout=90.0)
    after = both.published("blog.example.com")
    [record] = after["records"]
    assert "src=HTTPRoute/evil/takeover" in record["comment"]
    assert both.claim_sources()["blog.example.com"] == "HTTPRoute/evil/takeover"
    assert not [a for a in after["apps"] if a["name"].startswith("chute-")]
