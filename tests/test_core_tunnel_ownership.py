"""Tunnel configuration ownership (issue 11, contract C): rules the caller cannot prove its own are never
changed nor removed, the PUT's version tells when another writer raced a flush, and one lock per tunnel
keeps the writers of several processes from losing each other's edits."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import cloudflare
import pytest
from prometheus_client import REGISTRY

from chutes.cloudflare_core import (
    CloudflareCore,
    Conflict,
    DesiredRecord,
    IngressRule,
    RemoveRule,
    RequestBudget,
    RuleSync,
    SetRule,
    SyncRules,
    TransientError,
    TunnelLock,
    merge_ingress,
)
from chutes.cloudflare_core.ownership import marks
from chutes.cloudflare_core.tunnel_config import MAX_ROUNDS, merge_counted
from chutes.cores import CorePool
from chutes.sandbox.cloudflare import CloudflareSandbox
from chutes.settings import Settings
from harness.core import intent

OWNER = "test"
ZONE = "example.com"
SOURCE = "ChuteGateway/ns/app"
FOREIGN = {"hostname": "app.example.com", "service": "http://someone-else:80", "originRequest": {"noTLSVerify": True}}
OTHER = {"hostname": "other.example.com", "service": "http://other:80"}
CATCH_ALL = {"service": "http_status:503"}
WRITER_LOG = "chutes.cloudflare_core.tunnel_config"


def nobody(rule: Mapping[str, Any]) -> bool:
    return False


def everybody(rule: Mapping[str, Any]) -> bool:
    return True


def races(tunnel_id: str) -> float:
    return REGISTRY.get_sample_value("chutes_tunnel_config_races_total", {"tunnel": tunnel_id}) or 0.0


def ingress(sandbox: CloudflareSandbox, tunnel_id: str) -> list[dict[str, Any]]:
    config = sandbox.snapshot()["tunnel_configs"].get(tunnel_id) or {}
    rules: list[dict[str, Any]] = (config.get("config") or {}).get("ingress") or []
    return rules


def hosts(sandbox: CloudflareSandbox, tunnel_id: str) -> set[str]:
    return {str(rule["hostname"]) for rule in ingress(sandbox, tunnel_id) if rule.get("hostname")}


@contextlib.asynccontextmanager
async def new_core(sandbox: CloudflareSandbox, lock: TunnelLock | None = None) -> AsyncIterator[CloudflareCore]:
    """One "process": its own core, client and tunnel writers."""
    async with CloudflareCore(
        sandbox.token, sandbox.base_url, owner_id=OWNER, budget=RequestBudget(), backoff=0.01, tunnel_lock=lock
    ) as core:
        yield core


class Locks:
    """An in-memory stand-in for the Lease-based lock: one asyncio lock per (account, tunnel), shared by
    every core given `lock`; counts the flushes that held it."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self.held: list[tuple[str, str]] = []
        self.holders = 0
        self.most_holders = 0

    @contextlib.asynccontextmanager
    async def lock(self, account_id: str, tunnel_id: str) -> AsyncIterator[None]:
        async with self._locks.setdefault((account_id, tunnel_id), asyncio.Lock()):
            self.held.append((account_id, tunnel_id))
            self.holders += 1
            self.most_holders = max(self.most_holders, self.holders)
            try:
                yield
            finally:
                self.holders -= 1


async def remote_tunnel(core: CloudflareCore, sandbox: CloudflareSandbox, name: str,
                        rules: list[dict[str, Any]] | None = None) -> str:
    tunnel = await core.ensure_tunnel(sandbox.account_id, name, intent())
    if rules is not None:
        await foreign_put(sandbox, tunnel.id, rules)
    sandbox.reset_log()
    return tunnel.id


async def foreign_put(sandbox: CloudflareSandbox, tunnel_id: str, rules: list[dict[str, Any]]) -> None:
    """Another tool replaces the tunnel's configuration (plain SDK, its own client)."""
    async with cloudflare.AsyncCloudflare(api_token=sandbox.token, base_url=sandbox.base_url, max_retries=0) as cf:
        await cf.zero_trust.tunnels.cloudflared.configurations.update(
            tunnel_id, account_id=sandbox.account_id, config={"ingress": copy.deepcopy(rules)},  # type: ignore[arg-type]
        )


def ours(hostnames: set[str]) -> Callable[[Mapping[str, Any]], bool]:
    return lambda rule: rule.get("hostname") in hostnames and not rule.get("path")


A = ours({"a.example.com"})  # the proof for the rule most tests below write


# --- the merge (pure) ---------------------------------------------------------------------------


def test_set_rule_over_a_rule_owns_rejects_is_refused_even_when_identical_and_other_edits_apply() -> None:
    current = {"ingress": [copy.deepcopy(FOREIGN), copy.deepcopy(CATCH_ALL)]}
    identical = IngressRule("app.example.com", "http://someone-else:80", origin_request={"no_tls_verify": True})
    edits = [
        SetRule(IngressRule("app.example.com", "http://ours:80"), nobody),
        SetRule(identical, nobody),
        SetRule(IngressRule("new.example.com", "http://ours:80"), nobody),  # nothing there: owns is not asked
    ]

    merged, results = merge_counted(current, edits)

    assert merged["ingress"] == [FOREIGN, {"hostname": "new.example.com", "service": "http://ours:80"}, CATCH_ALL]
    assert [(r.changes, r.refused) for r in results] == [
        (0, frozenset({("app.example.com", None)})),
        (0, frozenset({("app.example.com", None)})),
        (1, frozenset()),
    ]
    assert merge_ingress(current, [SetRule(IngressRule("app.example.com", "http://ours:80"), everybody)])[
        "ingress"] == [{"hostname": "app.example.com", "service": "http://ours:80"}, CATCH_ALL]


def test_remove_rule_leaves_a_rule_owns_rejects_and_never_a_rule_with_a_path() -> None:
    with_path = {"hostname": "app.example.com", "path": "^/api", "service": "http://api:80"}
    current = {"ingress": [copy.deepcopy(FOREIGN), copy.deepcopy(with_path), copy.deepcopy(CATCH_ALL)]}

    kept, results = merge_counted(current, [RemoveRule("app.example.com", None, nobody)])
    assert kept == current and results[0].refused == frozenset({("app.example.com", None)})

    removed, results = merge_counted(current, [RemoveRule("app.example.com", None, everybody)])
    assert removed["ingress"] == [with_path, CATCH_ALL] and results[0].changes == 1


def test_sync_rules_does_not_write_a_wanted_rule_over_a_rule_it_cannot_prove_its_own() -> None:
    current = {"ingress": [copy.deepcopy(FOREIGN), {"hostname": "old.example.com", "service": "http://r:80"},
                           copy.deepcopy(CATCH_ALL)]}
    wanted = (IngressRule("app.example.com", "http://r:80"), IngressRule("b.example.com", "http://r:80"))

    merged, results = merge_counted(current, [SyncRules(wanted, ours({"old.example.com", "b.example.com"}))])

    assert merged["ingress"] == [FOREIGN, {"hostname": "b.example.com", "service": "http://r:80"}, CATCH_ALL]
    assert results[0].refused == frozenset({("app.example.com", None)}) and results[0].changes == 2


# --- through the writer ---------------------------------------------------------------------------


async def test_a_foreign_rule_reached_through_a_wildcard_record_is_never_overwritten(
    core: CloudflareCore, sandbox: CloudflareSandbox, cf: cloudflare.AsyncCloudflare
) -> None:
    """Issue 11 item 7b: *.example.com points at the tunnel; someone else's rule serves app.example.com
    there, without a record of its own. Our rule for app.example.com is refused; the rest of the flush
    is written."""
    account, zone = sandbox.account_id, sandbox.zone_id(ZONE)
    tunnel_id = await remote_tunnel(core, sandbox, "shared", [FOREIGN, OTHER, CATCH_ALL])
    await cf.dns.records.create(zone_id=zone, name=f"*.{ZONE}", type="CNAME", content=f"{tunnel_id}.cfargotunnel.com",
                                proxied=True, ttl=1)
    await core.ensure_dns_record(zone, DesiredRecord(f"mine.{ZONE}", "CNAME", f"{tunnel_id}.cfargotunnel.com",
                                                     source=SOURCE))
    proven = {r["name"] for r in sandbox.snapshot()["dns_records"][zone] if marks(r.get("comment"), OWNER, SOURCE)}

    def owns(rule: Mapping[str, Any]) -> bool:  # the hostname's own record is marked for the source
        return rule.get("hostname") in proven and not rule.get("path")

    before = copy.deepcopy(ingress(sandbox, tunnel_id))
    sandbox.reset_log()
    refused, mine = await asyncio.gather(
        core.set_ingress_rule(account, tunnel_id, IngressRule(f"app.{ZONE}", "http://ours:80"), owns),
        core.set_ingress_rule(account, tunnel_id, IngressRule(f"mine.{ZONE}", "http://ours:80"), owns),
        return_exceptions=True,
    )

    assert isinstance(refused, Conflict) and mine is None
    assert str(refused) == (f"app.{ZONE} in tunnel {tunnel_id}: a rule this installation cannot prove its own: "
                            "left untouched")
    after = ingress(sandbox, tunnel_id)
    assert after[0] == before[0] == FOREIGN  # byte-identical
    assert after == [FOREIGN, OTHER, {"hostname": f"mine.{ZONE}", "service": "http://ours:80"}, CATCH_ALL]
    assert (sandbox.counters["tunnels.config.get"], sandbox.counters["tunnels.config.put"]) == (1, 1)


async def test_remove_rule_reports_what_it_removed_and_leaves_what_is_not_ours(
    core: CloudflareCore, sandbox: CloudflareSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    account = sandbox.account_id
    with_path = {"hostname": "mine.example.com", "path": "^/api", "service": "http://api:80"}
    mine = {"hostname": "mine.example.com", "service": "http://ours:80"}
    tunnel_id = await remote_tunnel(core, sandbox, "removals", [FOREIGN, with_path, mine, CATCH_ALL])
    owns = ours({"mine.example.com"})

    with caplog.at_level(logging.INFO, logger=WRITER_LOG):
        left = await core.remove_ingress_rule(account, tunnel_id, "app.example.com", None, owns)
    assert left is False and ingress(sandbox, tunnel_id) == [FOREIGN, with_path, mine, CATCH_ALL]
    assert sandbox.counters["tunnels.config.put"] == 0
    assert f"Tunnel {tunnel_id}: left the rule of app.example.com in place" in caplog.text

    assert await core.remove_ingress_rule(account, tunnel_id, "mine.example.com", None, owns) is True
    assert ingress(sandbox, tunnel_id) == [FOREIGN, with_path, CATCH_ALL]  # the rule with a path is untouched
    assert await core.remove_ingress_rule(account, tunnel_id, "mine.example.com", None, owns) is False


async def test_sync_ingress_rules_reports_the_keys_it_refused(core: CloudflareCore, sandbox: CloudflareSandbox) -> None:
    account = sandbox.account_id
    tunnel_id = await remote_tunnel(core, sandbox, "sync", [FOREIGN, CATCH_ALL])
    rules = [IngressRule("app.example.com", "http://r:80"), IngressRule("s1.example.com", "http://r:80")]

    synced = await core.sync_ingress_rules(account, tunnel_id, rules, ours({"s1.example.com"}))

    assert synced == RuleSync(written=True, refused=frozenset({("app.example.com", None)}))
    assert ingress(sandbox, tunnel_id) == [FOREIGN, {"hostname": "s1.example.com", "service": "http://r:80"},
                                           CATCH_ALL]
    again = await core.sync_ingress_rules(account, tunnel_id, rules, ours({"s1.example.com"}))
    assert again == RuleSync(written=False, refused=frozenset({("app.example.com", None)}))


# --- other writers: the version check -------------------------------------------------------------


async def test_steady_state_is_one_get_and_one_put_and_counts_no_race(
    core: CloudflareCore, sandbox: CloudflareSandbox
) -> None:
    tunnel_id = await remote_tunnel(core, sandbox, "steady")
    await core.set_ingress_rule(sandbox.account_id, tunnel_id, IngressRule("a.example.com", "http://a:80"), A)
    assert sandbox.counters == {"tunnels.config.get": 1, "tunnels.config.put": 1}
    await core.set_ingress_rule(sandbox.account_id, tunnel_id, IngressRule("a.example.com", "http://a:80"), A)
    assert sandbox.counters == {"tunnels.config.get": 2, "tunnels.config.put": 1}
    assert races(tunnel_id) == 0


async def test_a_foreign_put_between_our_get_and_put_is_detected_and_cannot_be_recovered(
    core: CloudflareCore, sandbox: CloudflareSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """What the other writer PUT between our read and our write is overwritten by ours: nobody can read it
    back. We say so (WARNING, metric), read again, find our edits in place and write nothing more."""
    tunnel_id = await remote_tunnel(core, sandbox, "raced", [OTHER, CATCH_ALL])

    async def foreign() -> None:
        await foreign_put(sandbox, tunnel_id, [FOREIGN, OTHER, CATCH_ALL])

    sandbox.faults.before("tunnels.config.put", foreign)
    with caplog.at_level(logging.WARNING, logger=WRITER_LOG):
        await core.set_ingress_rule(sandbox.account_id, tunnel_id, IngressRule("a.example.com", "http://a:80"), A)

    assert races(tunnel_id) == 1
    assert f"Tunnel {tunnel_id}: another writer changed its configuration between our read (version 1)" in caplog.text
    assert hosts(sandbox, tunnel_id) == {"other.example.com", "a.example.com"}  # theirs is lost (overwritten)
    assert [r.op for r in sandbox.requests] == ["tunnels.config.get", "tunnels.config.put",  # ours, theirs
                                                "tunnels.config.put", "tunnels.config.get"]  # ours, re-read


async def test_a_new_rule_whose_write_was_raced_is_still_ours_in_the_next_round(
    core: CloudflareCore, sandbox: CloudflareSandbox
) -> None:
    """A rule new at its hostname is written with a predicate that owns nothing there yet (the ledger proved no
    earlier rule). The write lands but was raced: the next round reads our own rule back, and must not take it
    for someone else's (that refused the writer's own rule: HostnameConflict, seen with two installations
    sharing a tunnel)."""
    tunnel_id = await remote_tunnel(core, sandbox, "new-raced", [OTHER, CATCH_ALL])

    async def foreign() -> None:
        await foreign_put(sandbox, tunnel_id, [FOREIGN, OTHER, CATCH_ALL])

    sandbox.faults.before("tunnels.config.put", foreign)
    await core.set_ingress_rule(sandbox.account_id, tunnel_id, IngressRule("a.example.com", "http://a:80"), nobody)

    assert races(tunnel_id) == 1
    assert hosts(sandbox, tunnel_id) == {"other.example.com", "a.example.com"}


async def test_a_stale_foreign_put_landing_before_our_second_read_is_repaired_in_the_same_flush(
    core: CloudflareCore, sandbox: CloudflareSandbox
) -> None:
    """The other writer PUTs between our GET and PUT, then again after our PUT (its retry, from a document
    without our rule). The second read sees its document: our rule is merged back on top, its rule stays."""
    tunnel_id = await remote_tunnel(core, sandbox, "retried", [OTHER, CATCH_ALL])

    async def again() -> None:
        await foreign_put(sandbox, tunnel_id, [FOREIGN, OTHER, CATCH_ALL])

    async def foreign() -> None:
        await again()
        sandbox.faults.before("tunnels.config.get", again)  # our re-read: it PUTs again just before

    sandbox.faults.before("tunnels.config.put", foreign)
    await core.set_ingress_rule(sandbox.account_id, tunnel_id, IngressRule("a.example.com", "http://a:80"), A)

    assert races(tunnel_id) == 1
    assert ingress(sandbox, tunnel_id) == [FOREIGN, OTHER, {"hostname": "a.example.com", "service": "http://a:80"},
                                           CATCH_ALL]
    ops = [r.op for r in sandbox.requests]
    assert ops.count("tunnels.config.get") == 2 and ops.count("tunnels.config.put") == 4  # 2 ours, 2 theirs


async def test_a_failed_put_is_not_resent_over_a_foreign_edit_made_during_its_pause(
    core: CloudflareCore, sandbox: CloudflareSandbox
) -> None:
    """Our PUT refused (503) while another writer's edit lands: re-sending the same document after the pause
    would overwrite that edit (found by the soak: a 429's Retry-After of a second let the other writer's edit of
    the shared tunnel land, then lose it). The flush reads again and merges again: both edits stay, no race."""
    tunnel_id = await remote_tunnel(core, sandbox, "refused", [OTHER, CATCH_ALL])

    async def foreign() -> None:
        await foreign_put(sandbox, tunnel_id, [FOREIGN, OTHER, CATCH_ALL])
        sandbox.faults.fail(op="tunnels.config.put", status=503, count=1)  # ours, once theirs is in

    sandbox.faults.before("tunnels.config.put", foreign)
    await core.set_ingress_rule(sandbox.account_id, tunnel_id, IngressRule("a.example.com", "http://a:80"), A)

    assert ingress(sandbox, tunnel_id) == [FOREIGN, OTHER, {"hostname": "a.example.com", "service": "http://a:80"},
                                           CATCH_ALL]
    assert races(tunnel_id) == 0
    assert [(r.op, r.status) for r in sandbox.requests] == [
        ("tunnels.config.get", 200), ("tunnels.config.put", 200), ("tunnels.config.put", 503),  # theirs, ours
        ("tunnels.config.get", 200), ("tunnels.config.put", 200)]  # ours, read again and merged again


async def test_a_put_applied_whose_answer_was_lost_is_found_in_place_and_not_sent_again(
    core: CloudflareCore, sandbox: CloudflareSandbox
) -> None:
    """The write of a new rule applied, its answer lost: read again, the rule is there as we wrote it, ours (the
    predicate owned nothing at that hostname before): nothing more is sent, no race, no conflict."""
    tunnel_id = await remote_tunnel(core, sandbox, "lost", [OTHER, CATCH_ALL])
    sandbox.faults.drop_after_write("tunnels.config.put")
    await core.set_ingress_rule(sandbox.account_id, tunnel_id, IngressRule("a.example.com", "http://a:80"), nobody)

    assert hosts(sandbox, tunnel_id) == {"other.example.com", "a.example.com"}
    assert races(tunnel_id) == 0
    assert [r.op for r in sandbox.requests] == ["tunnels.config.get", "tunnels.config.put", "tunnels.config.get"]


async def test_a_stale_foreign_put_after_ours_is_repaired_by_our_next_flush(
    core: CloudflareCore, sandbox: CloudflareSandbox
) -> None:
    tunnel_id = await remote_tunnel(core, sandbox, "stale", [OTHER, CATCH_ALL])
    rule = IngressRule("a.example.com", "http://a:80")
    stale = copy.deepcopy(ingress(sandbox, tunnel_id))  # the other writer read before our flush
    await core.set_ingress_rule(sandbox.account_id, tunnel_id, rule, A)
    await foreign_put(sandbox, tunnel_id, [FOREIGN, *stale])  # ... and writes after it: our rule is gone
    assert hosts(sandbox, tunnel_id) == {"app.example.com", "other.example.com"}
    assert races(tunnel_id) == 0  # not seen: nothing is read after a PUT that answered v + 1

    await core.set_ingress_rule(sandbox.account_id, tunnel_id, rule, A)  # the door's next reconcile

    assert ingress(sandbox, tunnel_id) == [FOREIGN, OTHER, {"hostname": "a.example.com", "service": "http://a:80"},
                                           CATCH_ALL]


async def test_a_flush_raced_on_every_round_gives_up_after_max_rounds(
    core: CloudflareCore, sandbox: CloudflareSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """Another writer PUTs (without our rule) before each of our PUTs and before each of our re-reads: every
    round has something to re-apply and every PUT is raced; after `MAX_ROUNDS` the flush stops."""
    tunnel_id = await remote_tunnel(core, sandbox, "busy", [CATCH_ALL])
    foreign_writes: list[str] = []

    put, get = "tunnels.config.put", "tunnels.config.get"

    def foreign_write(armed_next: str) -> Callable[[], Awaitable[None]]:
        """A foreign PUT, then the next one armed before our next `armed_next` (our PUT, GET, PUT, ...)."""
        async def write() -> None:
            foreign_writes.append(f"f{len(foreign_writes) + 1}.example.com")
            await foreign_put(sandbox, tunnel_id, [{"hostname": foreign_writes[-1], "service": "http://f:80"},
                                                   CATCH_ALL])
            sandbox.faults.before(armed_next, foreign_write(put if armed_next == get else get))
        return write

    sandbox.faults.before(put, foreign_write(get))
    with caplog.at_level(logging.WARNING, logger=WRITER_LOG):
        await core.set_ingress_rule(sandbox.account_id, tunnel_id, IngressRule("a.example.com", "http://a:80"), A)
    sandbox.faults.clear()

    assert races(tunnel_id) == MAX_ROUNDS
    ops = [r.op for r in sandbox.requests]
    assert ops.count(get) == MAX_ROUNDS  # nothing read after the last PUT
    assert len(foreign_writes) == 2 * MAX_ROUNDS - 1 and ops.count(put) == MAX_ROUNDS + len(foreign_writes)
    assert f"gave up after {MAX_ROUNDS} rounds" in caplog.text
    # our last PUT merged ours onto the foreign write before our last read, and overwrote the one after it
    assert hosts(sandbox, tunnel_id) == {"a.example.com", foreign_writes[-2]}


# --- one writer per tunnel: several processes ------------------------------------------------------


async def test_two_processes_without_a_shared_lock_lose_an_update_the_overwriter_detects(
    sandbox: CloudflareSandbox,
) -> None:
    """Issue 11 item 7, the failure: process B's whole flush lands between A's GET and A's PUT. A sees the
    race (metric) but cannot know B's rule; B's next flush puts it back and keeps A's."""
    async with new_core(sandbox) as a, new_core(sandbox) as b:
        tunnel_id = await remote_tunnel(a, sandbox, "two-processes", [CATCH_ALL])
        rule_b = IngressRule("b.example.com", "http://b:80")

        async def process_b() -> None:
            await b.set_ingress_rule(sandbox.account_id, tunnel_id, rule_b, ours({"b.example.com"}))

        sandbox.faults.before("tunnels.config.put", process_b)
        await a.set_ingress_rule(sandbox.account_id, tunnel_id, IngressRule("a.example.com", "http://a:80"), A)
        assert races(tunnel_id) == 1 and hosts(sandbox, tunnel_id) == {"a.example.com"}

        await b.set_ingress_rule(sandbox.account_id, tunnel_id, rule_b, ours({"b.example.com"}))
        assert hosts(sandbox, tunnel_id) == {"a.example.com", "b.example.com"}


async def test_two_processes_sharing_the_tunnel_lock_lose_nothing(sandbox: CloudflareSandbox) -> None:
    """Issue 11 item 7: two cores (two processes, each its own writer) edit one tunnel concurrently; with a
    shared lock their flushes take turns and every edit survives."""
    locks = Locks()
    async with new_core(sandbox, locks.lock) as a, new_core(sandbox, locks.lock) as b:
        tunnel_id = await remote_tunnel(a, sandbox, "locked", [FOREIGN, CATCH_ALL])
        sandbox.faults.latency = 0.02  # every GET and PUT is slow: without the lock the flushes would interleave

        async def edits(core: CloudflareCore, name: str) -> None:
            for wave in range(3):
                await asyncio.gather(*(
                    core.set_ingress_rule(sandbox.account_id, tunnel_id,
                                          IngressRule(f"{name}{wave}-{i}.example.com", f"http://{name}:80"),
                                          ours({f"{name}{wave}-{i}.example.com"}))
                    for i in range(4)
                ))

        await asyncio.gather(edits(a, "a"), edits(b, "b"))
        sandbox.faults.latency = 0.0

    expected = {f"{n}{w}-{i}.example.com" for n in "ab" for w in range(3) for i in range(4)}
    assert hosts(sandbox, tunnel_id) == expected | {"app.example.com"}
    assert ingress(sandbox, tunnel_id)[0] == FOREIGN and ingress(sandbox, tunnel_id)[-1] == CATCH_ALL
    assert races(tunnel_id) == 0
    assert locks.most_holders == 1 and len(locks.held) >= 2
    assert set(locks.held) == {(sandbox.account_id, tunnel_id)}


async def test_a_lock_that_cannot_be_taken_fails_the_flush_as_transient(sandbox: CloudflareSandbox) -> None:
    @contextlib.asynccontextmanager
    async def unavailable(account_id: str, tunnel_id: str) -> AsyncIterator[None]:
        raise TimeoutError("the Lease is held elsewhere")
        yield  # pragma: no cover

    async with new_core(sandbox, unavailable) as core:
        tunnel_id = await remote_tunnel(core, sandbox, "unlockable")
        with pytest.raises(TransientError, match="could not take the lock of its configuration"):
            await core.set_ingress_rule(sandbox.account_id, tunnel_id, IngressRule("a.example.com", "http://a:80"), A)
    assert sandbox.counters["tunnels.config.get"] == 0


async def test_core_pool_hands_its_tunnel_lock_to_the_cores_it_builds() -> None:
    locks = Locks()
    pool = CorePool(Settings())
    assert pool.tunnel_lock is None
    pool.tunnel_lock = locks.lock
    core = pool.core_for("token-1")
    assert core.tunnel_lock == locks.lock
    assert core.tunnel_writer("account", "tunnel")._lock == locks.lock
    await pool.aclose()
