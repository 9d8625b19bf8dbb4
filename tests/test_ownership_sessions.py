"""Issue 11 for the session-Pod front door, end to end (the whole operator in a thread against both emulators):
rules are ours only by the proof of their hostname's record, never by their shape (item 6); one hostname, one
holder across doors (the installation's claims); adoption is the operator's permission (item 4); markers that
cannot fit refuse the start and long ones that fit are still proven ours (item 9); and the pass order, so a
crash never leaves a rule without the record that proves it ours.

Foreign objects are compared with the emulator's own snapshot: byte-identical before and after."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import kubernetes
import pytest
from kubernetes_asyncio import client as async_client
from kubernetes_asyncio import config as async_config

from chutes import cli
from chutes.claims import ClaimStore, ledger_namespace
from chutes.cloudflare_core import marker, marks, parse
from chutes.frontdoors.adoption import ADOPT_ANNOTATION
from chutes.frontdoors.sessions.config import SessionConfigError, load_config, require_marker_fits
from harness import sessions as h
from harness.retries import short_cloudflare_retries
from harness.sessions import api_fixture, fast_timing_fixture  # noqa: F401  (pytest fixtures)
from harness.waiting import wait_for

CATCH_ALL = {"service": "http_status:503"}
LONG_OWNER = "o" * 31  # the longest owner id with which a 22-character WATCH_NAMESPACE still fits
LONG_NAMESPACE = "sessions-of-team-alpha"  # 22 characters: Session/<it>/ takes the marker's whole room
TOO_LONG_OWNER = "o" * 32  # ... and with which it does not


# --- helpers --------------------------------------------------------------------------------------------


def zone_records(cloudflare: Any) -> list[dict[str, Any]]:
    return list(cloudflare.snapshot()["dns_records"][cloudflare.zone_id(h.ZONE)])


def records_named(cloudflare: Any, name: str) -> list[dict[str, Any]]:
    return [record for record in zone_records(cloudflare) if record["name"] == name]


def ingress(cloudflare: Any, tunnel: str) -> list[dict[str, Any]]:
    config = (cloudflare.snapshot()["tunnel_configs"].get(tunnel) or {}).get("config") or {}
    return list(config.get("ingress") or [])


def rule_hosts(cloudflare: Any, tunnel: str) -> set[str]:
    return {str(rule["hostname"]) for rule in ingress(cloudflare, tunnel) if rule.get("hostname")}


def foreign(cloudflare: Any, tunnel: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every record not marked as a session's, and every rule whose hostname holds no such record: as stored
    (the rules in their order)."""
    records = zone_records(cloudflare)
    ours = {r["name"] for r in records if (found := parse(r.get("comment"))) is not None and found.kind == "Session"}
    return ([r for r in records if r["name"] not in ours],
            [rule for rule in ingress(cloudflare, tunnel) if rule.get("hostname") not in ours])


def writes_mentioning(cloudflare: Any, text: str) -> list[str]:
    """Cloudflare writes whose path or body mention `text`."""
    return [f"{r.method} {r.path}" for r in cloudflare.requests
            if r.method != "GET" and text in r.path + json.dumps(r.body)]


def passes(cloudflare: Any, tunnel: str) -> int:
    """Session passes that reached the tunnel (one configuration GET each)."""
    return sum(1 for r in cloudflare.requests if r.op == "tunnels.config.get" and tunnel in r.path)


def wait_passes(cloudflare: Any, tunnel: str, count: int, timeout: float = 20.0) -> None:
    start = passes(cloudflare, tunnel)
    wait_for(f"{count} more passes", lambda: passes(cloudflare, tunnel) >= start + count, timeout=timeout)


def create_record(cloudflare: Any, name: str, content: str, comment: str, type_: str = "CNAME") -> None:
    with h.sdk(cloudflare) as sdk:
        sdk.dns.records.create(zone_id=cloudflare.zone_id(h.ZONE), name=name, type=type_,  # type: ignore[call-overload]
                               content=content, ttl=1, proxied=True, comment=comment)


def claim(kube: Any, environ: dict[str, str], hostname: str, source: str) -> None:
    """The installation's hostname claim of `source`, made as another door of the operator makes it."""
    async def acquire() -> None:
        configuration = async_client.Configuration()
        await async_config.load_kube_config(config_file=kube.kubeconfig, client_configuration=configuration)
        async with async_client.ApiClient(configuration=configuration) as api:
            store = ClaimStore(api, ledger_namespace(None, environ), "default")
            await store.acquire("hostname", hostname, source)

    asyncio.run(acquire())


def warnings_on(api: Any, pod: str, reason: str = "HostnameConflict", namespace: str = h.NAMESPACE) -> list[str]:
    return [e.message for e in h.events_for(api, pod, namespace) if (e.type, e.reason) == ("Warning", reason)]


def routes_of(api: Any, label: str, namespace: str = h.NAMESPACE) -> set[str]:
    """The IngressRoutes of the session whose hostname's first label is `label`."""
    listing: Any = kubernetes.client.CustomObjectsApi(api).list_namespaced_custom_object(
        "traefik.io", "v1alpha1", namespace, "ingressroutes")
    prefix = f"opencode-session-{label}-"
    return {item["metadata"]["name"] for item in listing["items"] if item["metadata"]["name"].startswith(prefix)}


# --- item 6: rules are ours by proof, never by shape ------------------------------------------------------


def test_another_doors_rule_at_a_session_shaped_hostname_survives_every_session_pass(
    cloudflare: Any, kube: Any, api: Any
) -> None:
    # The seed's ROUTE_SUFFIX is empty: the router UI `opencode.<domain>`, published by an HTTPRoute of the
    # same installation to the same router service in the same tunnel, has exactly a session hostname's shape.
    ui = f"opencode.{h.ZONE}"
    tunnel = h.create_tunnel(cloudflare, [{"hostname": ui, "service": h.ROUTER_URL}], CATCH_ALL)
    create_record(cloudflare, ui, f"{tunnel}.cfargotunnel.com", marker("default", f"HTTPRoute/{h.NAMESPACE}/ui"))
    before = foreign(cloudflare, tunnel)
    environ = h.session_env(cloudflare, tunnel, ROUTE_SUFFIX="")

    with h.operator(cloudflare, environ, resync_interval=0.3):
        h.create_pod(api, h.pod("kept", "aaaa00000001"))
        h.create_pod(api, h.pod("goes", "aaaa00000002"))
        h.create_pod(api, h.pod("wants-the-ui", "opencode"))  # a session asking for the UI's very hostname
        wait_for("the sessions' rules",
                 lambda: {f"aaaa00000001.{h.ZONE}", f"aaaa00000002.{h.ZONE}"} <= rule_hosts(cloudflare, tunnel))
        h.delete_pod(api, "goes")
        wait_for("a removal", lambda: f"aaaa00000002.{h.ZONE}" not in rule_hosts(cloudflare, tunnel))
        wait_passes(cloudflare, tunnel, 8)
        [refusal] = wait_for("the refusal", lambda: warnings_on(api, "wants-the-ui"))

    assert foreign(cloudflare, tunnel) == before  # the HTTPRoute's record and rule, byte-identical
    assert {"hostname": ui, "service": h.ROUTER_URL} in ingress(cloudflare, tunnel)
    assert f"HTTPRoute/{h.NAMESPACE}/ui" in refusal and "nothing is published" in refusal
    assert routes_of(api, "opencode") == set()


def test_a_hand_made_session_shaped_rule_without_a_record_survives(cloudflare: Any, kube: Any, api: Any) -> None:
    # Reached through a hand-made wildcard record: no record at its own name proves it anyone's.
    hand_made = {"hostname": h.hostname("abcd1234"), "service": h.ROUTER_URL}
    tunnel = h.create_tunnel(cloudflare, [hand_made, {"hostname": f"*.{h.ZONE}", "service": "http://wild:80"}],
                             CATCH_ALL)
    create_record(cloudflare, f"*.{h.ZONE}", f"{tunnel}.cfargotunnel.com", "hand-made wildcard")
    before = foreign(cloudflare, tunnel)

    with h.operator(cloudflare, h.session_env(cloudflare, tunnel), resync_interval=0.3):
        h.create_pod(api, h.pod("one", "aaaa00000001"))
        h.create_pod(api, h.pod("two", "aaaa00000002"))
        wait_for("published",
                 lambda: h.published(cloudflare, api, tunnel).sessions() == {"aaaa00000001", "aaaa00000002"})
        h.delete_pod(api, "two")
        wait_for("removed", lambda: h.published(cloudflare, api, tunnel).sessions() == {"aaaa00000001"})
        wait_passes(cloudflare, tunnel, 8)

    assert foreign(cloudflare, tunnel) == before  # the hand-made rule and the wildcard record, byte-identical


# --- one hostname, one holder across doors --------------------------------------------------------------


def test_a_session_whose_hostname_another_door_claims_is_refused_and_nothing_is_written(
    cloudflare: Any, kube: Any, api: Any
) -> None:
    tunnel = h.create_tunnel(cloudflare, catch_all=CATCH_ALL)
    environ = h.session_env(cloudflare, tunnel)
    taken = h.hostname("bbbb00000002")
    claim(kube, environ, taken, "ChuteGateway/team-a/blog")  # claimed; its record is not made yet

    with h.operator(cloudflare, environ):
        h.create_pod(api, h.pod("claimed", "bbbb00000002"))
        h.create_pod(api, h.pod("free", "aaaa00000001"))
        [message] = wait_for("the HostnameConflict Event", lambda: warnings_on(api, "claimed"))
        wait_for("the free one", lambda: h.published(cloudflare, api, tunnel).sessions() == {"aaaa00000001"})
        wait_passes(cloudflare, tunnel, 1)

    assert taken in message and "ChuteGateway/team-a/blog" in message and "nothing is published" in message
    assert writes_mentioning(cloudflare, taken) == []
    assert records_named(cloudflare, taken) == [] and taken not in rule_hosts(cloudflare, tunnel)
    assert routes_of(api, f"bbbb00000002{h.SUFFIX}") == set()


def test_a_session_keeps_its_published_hostname_when_another_door_claims_it_later(
    cloudflare: Any, kube: Any, api: Any
) -> None:
    tunnel = h.create_tunnel(cloudflare, catch_all=CATCH_ALL)
    environ = h.session_env(cloudflare, tunnel)
    with h.operator(cloudflare, environ, resync_interval=0.3):
        h.create_pod(api, h.pod("first", "aaaa00000001"))
        wait_for("published", lambda: h.published(cloudflare, api, tunnel).sessions() == {"aaaa00000001"})
        [record] = records_named(cloudflare, h.hostname("aaaa00000001"))
        claim(kube, environ, h.hostname("aaaa00000001"), "HTTPRoute/team-b/late")  # the intruder's claim
        wait_passes(cloudflare, tunnel, 5)
        assert h.published(cloudflare, api, tunnel).sessions() == {"aaaa00000001"}
        assert records_named(cloudflare, h.hostname("aaaa00000001")) == [record]
        assert warnings_on(api, "first") == []


# --- item 4: adoption is the operator's permission --------------------------------------------------------


def test_a_session_pods_adoption_request_alone_takes_nothing_over(cloudflare: Any, kube: Any, api: Any) -> None:
    tunnel = h.create_tunnel(cloudflare, catch_all=CATCH_ALL)
    h.create_foreign_record(cloudflare, h.hostname("aaaa11112222"), content="legacy.example.org", type_="CNAME")
    [hand_made] = records_named(cloudflare, h.hostname("aaaa11112222"))
    with h.operator(cloudflare, h.session_env(cloudflare, tunnel)):  # allow_adoption off
        asking = h.pod("asking", "aaaa11112222")
        asking["metadata"]["annotations"] = {ADOPT_ANNOTATION: "true"}
        h.create_pod(api, asking)
        [message] = wait_for("the HostnameConflict Event", lambda: warnings_on(api, "asking"))
    assert "adoption is not permitted" in message
    assert records_named(cloudflare, h.hostname("aaaa11112222")) == [hand_made]
    assert h.hostname("aaaa11112222") not in rule_hosts(cloudflare, tunnel)


# --- item 9: markers ----------------------------------------------------------------------------------------


def test_with_a_long_owner_id_and_namespace_that_fit_stale_session_records_are_removed(
    cloudflare: Any, kube: Any, api: Any
) -> None:
    kubernetes.client.CoreV1Api(api).create_namespace({"metadata": {"name": LONG_NAMESPACE}})
    tunnel = h.create_tunnel(cloudflare, catch_all=CATCH_ALL)
    environ = h.session_env(cloudflare, tunnel, WATCH_NAMESPACE=LONG_NAMESPACE)
    values = ("aaaa00000001", "aaaa00000002", "aaaa00000003")
    with h.operator(cloudflare, environ, owner_id=LONG_OWNER):
        for value in values:
            h.create_pod(api, h.pod(f"s-{value}", value), LONG_NAMESPACE)
        wait_for("published", lambda: all(records_named(cloudflare, h.hostname(v)) for v in values))
        wait_for("the rules", lambda: {h.hostname(v) for v in values} <= rule_hosts(cloudflare, tunnel))
        [record] = records_named(cloudflare, h.hostname(values[0]))
        found = parse(record["comment"])
        assert found is not None and "~" in found.source and found.namespace == LONG_NAMESPACE  # a hashed tail
        assert marks(record["comment"], LONG_OWNER, f"Session/{LONG_NAMESPACE}/{values[0]}")
        h.delete_pod(api, f"s-{values[0]}", LONG_NAMESPACE)  # seen going
        wait_for("removed while running", lambda: not records_named(cloudflare, h.hostname(values[0])))
    h.delete_pod(api, f"s-{values[1]}", LONG_NAMESPACE)  # while no operator watches
    with h.operator(cloudflare, environ, owner_id=LONG_OWNER):
        wait_for("the stale CNAME removed", lambda: not records_named(cloudflare, h.hostname(values[1])))
        assert records_named(cloudflare, h.hostname(values[2]))
    assert rule_hosts(cloudflare, tunnel) == {h.hostname(values[2])}


def test_chutes_run_refuses_a_watch_namespace_whose_marker_cannot_fit(
    monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setattr(cli, "configure_logging", lambda settings: None)
    environ = {"CF_API_TOKEN": "t", "CF_ZONE_ID": "0123456789abcdef0123456789abcdef",
               "CF_TUNNEL_ID": "6ff42ae2-765d-4adf-8112-31c55c1551ef", "DOMAIN": h.ZONE,
               "ROUTER_SERVICE_URL": h.ROUTER_URL, "WATCH_NAMESPACE": LONG_NAMESPACE}
    for name, value in environ.items():
        monkeypatch.setenv(name, value)

    code = cli.main(["run", "--sessions", "--no-chutes", "--no-httproutes", "--standalone",
                     "--owner-id", TOO_LONG_OWNER])

    error = capsys.readouterr().err
    assert code == 2
    assert TOO_LONG_OWNER in error and "WATCH_NAMESPACE" in error and LONG_NAMESPACE in error
    assert "use a shorter owner id" in error
    require_marker_fits(load_config(environ), LONG_OWNER)  # one character less fits
    with pytest.raises(SessionConfigError):
        require_marker_fits(load_config(environ), TOO_LONG_OWNER)


# --- pass order: a crash never leaves a rule without its record -------------------------------------------


def test_a_failed_rule_write_leaves_nothing_unprovable_and_the_next_pass_converges(
    cloudflare: Any, kube: Any, api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    short_cloudflare_retries(monkeypatch)  # the failing passes come one after another
    tunnel = h.create_tunnel(cloudflare, catch_all=CATCH_ALL)
    added, removed = h.hostname("aaaa00000001"), h.hostname("bbbb00000002")

    def put_failed() -> bool:
        return any(r.op == "tunnels.config.put" and r.status >= 500 for r in cloudflare.requests)

    with h.operator(cloudflare, h.session_env(cloudflare, tunnel)):
        h.create_pod(api, h.pod("removed", "bbbb00000002"))
        wait_for("published", lambda: h.published(cloudflare, api, tunnel).sessions() == {"bbbb00000002"})

        cloudflare.reset_log()
        cloudflare.faults.fail(op="tunnels.config.put", status=500)  # every rule write fails from now on
        h.create_pod(api, h.pod("added", "aaaa00000001"))
        h.delete_pod(api, "removed")
        wait_for("a failed rule write", put_failed)
        wait_for("the added record", lambda: records_named(cloudflare, added))
        failed = sum(1 for r in cloudflare.requests if r.op == "tunnels.config.put" and r.status >= 500)
        wait_for("two more failed passes", lambda: sum(
            1 for r in cloudflare.requests if r.op == "tunnels.config.put" and r.status >= 500) >= failed + 2)
        # The added session has its record and no rule yet; the removed one keeps the record proving its rule.
        assert added not in rule_hosts(cloudflare, tunnel)
        assert removed in rule_hosts(cloudflare, tunnel) and records_named(cloudflare, removed)

        cloudflare.faults.clear()
        state = wait_for("converged",
                         lambda: (s := h.published(cloudflare, api, tunnel)).records == s.rules == {added} and s)
        assert state.sessions() == {"aaaa00000001"} and state.duplicates == 0


def test_a_removal_cut_between_the_rule_and_the_record_is_finished_by_the_next_pass(
    cloudflare: Any, kube: Any, api: Any
) -> None:
    tunnel = h.create_tunnel(cloudflare, catch_all=CATCH_ALL)
    gone = h.hostname("bbbb00000002")
    with h.operator(cloudflare, h.session_env(cloudflare, tunnel)):
        h.create_pod(api, h.pod("gone", "bbbb00000002"))
        wait_for("published", lambda: h.published(cloudflare, api, tunnel).sessions() == {"bbbb00000002"})

        cloudflare.reset_log()
        cloudflare.faults.fail(op="dns.batch", status=500)  # the record's delete fails, after the rule went
        h.delete_pod(api, "gone")
        wait_for("the rule removed", lambda: gone not in rule_hosts(cloudflare, tunnel))
        wait_for("a failed record delete",
                 lambda: any(r.op == "dns.batch" and r.status >= 500 for r in cloudflare.requests))
        assert records_named(cloudflare, gone)

        cloudflare.faults.clear()
        wait_for("the record removed by the next pass", lambda: not records_named(cloudflare, gone))
        assert gone not in rule_hosts(cloudflare, tunnel)
