"""The change set of the front-door shape: the write policy and dry-run filter it as a whole (a change whose need
is held back is held back too), an update that only revokes access always passes, and the lines printed name what
changes and why something was held."""

from __future__ import annotations

import asyncio

import pytest

from chutes.frontdoors.changes import Change, admit, apply, describe

APP = Change("create", "access_app", "app.example.com", payload=1)
RULE = Change("create", "tunnel_rule", "app.example.com", payload=2, needs=("access_app/app.example.com",))
CNAME = Change("create", "dns_record", "app.example.com", payload=3, needs=("tunnel_rule/app.example.com",),
               detail="-> t1.cfargotunnel.com")
STALE = Change("delete", "dns_record", "old.example.com", payload=4)
WIDEN = Change("update", "access_policy", "app.example.com", payload=5)
NARROW = Change("update", "access_policy", "app.example.com", payload=6, revokes=True)


@pytest.mark.parametrize(("policy", "now", "held"), [
    ("sync", [APP, RULE, CNAME, STALE, WIDEN, NARROW], []),
    ("upsert-only", [APP, RULE, CNAME, WIDEN, NARROW], [STALE]),
    ("create-only", [APP, RULE, CNAME, NARROW], [STALE, WIDEN]),
])
def test_the_policy_filters_the_whole_set_and_never_holds_a_revocation(policy: str, now: list[Change[int]],
                                                                       held: list[Change[int]]) -> None:
    admitted = admit([APP, RULE, CNAME, STALE, WIDEN, NARROW], policy)
    assert list(admitted.now) == now
    assert [change for change, _ in admitted.held] == held
    assert all(why == f"policy {policy}" for _, why in admitted.held)


def test_a_change_whose_need_is_held_is_held_too() -> None:
    replace_app = Change("delete", "access_app", "app.example.com", payload=0, key="old-app")
    route = Change("create", "tunnel_rule", "app.example.com", payload=0, needs=("old-app",))
    admitted = admit([replace_app, route, CNAME], "upsert-only")
    assert admitted.now == ()  # the CNAME needs the rule, which needs the held delete
    assert [why for _, why in admitted.held] == ["policy upsert-only", "needs old-app",
                                                 "needs tunnel_rule/app.example.com"]


def test_dry_run_holds_everything_and_prints_what_would_change() -> None:
    admitted = admit([APP, CNAME, STALE], "sync", dry_run=True)
    assert admitted.now == ()
    assert admitted.lines() == [
        "+ create Access application app.example.com (held: dry-run)",
        "+ create DNS record app.example.com -> t1.cfargotunnel.com (held: dry-run)",
        "- delete DNS record old.example.com (held: dry-run)",
    ]


def test_apply_makes_the_admitted_changes_in_order_and_stops_at_the_first_failure() -> None:
    made: list[int] = []

    async def run(change: Change[int]) -> None:
        if change.payload == 3:
            raise RuntimeError("refused")
        made.append(change.payload)

    with pytest.raises(RuntimeError):
        asyncio.run(apply(admit([APP, RULE, CNAME, STALE], "sync"), run))
    assert made == [1, 2]  # the stale record's delete, after the failure, was not made


def test_a_change_reads_as_what_it_does() -> None:
    assert describe(Change("update", "host_entry", "nas.lan", payload=None, detail="ip 10.0.0.4 -> 10.0.0.5")) \
        == "~ update host entry nas.lan ip 10.0.0.4 -> 10.0.0.5"
    assert describe(Change("delete", "Deployment", "blog-cloudflared", payload=None)) == \
        "- delete Deployment blog-cloudflared"  # a Kubernetes kind reads as itself
