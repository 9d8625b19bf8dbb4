"""Two session replicas see the same Pod events; a pass leaves on the door's Lease the digest of the state it made
true, and the other replica's pass for the same events ends without a Cloudflare call. Timed passes (start,
verification, resync) never end so: a note is never a reason to skip a check for drift."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import kubernetes
import pytest

from chutes.frontdoors.sessions import desired as d
from chutes.leases import NOTE_ANNOTATION
from chutes.sandbox.cloudflare import SandboxConfig, SandboxThread
from harness import sessions as h
from harness.sessions import api_fixture, fast_timing_fixture  # noqa: F401  (pytest fixtures)
from harness.waiting import wait_for, wait_quiet

TOKENS = {"replica-a": "a" * 40, "replica-b": "b" * 40}


def session(value: str, adopt: bool = False) -> d.Session:
    return d.Session(value, f"{value}-oc", f"{value}-oc.example.net", adopt=adopt)


def test_a_clean_fresh_note_of_the_same_inputs_answers_a_pass_and_nothing_else_does() -> None:
    a, b = session("aaaa11112222"), session("bbbb11112222")
    digest = d.pass_digest([a, b], {"aaaa11112222", "bbbb11112222"})
    assert digest == d.pass_digest([b, a], ["bbbb11112222", "aaaa11112222", "aaaa11112222"])  # order-free
    note = d.pass_note(digest, clean=True, now=1000.0)
    assert d.answered_by_note(note, digest, now=1010.0)
    assert not d.answered_by_note(note, digest, now=1000.0 + d.NOTE_FRESH_SECONDS)  # too old
    assert not d.answered_by_note(note, digest, now=990.0)  # from the future: another clock, not trusted
    assert not d.answered_by_note(note, d.pass_digest([a], {"aaaa11112222", "bbbb11112222"}), now=1010.0)
    assert not d.answered_by_note(note, d.pass_digest([a, b], {"aaaa11112222"}), now=1010.0)  # kept from removal
    assert not d.answered_by_note(note, d.pass_digest([session("aaaa11112222", adopt=True), b],
                                                      {"aaaa11112222", "bbbb11112222"}), now=1010.0)
    assert not d.answered_by_note(d.pass_note(digest, clean=False, now=1000.0), digest, now=1001.0)
    for garbage in (None, "", "{", "[]", '{"digest": 1}', json.dumps({"digest": digest, "at": "x"})):
        assert not d.answered_by_note(garbage, digest, now=1001.0)


@pytest.fixture()
def cf() -> Any:
    config = SandboxConfig.from_dict({"tokens": [{"name": name, "value": value} for name, value in TOKENS.items()]})
    with SandboxThread(config) as sandbox:
        yield sandbox


def test_a_pod_event_both_replicas_see_costs_the_calls_of_one(cf: Any, kube: Any, api: Any) -> None:
    tunnel = h.create_tunnel(cf)
    envs = [h.session_env(cf, tunnel, CF_API_TOKEN=token) for token in TOKENS.values()]
    with h.operator(cf, envs[0]), h.operator(cf, envs[1]):
        # each replica's start pass reads (a timed pass: never answered by a note)
        wait_for("both start passes", lambda: set(TOKENS) <= {r.token_name for r in cf.requests if r.op == "dns.list"})
        wait_quiet("the start passes", lambda: len(cf.requests), quiet=1.5)
        cf.reset_log()

        h.create_pod(api, h.pod("one", "abcd00001111"))
        wait_for("published", lambda: h.published(cf, api, tunnel).records == {h.hostname("abcd00001111")})
        wait_quiet("the passes and the verification", lambda: len(cf.requests), quiet=1.5)
        by_replica = Counter(r.token_name for r in cf.requests)
        assert sorted(by_replica.values()) == [sum(by_replica.values())], by_replica  # one replica made every call
        ops = Counter(r.op for r in cf.requests)
        assert ops["dns.list"] >= 2 and ops["tunnels.config.put"] == 1  # the pass, and its verification, read

        leases = kubernetes.client.CoordinationV1Api(api).list_namespaced_lease("default").items
        notes = [json.loads((lease.metadata.annotations or {})[NOTE_ANNOTATION]) for lease in leases
                 if NOTE_ANNOTATION in (lease.metadata.annotations or {})]
        assert len(notes) == 1 and notes[0]["digest"]  # the sessions Lease carries the clean pass's digest
