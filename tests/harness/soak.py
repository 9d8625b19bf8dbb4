"""The soak (issue 16 §1): two `chutes run` replicas (processes, kopf peering, every front door on) against the
Kubernetes, Cloudflare and router-hosts (mutual TLS) emulators, foreign objects and entries in place, faults all
along (Cloudflare: 5xx, 429 with Retry-After, writes applied and then their answer dropped, 20 ms latency;
router-hosts: UNAVAILABLE, INTERNAL, writes applied and their answer lost, 20 ms latency), a replica killed with
SIGKILL and restarted every few dozen events (once both at once), another writer editing the shared tunnel's
configuration and another admin a foreign router-hosts entry, N seeded random events (:mod:`harness.soak_events`).
Then faults off, and the end state checked by reading the emulators (:mod:`harness.soak_checks`,
:mod:`harness.soak_hosts`) against a clean run of the final objects, which runs meanwhile on emulators of its own.
`bench/soak.py` prints its figures; `tests/test_soak.py` runs a bounded one."""

from __future__ import annotations

import dataclasses
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cloudflare

from chutes.sandbox.cloudflare import SandboxThread
from chutes.sandbox.kubernetes import KubeSandbox
from chutes.sandbox.routerhosts import RouterHostsSandbox
from harness import soak_checks as checks
from harness import soak_hosts as hosts
from harness.openapi import SchemaWatch
from harness.protection import ProtectionWatch
from harness.replicas import Replica
from harness.soak_events import Events, Slot, apply_final
from harness.soak_world import (
    NAMESPACES,
    PEERING,
    Foreign,
    Kube,
    foreign_sdk,
    put_base_objects,
    put_foreign_objects,
    replica_env,
    sandbox_config,
)

CONVERGE_TIMEOUT = 120.0
WIND_DOWN = 30  # the last events change sources only (what they stand on is restored before them)
REFERENCE_QUIET = 4.0


@dataclass
class Report:
    seed: int
    events: int = 0
    event_kinds: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    kills: list[str] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    converge_seconds: float | None = None
    events_seconds: float = 0.0  # from the first event to the last
    checks: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0
    protected_checks: int = 0
    schema_checks: int = 0  # the Cloudflare emulator's answers validated against Cloudflare's published schema
    schema_seconds: float = 0.0  # the time it took

    @property
    def failed(self) -> list[str]:
        return [name for name, found in self.checks.items() if found]


class ForeignWriter:
    """Someone else editing the shared tunnel's configuration: the service of its rule ``legacy.example.com`` changes
    each time; `foreign.foreign_rules` is kept what it last wrote. Careful (the default): its read and its write land
    at once in the emulator (no one writes in between). Careless: a read, then a PUT of the whole document through
    the API, as a dashboard does: when the operator writes in between, that write is undone (a rule it removed comes
    back, unprovable by then: see the README's co-owned tunnels)."""

    def __init__(self, cf: Any, foreign: Foreign, careless: bool = False) -> None:
        self.cf, self.foreign, self.careless, self.writes = cf, foreign, careless, 0

    def _service(self, rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
        service = f"http://legacy.internal:{8000 + self.writes}"
        return [dict(r, service=service) if r.get("hostname") == "legacy.example.com" else r for r in rules]

    def edit(self) -> None:
        self.foreign.foreign_rules = self._service(self.foreign.foreign_rules)  # from now on: applied, or about to be
        if not self.careless:
            self.cf.edit_tunnel_config(self.foreign.shared, lambda config: {
                **config, "ingress": self._service(config.get("ingress") or [])})
            self.writes += 1
            return
        account = self.cf.account_id
        with foreign_sdk(self.cf) as sdk:
            configs = sdk.zero_trust.tunnels.cloudflared.configurations
            for _ in range(20):  # faults are on: retried until the edit is in place
                try:
                    config = configs.get(self.foreign.shared, account_id=account).config
                    document = config.to_dict() if config is not None else {}
                    configs.update(self.foreign.shared, account_id=account,
                                   config={**document, "ingress": self._service(document.get("ingress", []))})  # type: ignore[arg-type]
                    self.writes += 1
                    return
                except (cloudflare.APIError, cloudflare.APIConnectionError):
                    time.sleep(0.2)


def _faults_on(cf: Any, seed: int) -> None:
    cf.faults.latency = 0.02
    cf.faults.fail(status=500, rate=0.03, seed=seed)
    cf.faults.fail(status=503, rate=0.02, seed=seed + 1)
    cf.faults.rate_limit_randomly(0.02, retry_after=1, seed=seed + 2)
    cf.faults.drop_writes_randomly(0.01, seed=seed + 3)


def _writes(cf: Any, rh: Any) -> int:
    return sum(1 for r in cf.requests if r.method != "GET" and r.status < 400) + hosts.writes(rh)


def _count_faults(cf: Any, report: Report) -> None:
    for record in cf.requests:
        report.calls["operator" if record.token_name == "operator" else "foreign writer"] += 1
        if record.method != "GET" and record.status < 400:
            report.calls["writes"] += 1
        if record.status >= 500:
            report.faults["5xx"] += 1
        elif record.status == 429:
            report.faults["429 (Retry-After: 1)"] += 1
        if record.dropped:
            report.faults["write applied, answer dropped"] += 1


def reference_run(slots: list[Slot], entry_ids: list[str], workdir: Path, out: dict[str, Any]) -> None:
    """The final objects on fresh emulators (the same foreign objects; the foreign router-hosts entries with the
    soak's ids), one replica, no fault, no kill: what converged there is what the soak must end with (once every
    wanted hostname has its record and every wanted host its entry, and then no write for a while: a quiet moment
    alone may be a source waiting for a retry, e.g. for its Tunnel to be ready). Sets ``out['items']`` (or
    ``out['error']``)."""
    try:
        with SandboxThread(sandbox_config()) as cf, KubeSandbox(namespaces=NAMESPACES) as kube, \
                RouterHostsSandbox() as rh:
            kube.seed("kopf.dev/v1/clusterkopfpeerings", {"metadata": {"name": PEERING}})
            foreign = put_foreign_objects(cf)
            hosts.put_foreign_entries(rh, foreign, entry_ids)
            k = Kube(kube)
            replica = Replica("reference", replica_env(kube, cf, rh, foreign, "reference"), (),
                              workdir / "reference.log")
            try:
                put_base_objects(k, cf, foreign)
                apply_final(k, cf, foreign, slots)
                before, hostnames = _writes(cf, rh), {slot.hostname for slot in slots if slot.cloudflare}
                replica.start()
                _settle(cf, rh, k, REFERENCE_QUIET, CONVERGE_TIMEOUT, [replica],
                        lambda: _writes(cf, rh) > before and hostnames <= _record_names(cf)
                        and not hosts.entry_problems(rh, k, foreign))
                out["items"] = checks.ours(cf.snapshot(), foreign) + hosts.ours(rh, foreign)
                out["crashes"] = replica.crashes
            finally:
                replica.stop()
                k.close()
    except Exception as exc:
        out["error"] = repr(exc)


def _record_names(cf: Any) -> set[str]:
    return {str(record["name"]) for zone in cf.snapshot()["dns_records"].values() for record in zone}


def _ready(k: Kube, timeout: float = 60.0) -> None:
    """The operator up and serving: the ChuteConfig Ready."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        config = k.custom.get_cluster_custom_object("chutes.troubleshat.com", "v1alpha1", "chuteconfigs", "default")
        if (config.get("status") or {}).get("ready"):
            return
        time.sleep(0.2)
    raise AssertionError(f"the ChuteConfig was not Ready within {timeout:g} s of the replicas' start")


def _settle(cf: Any, rh: Any, k: Kube, quiet: float, timeout: float, replicas: list[Replica],
            done: Callable[[], bool] = lambda: True) -> bool:
    """Play the Deployment controller and restart dead replicas until no write (to Cloudflare or router-hosts) for
    `quiet` s and `done()`."""
    deadline = time.monotonic() + timeout
    last, since = _writes(cf, rh), time.monotonic()
    while time.monotonic() < deadline:
        for replica in replicas:
            replica.revive()
        k.connectors_up()
        time.sleep(0.3)
        now = _writes(cf, rh)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet and done():
            return True
    return False


def run(events: int, seed: int, workdir: Path, *, pace: float = 0.15, say: Callable[[str], None] = lambda _: None,
        careless_writer: bool = False, tunnel_deletes: bool = True, service_moves: bool = True) -> Report:
    """The soak; `say` gets one line per event, kill and phase; `tunnel_deletes`: Tunnel t1 is among what is deleted
    and restored; `service_moves`: annotated Services are switched between Tunnels (also written to
    `workdir`/soak.log, with the replicas' logs and, at the end, the Cloudflare emulator's request log,
    requests.jsonl, and the router-hosts one's, routerhosts.jsonl)."""
    report = Report(seed)
    journal = (workdir / "soak.log").open("w", buffering=1)

    def said(line: str) -> None:
        journal.write(f"{time.strftime('%H:%M:%S')} {line}\n")
        say(line)

    started = time.monotonic()
    rng = random.Random(seed ^ 0x5EED)
    with SandboxThread(sandbox_config()) as cf, KubeSandbox(namespaces=NAMESPACES) as kube, \
            RouterHostsSandbox() as rh:
        kube.seed("kopf.dev/v1/clusterkopfpeerings", {"metadata": {"name": PEERING}})
        foreign = put_foreign_objects(cf)
        entry_ids = hosts.put_foreign_entries(rh, foreign)
        k = Kube(kube)
        put_base_objects(k, cf, foreign)
        generator = Events(k, cf, foreign, seed, tunnel_deletes=tunnel_deletes, service_moves=service_moves)
        protection = ProtectionWatch(cf, lambda: generator.protected)
        schema = SchemaWatch()  # every answer, faults included, as Cloudflare's published schema has it

        def answered(event: Any) -> None:
            protection(event)
            schema(event)

        cf.on_response = answered
        replicas = [Replica(name, replica_env(kube, cf, rh, foreign, name), (), workdir / f"{name}.log")
                    for name in ("replica-a", "replica-b")]
        writer = ForeignWriter(cf, foreign, careless_writer)
        try:
            for replica in replicas:
                replica.start()
                time.sleep(0.05)  # distinct 'auto' priorities: a is active, b on standby
            _ready(k)
            _faults_on(cf, seed)
            hosts.faults_on(rh, seed)
            said(f"soak seed={seed}: {events} events, faults on")
            first_event = time.monotonic()
            next_kill, both_at = rng.randint(20, 40), events // 2
            for number in range(1, events + 1):
                if number == events - WIND_DOWN:
                    generator.restore_all()
                    said("      what sources stand on is restored, and deleted no more")
                said(f"{number:>5} {generator.step()}")
                if number == both_at:
                    for replica in replicas:
                        replica.kill()
                    report.kills.append(f"both at event {number}")
                    said("      kill both replicas")
                elif number >= next_kill:
                    victim = replicas[len(report.kills) % 2]
                    victim.kill()
                    report.kills.append(f"{victim.name} at event {number}")
                    said(f"      kill {victim.name}")
                    next_kill = number + rng.randint(20, 40)
                if number % 15 == 0:
                    writer.edit()
                    hosts.edit_foreign_entry(rh, foreign, writer.writes)
                    said("      foreign writer edited the shared tunnel's configuration, an admin printer.lan")
                if number % 5 == 0:
                    k.connectors_up()
                time.sleep(pace)
                for replica in replicas:
                    replica.revive()
            generator.restore_all()
            report.events = events
            report.event_kinds = generator.counts
            last_event = time.monotonic()
            report.events_seconds = last_event - first_event
            reference: dict[str, Any] = {}
            referee = threading.Thread(target=reference_run, args=(generator.wanted(), entry_ids, workdir, reference),
                                       name="soak-reference")
            referee.start()
            cf.faults.clear()
            rh.faults.clear()
            said("faults off; the reference run started; waiting for the end state")
            deadline = time.monotonic() + CONVERGE_TIMEOUT
            while generator.pending and time.monotonic() < deadline:  # recreates waiting for a deletion to finish
                time.sleep(0.3)
                generator.retry_pending()
            said("every object wanted exists")
            referee.join(CONVERGE_TIMEOUT + 30)
            if "items" not in reference:
                report.checks["reference run"] = [reference.get("error", "did not finish")]
                return report

            def converged() -> bool:
                state = cf.snapshot()
                found = checks.compare(checks.ours(state, foreign) + hosts.ours(rh, foreign), reference["items"])
                return not any(found.values()) and not checks.foreign_changes(state, foreign) and not (
                    hosts.foreign_changes(rh, foreign) or hosts.entry_problems(rh, k, foreign))

            if _settle(cf, rh, k, 1.0, max(deadline - time.monotonic(), 10.0), replicas, converged):
                report.converge_seconds = time.monotonic() - last_event
            said(f"converged {report.converge_seconds:.1f} s after the last event" if report.converge_seconds
                 is not None else "not converged")
            state = cf.snapshot()
            report.checks = checks.compare(checks.ours(state, foreign) + hosts.ours(rh, foreign), reference["items"])
            report.checks["router-hosts entries"] = hosts.entry_problems(rh, k, foreign)
            report.checks["foreign objects changed"] = checks.foreign_changes(state, foreign) + hosts.foreign_changes(
                rh, foreign)
            report.checks["unprotected moments"] = list(protection.moments)
            report.protected_checks = protection.checked
            report.checks["answers off Cloudflare's schema"] = list(schema.problems)
            report.schema_checks, report.schema_seconds = schema.checked, schema.seconds
            logs = {f"log of {r.name}": r.output() for r in replicas}
            report.checks["secrets exposed"] = checks.leaks(checks.canaries(cf, k) | hosts.key_canaries(rh.key),
                                                            checks.exposed_text(k) | logs)
            report.checks["crashes"] = [f"{r.name}: {c}" for r in replicas for c in r.crashes] + [
                f"reference: {c}" for c in reference.get("crashes", [])]
            report.checks["not converged"] = [] if report.converge_seconds is not None else [
                f"no end state within {CONVERGE_TIMEOUT:g} s"]
            for name, found in report.checks.items():
                said(f"check {name}: {'FAIL' if found else 'ok'}" + "".join(f"\n    {line}" for line in found))
        finally:
            cf.on_response = None
            for replica in replicas:
                replica.stop()
            _count_faults(cf, report)
            hosts.count(rh, report.calls, report.faults)
            with (workdir / "requests.jsonl").open("w") as out:
                for record in cf.requests:
                    out.write(json.dumps(record.as_dict()) + "\n")
            with (workdir / "routerhosts.jsonl").open("w") as out:
                for rpc in rh.requests:
                    out.write(json.dumps(dataclasses.asdict(rpc)) + "\n")
            journal.close()
            k.close()
            report.seconds = time.monotonic() - started
    return report
