"""What session Pods should publish (pure): names, specs, ownership, the IngressRoute changes, the pass
schedule and what the watch's events change."""

from __future__ import annotations

import random
from typing import Any

import pytest

from chutes.authorization import HostnameRules
from chutes.cloudflare_core import DnsRecord, marker
from chutes.frontdoors.sessions import desired as d
from chutes.frontdoors.sessions.runner import SessionLoop
from chutes.frontdoors.sessions.scheduler import PassScheduler, Timing
from harness.session_inputs import ROUTER, TIMING, TUNNEL, config, pod, session

# --- names and specs ----------------------------------------------------------------------------


def test_names_follow_the_seed() -> None:
    s = session()
    assert (s.first_label, s.hostname) == ("8b6cc2aa9a45-oc", "8b6cc2aa9a45-oc.no-panic.org")
    assert d.route_names(s) == ("opencode-session-8b6cc2aa9a45-oc-signin", "opencode-session-8b6cc2aa9a45-oc-app")
    plain = session(cfg=config(ROUTE_SUFFIX=""))
    assert plain.hostname == "8b6cc2aa9a45.no-panic.org"
    assert d.route_name(plain, "app") == "opencode-session-8b6cc2aa9a45-app"


def test_dns_record_and_tunnel_rule() -> None:
    record = d.dns_record(config(), session())
    assert (record.name, record.type, record.content, record.proxied, record.effective_ttl) == (
        "8b6cc2aa9a45-oc.no-panic.org", "CNAME", f"{TUNNEL}.cfargotunnel.com", True, 1
    )
    assert record.source == "Session/opencode-router/8b6cc2aa9a45"  # the same on every replica
    assert d.tunnel_rule(config(), session()).to_wire() == {"hostname": "8b6cc2aa9a45-oc.no-panic.org",
                                                             "service": ROUTER}


def test_ingress_routes_are_the_seeds() -> None:
    signin, app = d.ingress_routes(config(INGRESSROUTE_NAMESPACE="edge"), session())
    labels = {"app.kubernetes.io/managed-by": "opencode-cloudflare-operator"}
    assert signin == {
        "apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute",
        "metadata": {"name": "opencode-session-8b6cc2aa9a45-oc-signin", "namespace": "edge", "labels": labels},
        "spec": {"entryPoints": ["web"], "routes": [{
            "match": "Host(`8b6cc2aa9a45-oc.no-panic.org`) && PathPrefix(`/oauth2/`)", "kind": "Rule",
            "services": [{"name": "oauth2-proxy-users", "namespace": "oauth2-proxy", "port": 80}],
        }]},
    }
    assert app == {
        "apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute",
        "metadata": {"name": "opencode-session-8b6cc2aa9a45-oc-app", "namespace": "edge", "labels": labels},
        "spec": {"entryPoints": ["web"], "routes": [{
            "match": "Host(`8b6cc2aa9a45-oc.no-panic.org`)", "kind": "Rule",
            "middlewares": [{"name": "opencode-router-oauth2-chain", "namespace": "edge"}],
            "services": [{"name": "opencode-router", "namespace": "edge", "port": 80}],
            "priority": 1,
        }]},
    }


# --- Pods -> sessions ---------------------------------------------------------------------------


def test_the_hash_comes_from_the_label_not_the_pod_name() -> None:
    sessions, refused = d.sessions_from_pods(config(), [pod("opencode-alice-repo-main", "0a1b2c3d4e5f")])
    assert list(sessions) == ["0a1b2c3d4e5f"] and not refused
    custom = config(SESSION_HASH_LABEL="example.com/h")
    sessions, _ = d.sessions_from_pods(custom, [pod("x", None, labels={"app.kubernetes.io/managed-by":
                                                                          "opencode-router", "example.com/h": "ab"})])
    assert list(sessions) == ["ab"]


def test_pods_without_the_label_outside_the_namespace_or_selector_are_ignored() -> None:
    pods = [pod("unlabelled", None), pod("elsewhere", namespace="other"), pod("stranger", labels={"app": "x"})]
    assert d.sessions_from_pods(config(), pods) == ({}, [])


@pytest.mark.parametrize(
    ("value", "problem"),
    [("8B6CC2AA9A45", "lower-case"), ("8b6c-2aa9", "lower-case"), ("a b", "lower-case"), ("x" * 61, "over the DNS")],
)
def test_an_invalid_hash_is_refused_with_a_reason(value: str, problem: str) -> None:
    sessions, refused = d.sessions_from_pods(config(), [pod("bad", value), pod("good", "abc")])
    assert list(sessions) == ["abc"]
    assert [(r.pod.name, r.reason) for r in refused] == [("bad", d.INVALID_HASH)]
    assert problem in refused[0].message and "nothing is published" in refused[0].message


def test_a_label_of_exactly_63_characters_is_fine() -> None:
    assert d.hash_problem(config(), "x" * 60) is None  # 60 + "-oc" = 63


def test_the_longest_waiting_sessions_come_first() -> None:
    pods = [pod("new", "aaa"), pod("old", "zzz"), pod("mid", "mmm")]
    for body, created in zip(pods, ("2026-01-01T10:00:03Z", "2026-01-01T10:00:01Z", "2026-01-01T10:00:02Z"),
                             strict=True):
        body["metadata"]["creationTimestamp"] = created
    sessions, _ = d.sessions_from_pods(config(), pods)
    assert list(sessions) == ["zzz", "mmm", "aaa"]
    changes = d.route_changes(config(), sessions.values(), [])
    assert [r["metadata"]["name"] for r in changes.create][::2] == [
        "opencode-session-zzz-oc-signin", "opencode-session-mmm-oc-signin", "opencode-session-aaa-oc-signin"
    ]


def test_two_pods_with_one_hash_are_one_session() -> None:
    sessions, _ = d.sessions_from_pods(config(), [pod("a", "abc"), pod("b", "abc")])
    assert [ref.name for ref in sessions["abc"].pods] == ["a", "b"]


# --- ownership ----------------------------------------------------------------------------------


def record(comment: str | None, name: str = "abc-oc.no-panic.org") -> DnsRecord:
    return DnsRecord("id", name, "CNAME", "t.cfargotunnel.com", True, 1, comment)


def test_records_are_claimed_only_for_sessions_of_this_namespace() -> None:
    cfg = config()
    assert d.owns_record(cfg, record(marker("default", "Session/opencode-router/abc")), "default")
    assert not d.owns_record(cfg, record(marker("blue", "Session/opencode-router/abc")), "default")
    assert not d.owns_record(cfg, record(marker("default", "Session/other-ns/abc")), "default")
    assert not d.owns_record(cfg, record(marker("default", "ChuteGateway/opencode-router/abc")), "default")
    assert not d.owns_record(cfg, record(marker("default", "Session/opencode-router/xyz")), "default")  # not its name
    assert not d.owns_record(cfg, record(marker("default", "Session/opencode-router/abc"), "www.no-panic.org"),
                             "default")
    assert not d.owns_record(cfg, record("opencode session — managed by opencode-cloudflare-operator"), "default")


PROVEN = frozenset({"abc-oc.no-panic.org"})


@pytest.mark.parametrize(
    ("rule", "proven", "expected"),
    [
        ({"hostname": "abc-oc.no-panic.org", "service": ROUTER}, PROVEN, True),
        ({"hostname": "abc-oc.no-panic.org", "service": "http://other:80"}, PROVEN, True),  # ours: to be updated
        ({"hostname": "abc-oc.no-panic.org", "service": ROUTER}, frozenset(), False),  # no record proves it ours
        ({"hostname": "abc-oc.no-panic.org", "path": "^/x", "service": ROUTER}, PROVEN, False),
        ({"hostname": "www.no-panic.org", "service": ROUTER}, PROVEN, False),
        ({"service": "http_status:404"}, PROVEN, False),
    ],
)
def test_tunnel_rules_are_ours_only_by_their_hostnames_proven_record(
    rule: dict[str, str], proven: frozenset[str], expected: bool
) -> None:
    assert d.owns_rule(rule, proven) is expected


def test_proven_hostnames_are_those_of_records_marked_for_their_own_session() -> None:
    cfg = config()
    records = [
        record(marker("default", "Session/opencode-router/abc")),
        record(marker("default", "HTTPRoute/opencode-router/ui"), "ui-oc.no-panic.org"),
        record(marker("default", "Session/opencode-router/abc"), "xyz-oc.no-panic.org"),  # another hash's name
        record(None, "def-oc.no-panic.org"),
    ]
    assert d.proven_hostnames(cfg, records, "default") == {"abc-oc.no-panic.org"}


def test_adoption_is_asked_by_the_pod_and_permitted_by_the_operator() -> None:
    cfg = config()
    asking = pod("p", "abc")
    asking["metadata"]["annotations"] = {"chutes.troubleshat.com/adopt": "true"}
    sessions, _ = d.sessions_from_pods(cfg, [asking])
    assert sessions["abc"].asked_adoption and sessions["abc"].adopt
    rules = HostnameRules.allow_all()
    assert not d.permit_adoption(cfg, sessions, rules, allow_all=False)["abc"].adopt
    assert d.permit_adoption(cfg, sessions, rules, allow_all=True)["abc"].adopt
    assert d.permit_adoption(cfg, sessions, rules, allow_all=False)["abc"].asked_adoption


def route(name: str, spec: Any = None, managed: bool = True) -> dict[str, Any]:
    labels = {"app.kubernetes.io/managed-by": "opencode-cloudflare-operator"} if managed else {}
    return {"metadata": {"name": name, "labels": labels}, "spec": spec or {}}


def test_route_changes_create_missing_update_drifted_and_delete_only_our_orphans() -> None:
    cfg = config(INGRESSROUTE_NAMESPACE="opencode-router")
    keep, drift = session("aaa"), session("bbb")
    good = next(r for r in d.ingress_routes(cfg, keep) if r["metadata"]["name"].endswith("-app"))
    existing = [
        good,
        route("opencode-session-bbb-oc-app", {"entryPoints": ["web"]}),
        route("opencode-session-old-oc-app"),
        route("opencode-session-old-oc-signin"),
        route("opencode-session-alive-oc-app"),  # its Pod is alive, the listing did not show it yet
        route("opencode-session-attach-old-oc-attach"),  # v2 attach route: not ours to manage
        route("opencode-session-3000-old-oc-app"),  # v2 dev-port route: not ours either
        route("opencode-session-foreign-oc-app", managed=False),
    ]
    changes = d.route_changes(cfg, [keep, drift], existing, keep={"opencode-session-alive-oc-app"})
    assert sorted(r["metadata"]["name"] for r in changes.create) == [
        "opencode-session-aaa-oc-signin", "opencode-session-bbb-oc-signin"
    ]
    assert [r["metadata"]["name"] for r in changes.update] == ["opencode-session-bbb-oc-app"]
    assert changes.delete == ("opencode-session-old-oc-app", "opencode-session-old-oc-signin")


# --- when passes run ----------------------------------------------------------------------------


def test_first_pass_at_once_then_resync_when_nothing_was_written() -> None:
    scheduler = PassScheduler(TIMING, now=100.0)
    assert scheduler.due() == 100.0
    scheduler.started(100.0)
    scheduler.finished(100.5, wrote=False)
    assert scheduler.due() == 400.5


def test_a_burst_of_new_sessions_waits_for_quiet_but_not_longer_than_max_delay() -> None:
    scheduler = PassScheduler(TIMING, now=0.0)
    scheduler.started(0.0)
    scheduler.finished(0.0, wrote=False)
    scheduler.changed(10.0, addition=True)
    assert scheduler.due() == pytest.approx(10.3)
    for step in range(1, 20):  # a steady stream of new Pods
        scheduler.changed(10.0 + step * 0.1, addition=True)
    assert scheduler.due() == pytest.approx(11.5)


def test_removals_alone_wait_longer() -> None:
    scheduler = PassScheduler(TIMING, now=0.0)
    scheduler.started(0.0)
    scheduler.finished(0.0, wrote=False)
    scheduler.changed(10.0, addition=False)
    assert scheduler.due() == pytest.approx(11.0)
    for step in range(1, 60):
        scheduler.changed(10.0 + step * 0.1, addition=False)
    assert scheduler.due() == pytest.approx(14.0)
    scheduler.changed(15.95, addition=True)  # a new session makes it urgent again
    assert scheduler.due() == pytest.approx(14.0)


def test_a_pass_that_wrote_is_verified_shortly_after() -> None:
    scheduler = PassScheduler(TIMING, now=0.0)
    scheduler.started(0.0)
    scheduler.finished(2.0, wrote=True)
    assert scheduler.due() == pytest.approx(3.0)


def test_an_early_pass_that_writes_nothing_does_not_cancel_the_verification() -> None:
    scheduler = PassScheduler(TIMING, now=0.0)
    scheduler.started(0.0)
    scheduler.finished(2.0, wrote=True)
    scheduler.changed(2.1, addition=True)
    scheduler.started(2.4)  # an event-driven pass, before the verification was due
    scheduler.finished(2.5, wrote=False)
    assert scheduler.due() == pytest.approx(3.0)
    scheduler.started(3.0)
    scheduler.finished(3.1, wrote=False)  # the verification itself
    assert scheduler.due() == pytest.approx(303.1)


def test_failures_back_off_honour_retry_after_and_events_do_not_bring_the_retry_forward() -> None:
    scheduler = PassScheduler(TIMING, now=0.0)
    scheduler.started(0.0)
    assert scheduler.failed(1.0) == 1.0
    scheduler.started(2.0)
    assert scheduler.failed(2.0) == 5.0
    scheduler.started(7.0)
    assert scheduler.failed(7.0, delay=300.0) == 300.0
    scheduler.changed(8.0, addition=True)
    assert scheduler.due() == pytest.approx(307.0)
    scheduler.started(307.0)
    scheduler.finished(308.0, wrote=False)
    assert scheduler.failures == 0


def test_jitter_spreads_replicas() -> None:
    timing = Timing(jitter=0.4)
    dues = set()
    for seed in range(10):
        scheduler = PassScheduler(timing, now=0.0, rng=random.Random(seed))
        scheduler.started(0.0)
        scheduler.finished(0.0, wrote=False)
        scheduler.changed(1.0, addition=True)
        due = scheduler.due()
        assert 1.0 + 0.3 * 0.6 <= due <= 1.0 + 0.3 * 1.4
        dues.add(round(due, 6))
    assert len(dues) > 5


# --- what the watch's events change -------------------------------------------------------------


class Clock:
    now = 50.0

    def __call__(self) -> float:
        return self.now


def loop_fed() -> tuple[SessionLoop, Clock]:
    clock = Clock()
    loop = SessionLoop(config(), publisher=None, timing=TIMING, clock=clock)  # type: ignore[arg-type]
    loop.scheduler.started(clock.now)
    loop.scheduler.finished(clock.now, wrote=False)
    return loop, clock


def test_only_changes_of_the_session_set_schedule_a_pass() -> None:
    loop, clock = loop_fed()
    loop.pod_event("ADDED", pod("a", "abc"))
    assert loop.alive_hashes() == {"abc"} and loop.scheduler.due() == pytest.approx(50.3)
    loop.scheduler.started(clock.now)
    loop.scheduler.finished(clock.now, wrote=False)

    loop.pod_event("MODIFIED", pod("a", "abc"))  # e.g. the Pod became Ready: nothing to publish
    loop.pod_event(None, pod("a", "abc"))  # the initial listing after a watch restart
    loop.pod_event("ADDED", pod("elsewhere", "xyz", namespace="other"))
    loop.pod_event("ADDED", pod("unlabelled", None))
    assert not loop.scheduler.pending

    loop.pod_event("MODIFIED", pod("a", None))  # the label went away
    assert loop.alive_hashes() == set() and loop.scheduler.due() == pytest.approx(51.0)


def test_an_invalid_hash_schedules_one_pass_to_report_it() -> None:
    loop, clock = loop_fed()
    loop.pod_event("ADDED", pod("bad", "NOT-VALID"))
    assert loop.alive_hashes() == set() and loop.scheduler.pending
    loop.scheduler.started(clock.now)
    loop.pod_event("MODIFIED", pod("bad", "NOT-VALID"))
    assert not loop.scheduler.pending


def test_deleted_pods_are_removals() -> None:
    loop, _ = loop_fed()
    loop.pod_event("ADDED", pod("a", "abc"))
    loop.scheduler.started(0.0)
    loop.pod_event("DELETED", pod("a", "abc"))
    assert loop.alive_hashes() == set() and loop.scheduler.due() == pytest.approx(51.0)


def test_the_watch_reports_sessions_gone_since_a_pass_started() -> None:
    loop, clock = loop_fed()
    loop.pod_event("ADDED", pod("a", "abc"))
    loop.pod_event("ADDED", pod("b", "def"))
    loop.pod_event("ADDED", pod("b2", "def"))  # a second Pod of the same session
    clock.now = 60.0
    loop.pod_event("DELETED", pod("a", "abc"))
    loop.pod_event("DELETED", pod("b", "def"))  # "def" still has a Pod
    assert loop.gone_since(55.0) == {"abc"} and loop.gone_since(61.0) == set()
    loop.pod_event("ADDED", pod("a-again", "abc"))  # the session came back
    assert loop.gone_since(55.0) == set()
