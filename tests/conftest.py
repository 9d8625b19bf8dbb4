"""Shared test setup: the package root is ``<repo>/operator`` (no install needed), both emulators as
fixtures, and no ambient Cloudflare credentials.

It also records, for the chart's RBAC test, every Kubernetes API call the operator makes: the ``kube``
fixture points ``KUBECONFIG`` (what the operator reads) at a kubeconfig with a token of the operator's
own, while tests talk to the cluster through ``kube.kubeconfig`` (another token). After each test the
operator's calls are filed under the configuration the operator ran with (front doors, watched
namespaces, peering), the session's record is written to ``build/rbac-calls.json``, and tests marked
``last`` run after every other test (see tests/test_chart_rbac.py).
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "operator"))

RBAC_CALLS_FILE = REPO / "build" / "rbac-calls.json"


# --- who the operator was, and what it asked the cluster -------------------------------------------


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


@dataclass
class ApiCallRecord:
    """Every operator API call of the session, per profile, with the first test that made it."""

    calls: dict[OperatorProfile, Counter[Any]] = field(default_factory=dict)
    first_seen: dict[tuple[OperatorProfile, Any], str] = field(default_factory=dict)
    unattributed: dict[str, int] = field(default_factory=dict)  # test id -> calls made by no known operator

    def add(self, profile: OperatorProfile, calls: Mapping[Any, int], test: str) -> None:
        counter = self.calls.setdefault(profile, Counter())
        for call, count in calls.items():
            counter[call] += count
            self.first_seen.setdefault((profile, call), test)

    def as_json(self) -> dict[str, Any]:
        rows = []
        for profile in sorted(self.calls, key=repr):
            for call, count in sorted(self.calls[profile].items(), key=lambda item: _sort_key(item[0])):
                rows.append({"profile": profile.as_dict(), **call.as_dict(), "count": count,
                             "firstTest": self.first_seen[(profile, call)]})
        return {"calls": rows, "unattributed": self.unattributed}


def _sort_key(call: Any) -> tuple[str, ...]:
    return tuple("" if value is None else str(value) for value in call.as_dict().values())


RECORD = ApiCallRecord()
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


def _file_operator_calls(sandbox: Any, test: str) -> None:
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


@pytest.fixture()
def kube(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest,
         operator_profiles: list[OperatorProfile]) -> Iterator[Any]:
    """The Kubernetes emulator in its own thread. ``KUBECONFIG`` (read by the operator) points at it with
    the operator's own token; tests use ``kube.kubeconfig`` (another token) for their own calls."""
    from chutes.sandbox.kubernetes import KubeSandbox

    namespaces = ["default", "kube-system", "kube-public", "kube-node-lease", "ns1"]
    with KubeSandbox(namespaces=namespaces) as sandbox:
        monkeypatch.setenv("KUBECONFIG", sandbox.operator_kubeconfig)
        yield sandbox
        _file_operator_calls(sandbox, request.node.nodeid)


@pytest.fixture()
def cloudflare() -> Iterator[Any]:
    """The Cloudflare emulator in its own thread (``cloudflare.base_url``, ``cloudflare.token``)."""
    from chutes.sandbox.cloudflare import SandboxConfig, SandboxThread

    with SandboxThread(SandboxConfig.default()) as sandbox:
        yield sandbox


@pytest.fixture(autouse=True)
def _no_ambient_cloudflare_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK prefers CLOUDFLARE_EMAIL/API_KEY over a token when they are set: never let them leak in."""
    for name in ("CLOUDFLARE_EMAIL", "CLOUDFLARE_API_KEY", "CLOUDFLARE_API_TOKEN", "CLOUDFLARE_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _no_hostnames_of_earlier_tests() -> None:
    """The published-hostnames gauge is process-wide: an earlier test's operator may have stopped with
    hostnames published; each test starts from none."""
    from chutes.observability.metrics import HOSTNAMES

    HOSTNAMES.clear()


@pytest.fixture(scope="session")
def operator_api_calls() -> ApiCallRecord:
    """The session's record of the operator's Kubernetes API calls (complete for tests marked ``last``)."""
    return RECORD


# --- hooks -------------------------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "last: run after every other test of the session")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)  # stable: order kept otherwise


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if RECORD.calls or RECORD.unattributed:
        RBAC_CALLS_FILE.parent.mkdir(exist_ok=True)
        RBAC_CALLS_FILE.write_text(json.dumps(RECORD.as_json(), indent=1) + "\n", encoding="utf-8")


@pytest.fixture()
async def sandbox() -> AsyncIterator[Any]:
    """The Cloudflare emulator in the test's own event loop (for async tests of the core)."""
    from chutes.sandbox.cloudflare import CloudflareSandbox, SandboxConfig

    sb = CloudflareSandbox(SandboxConfig.default())
    await sb.start(host="127.0.0.1", port=0)
    try:
        yield sb
    finally:
        await sb.stop()


@pytest.fixture()
async def core(sandbox: Any) -> AsyncIterator[Any]:
    """A Cloudflare core on `sandbox`, owner id `test`, with fast retries."""
    from chutes.cloudflare_core import CloudflareCore, RequestBudget

    async with CloudflareCore(
        sandbox.token, sandbox.base_url, owner_id="test", budget=RequestBudget(), backoff=0.01
    ) as instance:
        yield instance


@pytest.fixture()
async def cf(sandbox: Any) -> AsyncIterator[Any]:
    """The real Cloudflare SDK (async, no retries) talking to `sandbox`."""
    import cloudflare as sdk

    async with sdk.AsyncCloudflare(api_token=sandbox.token, base_url=sandbox.base_url, max_retries=0) as client:
        yield client
