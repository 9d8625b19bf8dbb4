"""Who the operator was, and what it asked the cluster: every Kubernetes API call the in-process operators
made during the session, filed per configuration (front doors, watched namespaces, peering) by the ``kube``
fixture after each test, for the chart's RBAC check (:mod:`harness.rbac_check`). A pytest plugin (loaded by
tests/conftest.py).

At the end of a session the record is written to ``build/rbac-calls.json``. Under pytest-xdist each worker
records its own tests' calls and hands its record (as JSON) to the controller in ``workeroutput``; the
controller merges them, writes the merged record, and checks the chart against the whole run's calls: a call
the chart denies, or (when the run collected the whole suite) a permission no call used, fails the run with
a failed report of its own, as ``test_chart_rbac.py``'s last test fails a serial run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from chutes.sandbox.kubernetes import ApiCall

REPO = Path(__file__).resolve().parents[2]
CALLS_FILE = REPO / "build" / "rbac-calls.json"
WORKER_OUTPUT = "chutes_rbac_calls"  # the key of a pytest-xdist worker's record in its workeroutput


@dataclass(frozen=True)
class OperatorProfile:
    """What decides the operator's RBAC needs: front doors, watched namespaces (empty: cluster-wide),
    peering, and the namespaces its front doors were told to use (``*_NAMESPACE`` variables)."""

    front_doors: tuple[str, ...]
    namespaces: tuple[str, ...]
    peering: bool
    door_namespaces: tuple[tuple[str, str], ...] = ()
    peering_name: str | None = None  # kopf's object; "default" when peering is on but not named

    def merge(self, other: OperatorProfile) -> OperatorProfile:
        """One profile covering both (a test that ran differently configured operators)."""
        return OperatorProfile(
            front_doors=tuple(sorted(set(self.front_doors) | set(other.front_doors))),
            namespaces=() if not self.namespaces or not other.namespaces
            else tuple(sorted(set(self.namespaces) | set(other.namespaces))),
            peering=self.peering or other.peering,
            door_namespaces=tuple(sorted(set(self.door_namespaces) | set(other.door_namespaces))),
            peering_name=self.peering_name or other.peering_name,
        )

    def as_dict(self) -> dict[str, Any]:
        return {"frontDoors": list(self.front_doors), "namespaces": list(self.namespaces), "peering": self.peering,
                "peeringName": self.peering_name, "doorNamespaces": dict(self.door_namespaces)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OperatorProfile:
        return cls(tuple(data["frontDoors"]), tuple(data["namespaces"]), bool(data["peering"]),
                   tuple(sorted(data["doorNamespaces"].items())), data["peeringName"])


CALL_FIELDS = tuple(f.name for f in dataclasses.fields(ApiCall))


@dataclass
class ApiCallRecord:
    """Every operator API call of the session, per profile, with the first test that made it."""

    calls: dict[OperatorProfile, Counter[ApiCall]] = field(default_factory=dict)
    first_seen: dict[tuple[OperatorProfile, ApiCall], str] = field(default_factory=dict)
    unattributed: dict[str, int] = field(default_factory=dict)  # test id -> calls made by no known operator

    def add(self, profile: OperatorProfile, calls: Mapping[ApiCall, int], test: str) -> None:
        counter = self.calls.setdefault(profile, Counter())
        for call, count in calls.items():
            counter[call] += count
            self.first_seen.setdefault((profile, call), test)

    def update(self, other: ApiCallRecord) -> None:
        """Add `other`'s calls (another pytest-xdist worker's) to this record."""
        for profile, calls in other.calls.items():
            for call, count in calls.items():
                self.add(profile, {call: count}, other.first_seen[(profile, call)])
        for test, count in other.unattributed.items():
            self.unattributed[test] = self.unattributed.get(test, 0) + count

    def as_json(self) -> dict[str, Any]:
        rows = []
        for profile in sorted(self.calls, key=repr):
            for call, count in sorted(self.calls[profile].items(), key=lambda item: _sort_key(item[0])):
                rows.append({"profile": profile.as_dict(), **call.as_dict(), "count": count,
                             "firstTest": self.first_seen[(profile, call)]})
        return {"calls": rows, "unattributed": dict(self.unattributed)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ApiCallRecord:
        record = cls(unattributed=dict(data.get("unattributed") or {}))
        for row in data.get("calls") or ():
            call = ApiCall(**{name: row[name] for name in CALL_FIELDS})
            record.add(OperatorProfile.from_dict(row["profile"]), {call: int(row["count"])}, row["firstTest"])
        return record


def _sort_key(call: ApiCall) -> tuple[str, ...]:
    return tuple("" if value is None else str(value) for value in call.as_dict().values())


RECORD = ApiCallRecord()  # this process's (a worker's, under pytest-xdist)
_profiles: list[OperatorProfile] = []  # operators started during the current test


def _profile_of(settings: Any, environ: Mapping[str, str]) -> OperatorProfile:
    from chutes import runtime
    from chutes.claims import ledger_namespace

    doors = runtime.served_front_doors(settings, environ)
    namespaces = settings.namespaces or runtime.implied_namespaces(settings, environ)
    # The ledger's namespace as the operator resolves it (setting, OPERATOR_NAMESPACE, its own, default).
    ledger = ("CHUTES_LEDGER_NAMESPACE", ledger_namespace(settings.ledger_namespace, environ))
    door_namespaces = tuple(sorted({(k, v) for k, v in environ.items()
                                    if k.endswith("NAMESPACE") and v and k != ledger[0]} | {ledger}))
    peering_name = None if settings.standalone else settings.peering or "default"
    return OperatorProfile(tuple(sorted(doors)), tuple(sorted(namespaces)), not settings.standalone, door_namespaces,
                           peering_name)


@pytest.fixture()
def operator_profiles(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[OperatorProfile]]:
    """The configurations of the operators started in-process during the test (``chutes.runtime.run``)."""
    from chutes import runtime

    original = runtime.run

    async def recording_run(settings: Any, environ: Mapping[str, str], **kwargs: Any) -> None:
        with contextlib.suppress(Exception):  # a bad configuration: the real run reports it
            _profiles.append(_profile_of(settings, environ))
        await original(settings, environ, **kwargs)

    _profiles.clear()
    monkeypatch.setattr(runtime, "run", recording_run)
    yield _profiles
    _profiles.clear()


def file_operator_calls(sandbox: Any, test: str) -> None:
    """File the calls made under the operator's token on `sandbox` (a KubeSandbox) during `test`."""
    from chutes.sandbox.kubernetes import OPERATOR_TOKEN

    calls = sandbox.api_calls(OPERATOR_TOKEN)
    if not calls:
        return
    if not _profiles:
        RECORD.unattributed[test] = RECORD.unattributed.get(test, 0) + sum(calls.values())
        return
    profile = _profiles[0]
    for other in _profiles[1:]:
        profile = profile.merge(other)
    RECORD.add(profile, calls, test)


@pytest.fixture(scope="session")
def operator_api_calls() -> ApiCallRecord:
    """This process's record of the operator's Kubernetes API calls (the session's, unless under pytest-xdist)."""
    return RECORD


def whole_suite(session: pytest.Session) -> bool:
    """Whether this session collected every test file, unfiltered (no -k, -m, --deselect, no single tests);
    a pytest-xdist worker collects what its controller was asked to run."""
    option = session.config.option
    if getattr(option, "keyword", "") or getattr(option, "markexpr", "") or getattr(option, "deselect", None):
        return False
    if any("::" in str(arg) for arg in session.config.args):
        return False
    collected = {item.path.resolve() for item in session.items}
    return all(path.resolve() in collected for path in (REPO / "tests").glob("test_*.py"))


def write_calls(record: ApiCallRecord) -> None:
    if record.calls or record.unattributed:
        CALLS_FILE.parent.mkdir(exist_ok=True)
        CALLS_FILE.write_text(json.dumps(record.as_json(), indent=1) + "\n", encoding="utf-8")


# --- the session's end: this process's record, or every worker's -------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    if config.pluginmanager.hasplugin("xdist") and not hasattr(config, "workerinput"):
        config.pluginmanager.register(WorkersRecord(), "chutes-rbac-workers")


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # a pytest-xdist worker: the controller merges and writes
        workeroutput[WORKER_OUTPUT] = {"record": RECORD.as_json(), "complete": whole_suite(session)}
    else:
        write_calls(RECORD)


class WorkersRecord:
    """The pytest-xdist controller's side: every worker's record merged, and the chart checked against it."""

    def __init__(self) -> None:
        self.record = ApiCallRecord()
        self.reported = 0
        self.lost: list[str] = []  # workers that went down without their record (crashed)
        self.complete = True  # every worker collected the whole suite, and none was lost

    def pytest_testnodedown(self, node: Any, error: object) -> None:
        output = getattr(node, "workeroutput", None) or {}
        if error or WORKER_OUTPUT not in output:
            self.lost.append(str(getattr(node.gateway, "id", node)))
            self.complete = False
            return
        self.reported += 1
        self.record.update(ApiCallRecord.from_json(output[WORKER_OUTPUT]["record"]))
        self.complete = self.complete and bool(output[WORKER_OUTPUT]["complete"])

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not self.reported and not self.lost:
            return  # not distributed (-n 0): the serial check ran as a test
        write_calls(self.record)
        if not self.record.calls and not self.record.unattributed:
            return
        from harness.rbac_check import check, write_unused

        verdict = check(self.record, complete=self.complete)
        write_unused(verdict)
        lost = f"; no record from worker(s) {', '.join(self.lost)}" if self.lost else ""
        scope = "the whole suite" if self.complete else f"not the whole suite (unused permissions not failed){lost}"
        text = "\n".join([f"{verdict.summary()}, over {self.reported} workers' calls: {scope}",
                          *(f"  never used: {line}" for line in verdict.unused), *verdict.failures()])
        outcome = "failed" if verdict.failures() else "passed"
        report = pytest.TestReport(
            "tests/test_chart_rbac.py::every worker's calls (pytest-xdist controller)",
            ("tests/test_chart_rbac.py", 0, "the chart's RBAC over every worker's calls"), {}, outcome,
            text if outcome == "failed" else None, "call", sections=[] if outcome == "failed" else [("RBAC", text)])
        session.config.hook.pytest_runtest_logreport(report=report)
        if outcome == "failed":
            session.testsfailed += 1
            if session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
