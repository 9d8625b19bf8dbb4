"""The bad-input corpus of the router-hosts door (issue 16 §3; ``tests/data/bad-inputs/hosts/``, the format of
``tests/data/bad-inputs/README.md`` plus ``entries``: entries made by hand in the router-hosts server before the
operator starts). Every file applied at once, with valid objects alongside, to the operator serving the door
against the Kubernetes emulator and the router-hosts emulator (mutual TLS).

Asserted per file (a failure names it): the bad object gets the reason the file expects (a HostMapping's
``Ready`` condition and a Warning Event; a Warning Event on a route, which has no status of ours; or a refusal at
admission by our CRD's schema, after which the object is applied anyway, as if admission had been bypassed, and
must get the file's ``bypass`` reason); no entry carries its comment (unless ``publishes``); each valid object is
registered. For the whole run: the operator thread is alive, no handler crashed, and a quiet period costs no
write and almost no call to the server, whatever the number of bad objects."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from harness.corpus import CORPUS, MAX_WARNINGS_PER_OBJECT, Entry, load
from harness.hosts import GROUP, PLURAL, PLURALS, TRAEFIK, WRITES, HostsWorld
from harness.manifests import validate_custom
from harness.waiting import wait_quiet

HOSTS = CORPUS / "hosts"
CONVERGE_TIMEOUT = 60.0
QUIET_PERIOD = 3.0
MAX_QUIET_CALLS = 2  # over QUIET_PERIOD, for every object together (no resync is due)


def comment_of(obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    prefix = "k8s" if obj["kind"] == "HostMapping" else "k8s-ingress"
    return f"{prefix}:{meta['namespace']}/{meta['name']}"


class World(HostsWorld):
    def apply(self, obj: dict[str, Any]) -> None:
        namespace = obj["metadata"]["namespace"]
        self.namespace(namespace)
        if obj["kind"] == "HostMapping":
            self.custom.create_namespaced_custom_object(GROUP, "v1alpha1", namespace, PLURAL, obj)
        else:
            self.custom.create_namespaced_custom_object(*TRAEFIK, namespace, PLURALS[obj["kind"]], obj)

    def read(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        meta = obj["metadata"]
        try:
            if obj["kind"] == "HostMapping":
                return dict(self.get_mapping(meta["name"], meta["namespace"]))
            return dict(self.get_route(meta["name"], meta["namespace"], obj["kind"]))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def warnings(self, obj: dict[str, Any]) -> list[tuple[str, str]]:
        meta = obj["metadata"]
        return [(reason, message) for type_, reason, message in self.events(meta["name"], meta["namespace"])
                if type_ == "Warning"]


def problems_of(world: World, entry: Entry) -> list[str]:
    """What is not (yet) as the file expects; empty when it is."""
    subject, expect, via = entry.subject, entry.expect, entry.via
    reason, message = expect.get("reason"), expect.get("message")
    ours = [e for e in world.rh.entries() if e.comment == comment_of(subject)]
    problems: list[str] = []
    if via == "published":
        if not any(e.hostname == expect["hostname"] for e in ours):
            problems.append(f"no entry {expect['hostname']} with comment {comment_of(subject)}")
        if subject["kind"] == "HostMapping" and HostsWorld.condition(world.read(subject) or {}).get("status") != "True":
            problems.append(f"not Ready: {HostsWorld.condition(world.read(subject) or {})}")
        return problems
    if via == "condition":
        ready = HostsWorld.condition(world.read(subject) or {})
        if (ready.get("status"), ready.get("reason")) != ("False", reason):
            problems.append(f"Ready is {ready.get('status')}/{ready.get('reason')}, expected False/{reason}: "
                            f"{ready.get('message')}")
    warnings = world.warnings(subject)
    if not any(r == reason and (not message or message in m) for r, m in warnings):
        problems.append(f"no Warning Event {reason}{' saying ' + repr(message) if message else ''}; got {warnings}")
    if len(warnings) > MAX_WARNINGS_PER_OBJECT:
        problems.append(f"{len(warnings)} Warning Events: {warnings}")
    if ours and not expect.get("publishes"):
        problems.append(f"registered anyway: {[(e.hostname, e.ip) for e in ours]}")
    return problems


def admitted(world: World, entry: Entry) -> list[str]:
    """Apply the file's objects; the subject of an ``apiserver`` file must be refused by the CRD's schema."""
    problems: list[str] = []
    for index, obj in enumerate(entry.objects):
        if index == 0 and entry.via == "apiserver":
            errors = validate_custom(obj)
            message = entry.expect.get("message", "")
            if not errors:
                problems.append("admitted by the CRD schema")
            elif message and not any(message in error for error in errors):
                problems.append(f"refused for another reason: {errors}")
        world.apply(obj)  # an apiserver file's subject too: as if admission were bypassed (see `bypass`)
    return problems


def converge(world: World, entries: list[Entry]) -> dict[str, list[str]]:
    deadline = time.monotonic() + CONVERGE_TIMEOUT
    while True:
        pending = {entry.name: problems for entry in entries if (problems := problems_of(world, entry))}
        if not pending or time.monotonic() > deadline:
            return pending
        time.sleep(0.3)


@pytest.fixture(name="world")
def world_fixture(kube: Any, routerhosts: Any) -> Iterator[World]:
    world = World(kube, routerhosts)
    try:
        yield world
    finally:
        world.close()


def test_every_bad_host_input_gets_its_reason_and_the_valid_ones_are_registered(
        world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    entries = [load(path, {}) for path in sorted(HOSTS.glob("*.yaml"))]
    assert len(entries) >= 20
    for entry in entries:
        for made in entry.raw.get("entries") or []:
            world.rh.put_entry(made["ip"], made["hostname"], made["comment"])
    world.start()

    holders = [Entry(e.path, {"via": "published", "hostname": obj["spec"]["hostname"]}, [obj])
               for e in entries for obj in e.before]
    for holder in holders:
        world.apply(holder.subject)
    assert not converge(world, holders), "the holders were not registered"

    failures = {entry.name: problems for entry in entries if (problems := admitted(world, entry))}
    judged = [entry for entry in entries if entry.via != "apiserver"]
    judged += [entry.bypassed() for entry in entries if entry.via == "apiserver" and entry.bypass]
    failures.update(converge(world, judged))
    assert not failures, "\n".join(f"{name}: {'; '.join(problems)}" for name, problems in sorted(failures.items()))

    # No hot loop: once the server has had no call for a second, a quiet period costs no write and almost no call.
    wait_quiet("calls to the router-hosts server", lambda: len(world.rh.requests), 1.0, 15.0, 0.1)
    before = len(world.rh.requests)
    time.sleep(QUIET_PERIOD)  # a fixed interval on purpose: (almost) nothing may happen in it
    quiet = [r.rpc for r in world.rh.requests[before:]]
    assert len(quiet) <= MAX_QUIET_CALLS and not set(quiet) & set(WRITES), f"calls while quiet: {quiet}"
    still = {entry.name: p for entry in judged if (p := problems_of(world, entry))}
    assert not still, f"changed after convergence: {still}"

    assert world.operator is not None and world.operator.alive
    crashes = [f"{r.name}: {r.getMessage()}" for r in caplog.records
               if r.exc_info or "failed with an exception" in r.getMessage() or "Traceback" in r.getMessage()]
    assert not crashes, "\n".join(crashes)
