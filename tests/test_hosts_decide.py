"""The router-hosts door's decision (pure): proven entries are kept in step, foreign ones are never touched and
are reported, the oldest entry holds a name, our own duplicates go, and the change set is filtered whole by the
write policy and dry-run."""

from __future__ import annotations

from typing import Any

from chutes import conditions as c
from chutes.frontdoors.changes import admit
from chutes.frontdoors.hosts import desired as d
from chutes.frontdoors.hosts.decide import Found, decide
from chutes.hosts_core.models import HostEntry, HostSpec

MAPPING = d.Source("HostMapping", "home", "nas")
ROUTES = d.Source("routes", "apps", "web")
TAGS = ("kubernetes", "traefik", "ingress")


def entry(n: int, hostname: str = "nas.lan", ip: str = "10.0.0.1", comment: str | None = "k8s:home/nas",
          aliases: tuple[str, ...] = (), tags: tuple[str, ...] = (), version: str = "3") -> HostEntry:
    return HostEntry(id=f"01J{n:023d}", ip=ip, hostname=hostname, comment=comment, aliases=aliases, tags=tags,
                     version=version)


def spec(hostname: str = "nas.lan", ip: str = "10.0.0.1", **kw: Any) -> HostSpec:
    return HostSpec(ip=ip, hostname=hostname, comment=kw.pop("comment", "k8s:home/nas"), **kw)


def wants(*specs: HostSpec, hints: dict[str, str] | None = None) -> d.Wants:
    return d.Wants(specs={s.hostname: s for s in specs}, hints=hints or {})


def found(*entries: HostEntry, source: d.Source = MAPPING, names: tuple[str, ...] = ("nas.lan",)) -> Found:
    ours = tuple(e for e in entries if e.comment == source.comment)
    return Found(ours, {n: tuple(e for e in entries if e.hostname.lower() == n) for n in names})


def plan(decision: Any) -> list[tuple[str, str, str]]:
    return [(ch.action, ch.name, ch.payload.entry_id) for ch in decision.changes]


def test_nothing_there_creates_it() -> None:
    decision = decide(MAPPING, wants(spec()), found())
    assert plan(decision) == [("create", "nas.lan", "")] and decision.problems == ()
    assert decision.changes[0].payload.spec == spec()


def test_an_entry_in_sync_is_left_alone() -> None:
    assert decide(MAPPING, wants(spec(aliases=("a.lan", "b.lan"))),
                  found(entry(1, aliases=("b.lan", "a.lan")))).changes == ()


def test_an_entry_that_differs_is_updated_at_the_version_read() -> None:
    decision = decide(MAPPING, wants(spec(ip="10.0.0.2")), found(entry(1, aliases=("old.lan",), tags=("t",)))).changes
    assert [(ch.action, ch.payload.entry_id, ch.payload.version) for ch in decision] == [("update", entry(1).id, "3")]
    assert decision[0].payload.spec == spec(ip="10.0.0.2")  # no aliases, no tags: they are cleared
    assert "ip 10.0.0.1 -> 10.0.0.2" in decision[0].detail and "aliases ['old.lan'] -> []" in decision[0].detail


def test_a_foreign_entry_for_the_name_is_never_touched_and_is_reported() -> None:
    foreign = entry(1, comment="made by hand", ip="10.9.9.9")
    decision = decide(MAPPING, wants(spec()), found(foreign))
    assert decision.changes == ()
    assert decision.problems[0][0] == c.HOSTNAME_CONFLICT and foreign.id in decision.problems[0][1]


def test_a_foreign_entry_of_this_very_ip_and_name_is_not_adopted() -> None:
    decision = decide(MAPPING, wants(spec()), found(entry(1, comment="k8s:other/nas")))
    assert decision.changes == () and decision.problems[0][0] == c.ADOPTION_REFUSED


def test_the_oldest_entry_holds_the_name_so_a_younger_one_of_ours_goes() -> None:
    foreign, ours = entry(1, comment="k8s:other/nas", ip="10.0.0.9"), entry(2)
    decision = decide(MAPPING, wants(spec()), found(foreign, ours))
    assert plan(decision) == [("delete", "nas.lan", ours.id)]
    assert decision.problems[0][0] == c.HOSTNAME_CONFLICT


def test_a_younger_foreign_entry_is_reported_and_ours_kept() -> None:
    ours, foreign = entry(1, ip="10.0.0.5"), entry(2, comment=None, ip="10.0.0.9")
    decision = decide(MAPPING, wants(spec()), found(ours, foreign))
    assert plan(decision) == [("update", "nas.lan", ours.id)]
    assert [reason for reason, _ in decision.problems] == [c.HOSTNAME_CONFLICT]
    assert all(ch.payload.entry_id != foreign.id for ch in decision.changes)


def test_our_own_duplicates_go_and_the_hinted_one_stays() -> None:
    first, second = entry(1), entry(2)
    decision = decide(MAPPING, wants(spec(), hints={"nas.lan": second.id}), found(first, second))
    assert plan(decision) == [("delete", "nas.lan", first.id)]


def test_a_renamed_hostmapping_renames_its_entry_in_place() -> None:
    old = entry(1, hostname="old.lan")
    decision = decide(MAPPING, wants(spec()), found(old))
    assert plan(decision) == [("update", "nas.lan", old.id)]
    assert "hostname old.lan -> nas.lan" in decision.changes[0].detail


def test_an_entry_deleted_behind_our_back_is_recreated() -> None:
    decision = decide(MAPPING, wants(spec(), hints={"nas.lan": entry(7).id}), found())
    assert plan(decision) == [("create", "nas.lan", "")]
    assert decision.changes[0].payload.recreates == entry(7).id


def test_a_source_that_wants_nothing_loses_every_proven_entry_and_nothing_else() -> None:
    ours, foreign = entry(1), entry(2, hostname="x.lan", comment="k8s:home/nas2")
    decision = decide(MAPPING, d.Wants(), found(ours, foreign))
    assert plan(decision) == [("delete", "nas.lan", ours.id)]


def test_a_blocked_source_changes_nothing() -> None:
    blocked = d.Wants(problems=((c.INVALID_SPEC, "invalid IP address: x"),), block=True)
    decision = decide(MAPPING, blocked, found(entry(1)))
    assert decision.changes == () and decision.problems == blocked.problems


def route_entry(n: int, hostname: str, tags: tuple[str, ...] = TAGS) -> HostEntry:
    return entry(n, hostname=hostname, ip="10.1.1.1", comment="k8s-ingress:apps/web", tags=tags)


def route_spec(hostname: str) -> HostSpec:
    return HostSpec("10.1.1.1", hostname, "k8s-ingress:apps/web", (), TAGS)


def test_a_route_keeps_its_hosts_adds_new_ones_and_drops_the_rest_creates_first() -> None:
    kept, dropped = route_entry(1, "a.lan"), route_entry(2, "b.lan")
    decision = decide(ROUTES, wants(route_spec("a.lan"), route_spec("c.lan")),
                      found(kept, dropped, source=ROUTES, names=("a.lan", "c.lan")))
    assert plan(decision) == [("create", "c.lan", ""), ("delete", "b.lan", dropped.id)]


def test_a_route_entry_without_upstreams_tags_is_not_ours() -> None:
    untagged = route_entry(1, "a.lan", tags=("kubernetes",))
    decision = decide(ROUTES, wants(route_spec("a.lan")), found(untagged, source=ROUTES, names=("a.lan",)))
    assert decision.changes == () and decision.problems[0][0] == c.ADOPTION_REFUSED
    assert decide(ROUTES, d.Wants(), found(untagged, source=ROUTES)).changes == ()  # nor deleted


def test_names_are_compared_regardless_of_case() -> None:
    ours = route_entry(1, "A.lan")
    decision = decide(ROUTES, wants(route_spec("a.lan")), found(ours, source=ROUTES, names=("a.lan",)))
    assert plan(decision) == [("update", "a.lan", ours.id)]


def test_the_policy_and_dry_run_filter_the_change_set_whole() -> None:
    kept, dropped = route_entry(1, "a.lan"), route_entry(2, "b.lan")
    changes = decide(ROUTES, wants(route_spec("c.lan")), found(kept, dropped, source=ROUTES, names=("c.lan",))).changes
    assert [ch.action for ch in admit(changes, "upsert-only").now] == ["create"]
    assert [ch.action for ch in admit(changes, "create-only").now] == ["create"]
    assert admit(changes, "sync", dry_run=True).now == ()
    assert [line.split()[1] for line in admit(changes, "sync", dry_run=True).lines()] == ["create", "delete", "delete"]
