"""A kill at every write (issue 16 §2), for every front door: one lifecycle of the door
(:mod:`harness.kill_lifecycles`) on fresh emulators, with the operator (`chutes run`, a process of its own) killed
with SIGKILL right after the k-th write its door makes has been applied (the response hook of the emulator written
to: Cloudflare's, or the router-hosts server's for the hosts door; the write is in its state, the answer never
reaches the operator) and restarted at once. See :func:`run_once` for what is checked; used by
``bench/kill_at_every_write.py`` (every k) and ``tests/test_kill_at_write.py`` (a few)."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes

from chutes.sandbox.cloudflare import SandboxConfig, SandboxThread
from chutes.sandbox.kubernetes import KubeSandbox
from chutes.sandbox.routerhosts import RouterHostsSandbox
from harness.kill_lifecycles import DOORS, NAMESPACES
from harness.kill_world import HOST_WRITES, World, duplicates, host_entries, names
from harness.processes import run_env
from harness.protection import WRITE_METHODS, routable_without_access
from harness.replicas import Replica
from harness.world import user_client

PHASE_TIMEOUT = 90.0
SETTLE = 8.0  # seconds an operator restarted after the lifecycle is watched (its start and first passes)
SLOW_PHASE = 50.0  # over a dead holder's tunnel Lease (30 s) and a restart; under the orphan sweeps' first pass (60 s
# after a start): a phase slower than this waited for a periodic pass (the bench says so)


@dataclass
class Run:
    kill_at: int | None  # the 1-based write after which the operator is killed (None: never)
    writes: list[str] = field(default_factory=list)  # the writes the emulator answered, in order
    unprotected: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    kills: int = 0
    phases: list[tuple[str, float]] = field(default_factory=list)  # each phase and the seconds it took to converge
    end: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


@contextlib.contextmanager
def _routerhosts(wanted: bool) -> Iterator[Any]:
    if not wanted:
        yield None
        return
    with RouterHostsSandbox() as server:
        yield server


def run_once(kill_at: int | None, door: str = "gateway") -> Run:
    """One lifecycle of `door` (a key of DOORS), the operator killed right after write `kill_at`. Checked: every
    phase converges (else a problem); no duplicate, after every write answered and at the end of each phase; the
    door's protected hostnames never routable without their Access application (checked after every Cloudflare write
    answered); `end`: both servers and the ledger as names, for comparing with a run without a kill."""
    spec = DOORS[door]
    run = Run(kill_at)
    started = time.monotonic()
    with SandboxThread(SandboxConfig.default()) as cf, _routerhosts(spec.routerhosts) as rh, \
            KubeSandbox(namespaces=NAMESPACES) as kube:
        client = user_client(kube.kubeconfig)
        core, apps = kubernetes.client.CoreV1Api(client), kubernetes.client.AppsV1Api(client)
        custom = kubernetes.client.CustomObjectsApi(client)
        lock = threading.Lock()
        operator: Replica | None = None

        def wrote(name: str) -> None:  # an emulator's thread, right after a write was applied, before its answer
            with lock:
                run.writes.append(name)
                if kill_at is not None and len(run.writes) == kill_at and operator is not None:
                    operator.kill()
                    run.kills += 1

        def answered(event: Any) -> None:
            if event.method in WRITE_METHODS and event.status < 400 and not spec.routerhosts:
                wrote(str(event.op))
            if event.method in WRITE_METHODS:  # the state between two answers: never unprotected, never doubled
                view = names(cf)
                if found := routable_without_access(cf.snapshot(), spec.protected):
                    run.unprotected.append(f"after {event.method} {event.op}: {found}")
                if found := duplicates(view):
                    run.problems.append(f"after {event.method} {event.op}: duplicates {found}")

        def answered_rpc(record: Any) -> None:
            if record.rpc in HOST_WRITES and record.code == "OK":
                wrote(record.rpc)
                if found := duplicates({**names(cf), "hosts": host_entries(rh)}):
                    run.problems.append(f"after {record.rpc}: duplicates {found}")

        def wait(what: str, done: Callable[[], bool]) -> bool:
            began = time.monotonic()
            deadline = began + PHASE_TIMEOUT
            while not done():
                if operator is not None and operator.dead():
                    operator.start()  # a restart, as the Deployment's kubelet would
                for deployment in apps.list_deployment_for_all_namespaces().items:  # no controller in the emulator
                    want = deployment.spec.replicas or 0
                    if deployment.status is None or (deployment.status.available_replicas or 0) != want:
                        apps.patch_namespaced_deployment_status(
                            deployment.metadata.name, deployment.metadata.namespace,
                            {"status": {"replicas": want, "availableReplicas": want, "readyReplicas": want}})
                if time.monotonic() > deadline:
                    run.problems.append(f"{what}: not converged in {PHASE_TIMEOUT:g} s (at the end: {world.view()})")
                    return False
                time.sleep(0.1)
            run.phases.append((what, time.monotonic() - began))
            if dup := duplicates(world.view()):
                run.problems.append(f"{what}: duplicates {dup}")
            return True

        world = World(core, custom, cf, rh, wait)
        flags, environ = spec.setup(world)
        log = os.environ.get("KILL_AT_WRITE_LOG")  # a file for the operator's output (its level: CHUTES_LOG_LEVEL)
        operator = Replica("operator", run_env(kube, cf) | {"CHUTES_LOG_LEVEL": os.environ.get(
            "CHUTES_LOG_LEVEL", "ERROR")} | environ, ("--standalone", *spec.flags, *flags), Path(log) if log else None)
        cf.on_response = answered
        if rh is not None:
            rh.on_response = answered_rpc
        operator.start()
        try:
            spec.lifecycle(world)
            run.end = world.view()
            if operator.dead():  # killed at the lifecycle's last write: its restart must leave the end state alone
                operator.start()
                deadline = time.monotonic() + SETTLE
                while time.monotonic() < deadline and not run.problems:
                    if (now := world.view()) != run.end:
                        run.problems.append(f"the restarted operator changed the end state: {now} vs {run.end}")
                    time.sleep(0.2)
        finally:
            cf.on_response = None
            if rh is not None:
                rh.on_response = None
            operator.stop()
            client.close()
    run.seconds = time.monotonic() - started
    return run
