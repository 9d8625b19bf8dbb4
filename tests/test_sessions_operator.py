"""The session-Pod front door end to end: the whole operator (in a thread) against the Kubernetes and
Cloudflare emulators, configured with the seed's environment variables."""

from __future__ import annotations

import functools
import logging
import random
import time
import urllib.error
import urllib.request
from typing import Any

import kubernetes
import pytest
from prometheus_client import REGISTRY

from chutes.frontdoors.sessions import handlers
from chutes.frontdoors.sessions.scheduler import Timing
from chutes.observability.metrics import HOSTNAMES
from harness import sessions as h
from harness.processes import free_port
from harness.sessions import api_fixture, fast_timing_fixture  # noqa: F401  (pytest fixtures)
from harness.waiting import wait_for, wait_quiet

FOREIGN_RULES = [
    {"hostname": "foreign.example.net", "service": "http://foreign:80"},
    {"hostname": "*.example.net", "service": "http://wildcard:80"},
]
CATCH_ALL = {"service": "http_status:503"}


@pytest.fixture()
def tunnel(cloudflare: Any) -> str:
    return h.create_tunnel(cloudflare, FOREIGN_RULES, CATCH_ALL)


def session_routes(state: h.Published, session_hash: str) -> set[str]:
    label = f"{session_hash}{h.SUFFIX}"
    return {f"opencode-session-{label}-signin", f"opencode-session-{label}-app"} & state.routes


def exactly(state: h.Published, hashes: set[str]) -> bool:
    """Nothing but the sessions of `hashes` is published, each in full, and the foreign rules and the
    catch-all are where they were."""
    names = {h.hostname(x) for x in hashes}
    routes = {f"opencode-session-{x}{h.SUFFIX}-{kind}" for x in hashes for kind in ("signin", "app")}
    foreign_kept = [r for r in state.ingress if r not in FOREIGN_RULES][-1:] == [CATCH_ALL] and all(
        rule in state.ingress for rule in FOREIGN_RULES
    )
    return (state.records == names and state.rules == names and state.routes == routes
            and state.duplicates == 0 and foreign_kept)


def races(tunnel: str) -> float:
    """`chutes_tunnel_config_races_total` of the tunnel: our PUTs that found another writer had written."""
    return REGISTRY.get_sample_value("chutes_tunnel_config_races_total", {"tunnel": tunnel}) or 0.0


def wait_until_no_writes(cloudflare: Any, quiet: float, timeout: float = 20.0) -> None:
    """Until no Cloudflare write has happened for `quiet` seconds."""
    wait_quiet("the replicas' writes", lambda: sum(1 for r in cloudflare.requests
                                                  if r.op in ("dns.batch", "tunnels.config.put")), quiet, timeout, 0.1)


def test_a_session_pod_is_published_in_full_and_unpublished_when_it_goes(
    cloudflare: Any, kube: Any, api: Any, tunnel: str
) -> None:
    port = free_port()
    with h.operator(cloudflare, h.session_env(cloudflare, tunnel, port)):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
            assert (response.status, response.read()) == (200, b"ok")
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert missing.value.code == 404

        h.create_pod(api, h.pod("opencode-alice-main", "8b6cc2aa9a45"))
        wait_for("published", lambda: exactly(h.published(cloudflare, api, tunnel), {"8b6cc2aa9a45"}))

        zone = cloudflare.zone_id(h.ZONE)
        [record] = [r for r in cloudflare.snapshot()["dns_records"][zone] if r["name"] == h.hostname("8b6cc2aa9a45")]
        assert (record["type"], record["content"], record["proxied"], record["ttl"]) == (
            "CNAME", f"{tunnel}.cfargotunnel.com", True, 1
        )
        assert record["comment"] == "chutes-operator owner=default src=Session/ns1/8b6cc2aa9a45"
        ingress = h.published(cloudflare, api, tunnel).ingress
        assert ingress == (FOREIGN_RULES[0], {"hostname": h.hostname("8b6cc2aa9a45"), "service": h.ROUTER_URL},
                           FOREIGN_RULES[1], CATCH_ALL)  # before the wildcard that would shadow it
        app: Any = kubernetes.client.CustomObjectsApi(api).get_namespaced_custom_object(
            "traefik.io", "v1alpha1", "ns1", "ingressroutes", "opencode-session-8b6cc2aa9a45-oc-app")
        assert app["spec"]["routes"][0]["match"] == f"Host(`{h.hostname('8b6cc2aa9a45')}`)"
        assert app["spec"]["routes"][0]["middlewares"] == [{"name": "opencode-router-oauth2-chain", "namespace": "ns1"}]
        pod = kubernetes.client.CoreV1Api(api).read_namespaced_pod("opencode-alice-main", "ns1")
        assert pod.metadata is not None and not pod.metadata.finalizers  # a stuck operator never blocks a Pod
        wait_for("hostname metric", lambda: h.hostname("8b6cc2aa9a45") in HOSTNAMES.hostnames("sessions"))
        events = kubernetes.client.CoreV1Api(api).list_namespaced_event("ns1").items
        assert [(e.type, e.reason) for e in events if e.involved_object.name == "opencode-alice-main"] == [
            ("Normal", "Published")]

        h.delete_pod(api, "opencode-alice-main")
        wait_for("unpublished", lambda: exactly(h.published(cloudflare, api, tunnel), set()))


def test_unlabelled_and_unselected_pods_are_ignored(cloudflare: Any, kube: Any, api: Any, tunnel: str) -> None:
    with h.operator(cloudflare, h.session_env(cloudflare, tunnel)):
        h.create_pod(api, h.pod("no-hash", None))
        h.create_pod(api, h.pod("not-a-session", "aaaa11112222", labels={"app": "other"}))
        h.create_pod(api, h.pod("session", "bbbb33334444"))
        wait_for("published", lambda: exactly(h.published(cloudflare, api, tunnel), {"bbbb33334444"}))
        time.sleep(0.5)  # a fixed interval on purpose: nothing more may be published in it
        assert exactly(h.published(cloudflare, api, tunnel), {"bbbb33334444"})
        assert not h.events_for(api, "no-hash") and not h.events_for(api, "not-a-session")


def test_an_invalid_hash_gets_a_warning_event_and_nothing_is_published(
    cloudflare: Any, kube: Any, api: Any, tunnel: str
) -> None:
    with h.operator(cloudflare, h.session_env(cloudflare, tunnel)):
        h.create_pod(api, h.pod("upper", "ABCDEF123456"))
        h.create_pod(api, h.pod("too-long", "a" * 61))  # 61 + "-oc" = 64 characters: over the DNS label limit
        h.create_pod(api, h.pod("fine", "cccc55556666"))
        wait_for("published", lambda: exactly(h.published(cloudflare, api, tunnel), {"cccc55556666"}))
        for name, problem in (("upper", "lower-case letters and digits"), ("too-long", "over the DNS limit")):
            events = wait_for(f"an Event on {name}", functools.partial(h.events_for, api, name))
            assert [(e.type, e.reason) for e in events] == [("Warning", "InvalidSessionHash")]
            assert problem in events[0].message
        published = wait_for("the Published Event (posted once the pass has ended)",
                             functools.partial(h.events_for, api, "fine"))
        assert [(e.type, e.reason) for e in published] == [("Normal", "Published")]


def test_a_foreign_dns_record_blocks_only_its_session(cloudflare: Any, kube: Any, api: Any, tunnel: str) -> None:
    h.create_foreign_record(cloudflare, h.hostname("dddd77778888"))
    with h.operator(cloudflare, h.session_env(cloudflare, tunnel)):
        h.create_pod(api, h.pod("blocked", "dddd77778888"))
        h.create_pod(api, h.pod("free", "eeee99990000"))
        events = wait_for("an Event on the blocked Pod", lambda: h.events_for(api, "blocked"))
        assert [(e.type, e.reason) for e in events] == [("Warning", "HostnameConflict")]
        assert h.hostname("dddd77778888") in events[0].message
        wait_for("the free one", lambda: "eeee99990000" in h.published(cloudflare, api, tunnel).sessions())
        state = h.published(cloudflare, api, tunnel)
        assert state.sessions() == {"eeee99990000"}
        assert h.hostname("dddd77778888") not in state.rules and not session_routes(state, "dddd77778888")
        records = [r for r in cloudflare.snapshot()["dns_records"][cloudflare.zone_id(h.ZONE)]
                   if r["name"] == h.hostname("dddd77778888")]
        assert [(r["type"], r["content"], r["comment"]) for r in records] == [("A", "192.0.2.7", "someone else's")]


def test_a_foreign_rule_at_the_hostname_blocks_only_its_session(cloudflare: Any, kube: Any, api: Any) -> None:
    """Someone else's rule at a session's hostname, without a DNS record: the session made its record and then
    took the rule over (a record of its own proved it ours), routing the hostname to the router instead."""
    theirs = {"hostname": h.hostname("ffff11112222"), "service": "http://someone-else:80"}
    tunnel = h.create_tunnel(cloudflare, [theirs, *FOREIGN_RULES], CATCH_ALL)
    with h.operator(cloudflare, h.session_env(cloudflare, tunnel)):
        h.create_pod(api, h.pod("blocked", "ffff11112222"))
        h.create_pod(api, h.pod("free", "ffff33334444"))
        events = wait_for("an Event on the blocked Pod", lambda: h.events_for(api, "blocked"))
        assert [(e.type, e.reason) for e in events] == [("Warning", "HostnameConflict")]
        assert "someone-else" in events[0].message
        wait_for("the free one", lambda: "ffff33334444" in h.published(cloudflare, api, tunnel).sessions())
        state = h.published(cloudflare, api, tunnel)
        assert theirs in state.ingress and h.hostname("ffff11112222") not in state.records
        assert not session_routes(state, "ffff11112222")


def test_pods_changed_while_the_operator_was_down_are_reconciled_at_start(
    cloudflare: Any, kube: Any, api: Any, tunnel: str
) -> None:
    environ = h.session_env(cloudflare, tunnel)
    with h.operator(cloudflare, environ):
        for name, value in (("a", "aaaa00000001"), ("b", "aaaa00000002"), ("c", "aaaa00000003")):
            h.create_pod(api, h.pod(name, value))
        wait_for("published", lambda: exactly(h.published(cloudflare, api, tunnel),
                                   {"aaaa00000001", "aaaa00000002", "aaaa00000003"}))
    # Down: one Pod goes, two come.
    h.delete_pod(api, "a")
    h.create_pod(api, h.pod("d", "aaaa00000004"))
    h.create_pod(api, h.pod("e", "aaaa00000005"))
    assert h.hostname("aaaa00000001") in h.published(cloudflare, api, tunnel).records
    with h.operator(cloudflare, environ):
        wait_for("reconciled at start", lambda: exactly(h.published(cloudflare, api, tunnel),
                                   {"aaaa00000002", "aaaa00000003", "aaaa00000004", "aaaa00000005"}))


def test_two_operators_with_200_pods_created_and_deleted_in_random_order_converge_exactly(
    cloudflare: Any, kube: Any, api: Any, tunnel: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="chutes")
    rng = random.Random(4)
    hashes = [f"{rng.getrandbits(48):012x}" for _ in range(200)]
    deleted = set(rng.sample(hashes, 120))
    operations = [("create", x) for x in hashes]
    rng.shuffle(operations)
    for x in deleted:  # each deletion somewhere after its creation
        position = operations.index(("create", x)) + 1
        operations.insert(rng.randint(position, len(operations)), ("delete", x))

    first, second = (h.session_env(cloudflare, tunnel) for _ in range(2))
    with h.operator(cloudflare, first) as one, h.operator(cloudflare, second) as two:
        for action, x in operations:
            if action == "create":
                h.create_pod(api, h.pod(f"session-{x}", x))
            else:
                h.delete_pod(api, f"session-{x}")
        wanted = set(hashes) - deleted
        wait_for("convergence", lambda: exactly(h.published(cloudflare, api, tunnel), wanted), timeout=30)
        wait_until_no_writes(cloudflare, quiet=1.5)  # both replicas verified what they wrote last
        assert exactly(h.published(cloudflare, api, tunnel), wanted)
        assert one.alive and two.alive
    problems = [r.getMessage() for r in caplog.records if r.name.startswith("chutes") and r.levelno >= logging.WARNING]
    assert problems == []  # among them: no "another writer changed its configuration" race
    assert races(tunnel) == 0  # the replicas took turns on the tunnel (its Lease), never raced
    leases = kubernetes.client.CoordinationV1Api(api).list_namespaced_lease("default").items
    assert {(lease.metadata.annotations or {}).get("chutes.troubleshat.com/tunnel") for lease in leases} == {
        f"{cloudflare.account_id}/{tunnel}", f"{cloudflare.account_id}/{tunnel}/sessions/{h.NAMESPACE}"}


def test_a_rule_lost_to_another_writers_stale_put_is_restored_by_the_verification_pass(
    cloudflare: Any, kube: Any, api: Any, tunnel: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The verification pass comes 1.4-2.6 s after our write: the stale PUT below surely lands before it.
    monkeypatch.setattr(handlers, "DEFAULT_TIMING", Timing(quiet=0.1, max_delay=0.5, settle=2.0, jitter=0.3))
    stale = {"ingress": [*FOREIGN_RULES, CATCH_ALL]}  # what another process read before we wrote
    with h.operator(cloudflare, h.session_env(cloudflare, tunnel)):
        h.create_pod(api, h.pod("victim", "ffff00001111"))
        wait_for("the rule", lambda: h.hostname("ffff00001111") in h.published(cloudflare, api, tunnel).rules,
                 interval=0.01)
        with h.sdk(cloudflare) as other:  # ... and now writes back, without our rule
            other.zero_trust.tunnels.cloudflared.configurations.update(
                tunnel, account_id=cloudflare.account_id, config=stale)  # type: ignore[arg-type]
        assert h.hostname("ffff00001111") not in h.published(cloudflare, api, tunnel).rules
        wait_for("the rule restored long before the periodic resync",
                 lambda: exactly(h.published(cloudflare, api, tunnel), {"ffff00001111"}), timeout=8)


def test_drift_is_repaired_by_the_periodic_resync(cloudflare: Any, kube: Any, api: Any, tunnel: str) -> None:
    with h.operator(cloudflare, h.session_env(cloudflare, tunnel), resync_interval=1.0):
        h.create_pod(api, h.pod("drifter", "abab12121212"))
        wait_for("published", lambda: exactly(h.published(cloudflare, api, tunnel), {"abab12121212"}))
        zone = cloudflare.zone_id(h.ZONE)
        [record] = [r for r in cloudflare.snapshot()["dns_records"][zone] if r["name"] == h.hostname("abab12121212")]
        with h.sdk(cloudflare) as other:  # someone deletes our record; no Pod event follows
            other.dns.records.delete(record["id"], zone_id=zone)
        kubernetes.client.CustomObjectsApi(api).delete_namespaced_custom_object(
            "traefik.io", "v1alpha1", "ns1", "ingressroutes", "opencode-session-abab12121212-oc-app")
        wait_for("repaired at resync", lambda: exactly(h.published(cloudflare, api, tunnel), {"abab12121212"}),
                 timeout=5)


def test_an_unknown_annotation_key_on_a_session_pod_is_refused_and_changes_nothing_published(
    cloudflare: Any, kube: Any, api: Any, tunnel: str
) -> None:
    """A misspelt ``chutes.troubleshat.com/adopt`` is an InvalidSpec Warning naming the key: a new session is not
    published, and a published one stays as it is until the key is fixed."""
    core = kubernetes.client.CoreV1Api(api)
    message = ("unknown annotation chutes.troubleshat.com/adpot (did you mean chutes.troubleshat.com/adopt?): "
               "nothing is published for this Pod")
    with h.operator(cloudflare, h.session_env(cloudflare, tunnel)):
        typo = h.pod("typo", "aaaa11112222")
        typo["metadata"]["annotations"] = {"chutes.troubleshat.com/adpot": "true"}
        h.create_pod(api, typo)
        h.create_pod(api, h.pod("fine", "cccc55556666"))
        wait_for("published", lambda: exactly(h.published(cloudflare, api, tunnel), {"cccc55556666"}))
        events = wait_for("an Event on typo", functools.partial(h.events_for, api, "typo"))
        assert [(e.type, e.reason, e.message) for e in events] == [("Warning", "InvalidSpec", message)]

        core.patch_namespaced_pod("fine", h.NAMESPACE, {"metadata": {"annotations": {
            "chutes.troubleshat.com/adpot": "true"}}})
        wait_for("an InvalidSpec Event on fine",
                 lambda: ("Warning", "InvalidSpec") in {(e.type, e.reason) for e in h.events_for(api, "fine")})
        wait_until_no_writes(cloudflare, quiet=0.6)
        assert exactly(h.published(cloudflare, api, tunnel), {"cccc55556666"})  # kept as it was

        core.patch_namespaced_pod("typo", h.NAMESPACE, {"metadata": {"annotations": {
            "chutes.troubleshat.com/adpot": None}}})
        wait_for("typo published once fixed",
                 lambda: exactly(h.published(cloudflare, api, tunnel), {"aaaa11112222", "cccc55556666"}))
