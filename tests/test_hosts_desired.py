"""What a HostMapping or a Traefik route wants in the router-hosts server, read from its body (pure): hostnames
from every Host()/HostSNI() form, validation as the server's, upstream's comments and tags, the host-ids
annotation byte for byte, the ignore label."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chutes import conditions as c
from chutes.frontdoors.hosts import desired as d
from chutes.hosts_core.models import HostSpec

IP = "192.168.1.2"


def route(*matches: Any, kind: str = "IngressRoute", name: str = "web", namespace: str = "apps",
          **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "traefik.io/v1alpha1", "kind": kind,
            "metadata": {"name": name, "namespace": namespace, **meta},
            "spec": {"routes": [{"match": m} for m in matches]}}


def mapping(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "router-hosts.fzymgc.house/v1alpha1", "kind": "HostMapping",
            "metadata": {"name": "nas", "namespace": "home", "generation": 1},
            "spec": {"hostname": "nas.lan", "ip": "192.168.1.10", **spec}}


@pytest.mark.parametrize(("matches", "names"), [
    (["Host(`a.lan`)"], ["a.lan"]),
    (["Host(`a.lan`) || Host(`b.lan`)"], ["a.lan", "b.lan"]),
    (["Host(`a.lan`, `b.lan`)"], ["a.lan", "b.lan"]),  # the multi-argument form upstream misses
    (["Host(`a.lan`,`b.lan`) && PathPrefix(`/x`)"], ["a.lan", "b.lan"]),
    (["HostSNI(`db.lan`)"], ["db.lan"]),
    (["HostSNI(`*`)"], []),  # any TCP connection: no name
    (["Host(` a.lan `)", "Host(`A.lan`)", "Host(`a.lan`)"], ["a.lan"]),  # trimmed, de-duplicated ignoring case
    (["HostRegexp(`^.+\\.lan$`)"], []),
    (["PathPrefix(`/`)"], []),
    (["Host(`a.lan`)", "HostSNI(`b.lan`)"], ["a.lan", "b.lan"]),
])
def test_hostnames_are_read_from_every_host_form(matches: list[str], names: list[str]) -> None:
    found, invalid, malformed = d.hostnames_from_routes([{"match": m} for m in matches])
    assert (found, invalid, malformed) == (names, [], None)


def test_an_invalid_hostname_is_skipped_and_named() -> None:
    found, invalid, malformed = d.hostnames_from_routes([{"match": "Host(`bad_name.lan`) || Host(`ok.lan`)"}])
    assert found == ["ok.lan"] and malformed is None
    assert len(invalid) == 1 and "bad_name.lan" in invalid[0]


@pytest.mark.parametrize("routes", ["Host(`a`)", [1], [{"match": 5}]])
def test_malformed_routes_are_a_problem_not_a_crash(routes: Any) -> None:
    found, _, malformed = d.hostnames_from_routes(routes)
    assert found == [] and malformed


def test_no_routes_and_no_match_want_nothing() -> None:
    assert d.hostnames_from_routes(None) == ([], [], None)
    assert d.hostnames_from_routes([{"kind": "Rule"}]) == ([], [], None)


def test_routes_register_at_the_ingress_ip_with_upstreams_comment_and_tags() -> None:
    wants = d.wants_of_routes([route("Host(`a.lan`)")], "apps", "web", IP)
    assert wants.specs == {"a.lan": HostSpec(IP, "a.lan", "k8s-ingress:apps/web", (), ("kubernetes", "traefik",
                                                                                           "ingress"))}
    assert not wants.problems and not wants.block


def test_an_ingressroute_and_an_ingressroutetcp_of_one_name_want_the_union() -> None:
    wants = d.wants_of_routes([route("Host(`a.lan`)"), route("HostSNI(`b.lan`)", "HostSNI(`a.lan`)",
                                                              kind="IngressRouteTCP")], "apps", "web", IP)
    assert sorted(wants.specs) == ["a.lan", "b.lan"]


def test_routes_without_an_ingress_ip_register_nothing_and_say_why() -> None:
    wants = d.wants_of_routes([route("Host(`a.lan`)")], "apps", "web", "")
    assert wants.block and not wants.specs and wants.problems[0][0] == c.INGRESS_IP_MISSING
    gone = d.wants_of_routes([route("PathPrefix(`/`)")], "apps", "web", "")
    assert not gone.block and not gone.problems  # nothing wanted: what exists may go


def test_ignored_and_deleting_routes_want_nothing() -> None:
    ignored = route("Host(`a.lan`)", labels={d.IGNORE_LABEL: "true"})
    deleting = route("Host(`b.lan`)", kind="IngressRouteTCP", deletionTimestamp="2024-01-01T00:00:00Z")
    assert d.wants_of_routes([ignored, deleting], "apps", "web", IP).specs == {}
    assert d.wants_of_routes([route("Host(`a.lan`)", labels={d.IGNORE_LABEL: "false"})], "apps", "web",
                             IP).specs


def test_a_corrupt_annotation_is_reported_and_gives_no_hint() -> None:
    body = route("Host(`a.lan`)", annotations={d.HOST_IDS_ANNOTATION: "{not json"})
    wants = d.wants_of_routes([body], "apps", "web", IP)
    assert wants.hints == {} and not wants.block and list(wants.specs) == ["a.lan"]
    assert [reason for reason, _ in wants.problems] == [c.INVALID_ANNOTATION]


@pytest.mark.parametrize("value", ['["a"]', '{"a.lan": 5}', "null", "7"])
def test_an_annotation_that_is_not_a_map_of_strings_is_corrupt(value: str) -> None:
    assert d.parse_host_ids(value)[1] is not None


def test_the_annotation_is_byte_compatible_with_upstream() -> None:
    ids = {"b.lan": "01HZZZZZZZZZZZZZZZZZZZZZZB", "a.lan": "01HZZZZZZZZZZZZZZZZZZZZZZA"}
    rendered = d.render_host_ids(ids)
    assert rendered == '{"a.lan":"01HZZZZZZZZZZZZZZZZZZZZZZA","b.lan":"01HZZZZZZZZZZZZZZZZZZZZZZB"}'
    assert rendered == json.dumps(ids, sort_keys=True, separators=(",", ":"))
    assert d.parse_host_ids(rendered) == (ids, None)
    assert d.render_host_ids({}) is None  # the annotation is removed when empty
    assert d.parse_host_ids("") == ({}, None)


def test_a_hostmapping_wants_its_entry_with_its_comment() -> None:
    wants = d.wants_of_mapping(mapping(aliases=["files.lan"], tags=["nas"]))
    assert wants.specs == {"nas.lan": HostSpec("192.168.1.10", "nas.lan", "k8s:home/nas", ("files.lan",), ("nas",))}


@pytest.mark.parametrize(("spec", "words"), [
    ({"ip": "192.168.01.10"}, "invalid IP address"),
    ({"hostname": "nas_1.lan"}, "invalid label"),
    ({"aliases": ["NAS.lan"]}, "matches canonical hostname"),
    ({"aliases": ["a.lan", "A.lan"]}, "duplicate alias"),
    ({"aliases": [f"a{i}.lan" for i in range(51)]}, "too many aliases"),
    ({"aliases": "a.lan"}, "spec.aliases must be a list"),
])
def test_a_hostmapping_the_server_would_refuse_blocks_with_the_servers_words(spec: dict[str, Any],
                                                                             words: str) -> None:
    wants = d.wants_of_mapping(mapping(**spec))
    assert wants.block and not wants.specs
    assert wants.problems[0][0] == c.INVALID_SPEC and words in wants.problems[0][1]


def test_a_hostmapping_hint_is_its_status_host_id() -> None:
    body = mapping()
    body["status"] = {"hostId": "01HZZZZZZZZZZZZZZZZZZZZZZA"}
    assert d.wants_of_mapping(body).hints == {"nas.lan": "01HZZZZZZZZZZZZZZZZZZZZZZA"}
    body["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    assert d.wants_of_mapping(body).specs == {}


@pytest.mark.parametrize(("comment", "source"), [
    ("k8s:home/nas", d.Source("HostMapping", "home", "nas")),
    ("k8s-ingress:apps/web", d.Source("routes", "apps", "web")),
    ("k8s-service:apps/web", None),
    ("k8s:home", None),
    ("k8s:home/a/b", None),
    ("hand made", None),
    (None, None),
])
def test_a_comment_names_its_source(comment: str | None, source: d.Source | None) -> None:
    assert d.source_of_comment(comment) == source


def test_an_entry_of_a_route_is_proven_by_its_comment_and_tags() -> None:
    source = d.Source("routes", "apps", "web")
    assert source.owns("k8s-ingress:apps/web", ["kubernetes", "traefik", "ingress"])
    assert not source.owns("k8s-ingress:apps/web", ["kubernetes"])  # as upstream HEAD: not adopted
    assert not source.owns("k8s-ingress:apps/web2", ["traefik", "ingress"])
    assert d.Source("HostMapping", "home", "nas").owns("k8s:home/nas", [])
