"""The session door's pure decide: from the sessions and what one pass read, the change set (in the order the
safety rules need) and the problems; admitted as a whole by the write policy and dry-run; applied in one batch per
writer of the core."""

from __future__ import annotations

import functools
from typing import Any

from chutes import conditions as c
from chutes.cloudflare_core import Conflict, DnsRecord, DnsSync, RuleSync, marker
from chutes.frontdoors import changes
from chutes.frontdoors.sessions import apply as apply_module
from chutes.frontdoors.sessions import desired as d
from chutes.frontdoors.sessions.decide import Inputs, Outcome, decide
from harness.session_inputs import ROUTER, TUNNEL, config, session

OWNER = "default"
CFG = config()
ONE, TWO = session("aaa"), session("bbb")
TARGET = f"{TUNNEL}.cfargotunnel.com"


def record(value: str, *, comment: str | None = None, content: str = TARGET, rid: str = "") -> DnsRecord:
    name = d.hostname(CFG, value)
    mark = marker(OWNER, d.source(CFG, value)) if comment is None else comment
    return DnsRecord(rid or f"id-{value}", name, "CNAME", content, True, 1, mark)


def rule(value: str, service: str = ROUTER) -> dict[str, Any]:
    return {"hostname": d.hostname(CFG, value), "service": service}


def routes(*sessions: d.Session) -> list[dict[str, Any]]:
    return [route for s in sessions for route in d.ingress_routes(CFG, s)]


def run(*sessions: d.Session, **read: Any) -> Outcome:
    return decide(CFG, {s.hash: s for s in sessions}, Inputs(**read), OWNER)


def lines(outcome: Outcome) -> list[str]:
    return [changes.describe(change) for change in outcome.decision.changes]


def test_a_new_session_gets_its_record_then_its_rule_and_its_two_ingressroutes() -> None:
    outcome = run(ONE, rules=[], fresh=frozenset({ONE.hostname}))
    host = ONE.hostname
    assert lines(outcome) == [
        f"+ create DNS record {host} CNAME -> {TARGET} (proxied)",
        f"+ create tunnel rule {host} -> {ROUTER}",
        f"+ create IngressRoute opencode-session-aaa-oc-signin ({CFG.ingressroute_namespace})",
        f"+ create IngressRoute opencode-session-aaa-oc-app ({CFG.ingressroute_namespace})",
    ]
    dns, tunnel_rule = outcome.decision.changes[:2]
    assert tunnel_rule.needs == (dns.ref,)  # the record proves the rule ours: never a rule without it
    assert outcome.live == (ONE,) and outcome.decision.problems == ()


def test_what_is_in_place_needs_no_change_and_unread_rules_are_ensured() -> None:
    read = {"records": [record("aaa")], "routes": routes(ONE)}
    assert run(ONE, rules=[rule("aaa")], **read).decision.changes == ()
    changed = run(ONE, rules=[rule("aaa", "http://elsewhere:80")], **read).decision.changes
    assert [(ch.action, ch.kind, ch.ensure) for ch in changed] == [("update", "tunnel_rule", False)]
    ensured = run(ONE, **read).decision.changes  # rules not read (nothing new): the core compares
    assert [(ch.action, ch.kind, ch.ensure, ch.needs) for ch in ensured] == [("update", "tunnel_rule", True, ())]


def test_a_record_not_ours_blocks_only_its_own_session() -> None:
    foreign = record("aaa", comment="made by hand")
    outcome = run(ONE, TWO, records=[foreign], rules=[], fresh=frozenset({ONE.hostname, TWO.hostname}))
    assert outcome.live == (TWO,)
    assert [(s.hash, reason) for s, reason, _ in outcome.blocked] == [("aaa", c.HOSTNAME_CONFLICT)]
    assert "a DNS record this operator does not own" in outcome.blocked[0][2]
    assert {change.name for change in outcome.decision.changes} >= {TWO.hostname}
    assert not any(ONE.hostname in change.name for change in outcome.decision.changes)
    held = run(ONE, records=[record("aaa", comment=marker(OWNER, "HTTPRoute/ns/web"))])
    assert "held by HTTPRoute/ns/web's DNS record" in held.blocked[0][2]


def test_adoption_takes_over_an_unmarked_record_only_when_the_policy_permits_it() -> None:
    adopting = d.Session(ONE.hash, ONE.first_label, ONE.hostname, ONE.pods, adopt=True, asked_adoption=True)
    unmarked = record("aaa", comment="")
    outcome = run(adopting, records=[unmarked])
    assert lines(outcome)[0] == f"~ update DNS record {ONE.hostname} CNAME -> {TARGET} (proxied) (adopting it)"
    assert run(adopting, records=[unmarked], may_adopt=False).blocked[0][1] == c.HOSTNAME_CONFLICT


def test_a_hostname_another_source_claims_is_left_to_it_unless_the_session_holds_its_record() -> None:
    claimed = {ONE.hostname: "ChuteGateway/ns/blog"}
    outcome = run(ONE, claimed=claimed)
    assert outcome.live == () and outcome.decision.changes == ()
    assert outcome.decision.problems == ((c.HOSTNAME_CONFLICT, f"{ONE.hostname} is claimed by ChuteGateway/ns/blog "
                                          "(one hostname, one holder); nothing is published"),)
    assert run(ONE, claimed=claimed, records=[record("aaa")]).live == (ONE,)  # its record, made first, is its claim


def test_a_foreign_rule_blocks_a_new_session_without_a_record() -> None:
    foreign = rule("aaa", "http://hand-made:80")
    outcome = run(ONE, rules=[foreign], fresh=frozenset({ONE.hostname}))
    assert outcome.live == () and "did not make (→ http://hand-made:80)" in outcome.blocked[0][2]
    assert run(ONE, rules=[foreign]).live == (ONE,)  # published by the last pass: not checked again


def test_a_stale_record_goes_after_its_rule_unless_protected_or_over_the_cap() -> None:
    read: dict[str, Any] = {"records": [record("aaa"), record("bbb"), record("ccc")],
                            "rules": [rule("aaa"), rule("bbb")], "fresh": frozenset({"x"})}
    outcome = run(**read)
    assert lines(outcome) == [
        f"- delete tunnel rule {ONE.hostname}", f"- delete tunnel rule {TWO.hostname}",
        f"- delete DNS record {ONE.hostname} (CNAME, id id-aaa)",
        f"- delete DNS record {TWO.hostname} (CNAME, id id-bbb)",
        f"- delete DNS record {d.hostname(CFG, 'ccc')} (CNAME, id id-ccc)",  # no rule there: nothing to wait for
    ]
    assert outcome.decision.changes[2].needs == ("tunnel_rule/" + ONE.hostname,)
    assert {ch.name for ch in run(protected=frozenset({"aaa"}), **read).decision.changes} == {
        TWO.hostname, d.hostname(CFG, "ccc")}
    capped = run(room=1, explained=frozenset({TWO.hostname}), **read)
    assert (capped.allowed, capped.held) == ((ONE.hostname,), (d.hostname(CFG, "ccc"),))
    assert {ch.name for ch in capped.decision.changes} == {ONE.hostname, TWO.hostname}  # explained: not counted


def test_a_record_marked_for_another_session_or_owner_is_never_stale() -> None:
    wrong_source = record("aaa", comment=marker(OWNER, d.source(CFG, "bbb")))
    other_owner = record("bbb", comment=marker("other", d.source(CFG, "bbb")))
    assert run(records=[wrong_source, other_owner]).decision.changes == ()


def test_the_policy_and_dry_run_filter_the_set_as_a_whole() -> None:
    outcome = run(ONE, records=[record("old")], rules=[rule("old")], fresh=frozenset({ONE.hostname}))
    kept = changes.admit(outcome.decision.changes, "upsert-only")
    assert [why for _, why in kept.held] == ["policy upsert-only"] * 2
    assert {ch.action for ch, _ in kept.held} == {"delete"} and len(kept.now) == 4
    dry = changes.admit(outcome.decision.changes, "sync", dry_run=True)
    assert [ch.kind for ch in dry.now] == ["IngressRoute", "IngressRoute"]  # Kubernetes objects: always written
    assert [why for _, why in dry.held] == ["dry-run"] * 4


class FakeCore:
    """The core's batched writers, recorded: what one pass asks of each."""

    def __init__(self, failed: dict[str, Any] | None = None) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.failed = failed or {}

    async def sync_dns_records(self, zone_id: str, desired: Any, owns: Any, *, listed: Any) -> Any:
        self.calls.append(("dns", [record.name for record in desired]))
        return DnsSync({}, self.failed, (), frozenset(), written=True)

    async def sync_ingress_rules(self, account_id: str, tunnel_id: str, rules: Any, owns: Any) -> Any:
        self.calls.append(("rules", ([rule.hostname for rule in rules],
                                     sorted(r for r in ("aaa", "bbb", "old") if owns(rule(r))))))
        return RuleSync(True)

    async def delete_dns_records(self, zone_id: str, records: Any) -> tuple[str, ...]:
        self.calls.append(("delete", [record.name for record in records]))
        return tuple(record.name for record in records)


async def test_apply_makes_the_whole_set_in_one_batch_per_writer(monkeypatch: Any) -> None:
    written: list[tuple[str, str]] = []

    async def kube_call(kind: str, *args: Any) -> bool:
        written.append((kind, str(args[-1]["metadata"]["name"] if isinstance(args[-1], dict) else args[-1])))
        return True

    for name in ("create_custom", "patch_custom", "delete_custom"):
        monkeypatch.setattr(apply_module.kube, name, functools.partial(kube_call, name))
    old = session("old")
    outcome = run(ONE, TWO, records=[record("old")], rules=[rule("old")], fresh=frozenset({ONE.hostname}),
                  routes=routes(old))
    core = FakeCore(failed={TWO.hostname: Conflict("taken meanwhile")})
    admitted = changes.admit(outcome.decision.changes, "sync")
    applied = await apply_module.apply(core, None, CFG, "account", admitted, [], lambda: set(),  # type: ignore[arg-type]
                                       apply_module.Stopwatch())
    assert core.calls == [  # one DNS sync, one tunnel flush, one batch of deletions: never per session
        ("dns", [ONE.hostname, TWO.hostname]),
        ("rules", ([ONE.hostname], ["aaa", "old"])),  # the refused record's session: neither set nor touched
        ("delete", [d.hostname(CFG, "old")]),
    ]
    assert sorted(written) == [("create_custom", "opencode-session-aaa-oc-app"),
                               ("create_custom", "opencode-session-aaa-oc-signin"),
                               ("delete_custom", "opencode-session-old-oc-app"),
                               ("delete_custom", "opencode-session-old-oc-signin")]
    assert set(applied.failed) == {TWO.hostname} and applied.removed == (d.hostname(CFG, "old"),)
