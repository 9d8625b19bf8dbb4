"""Shared test setup: the package root is ``<repo>/operator`` (no install needed), the harness's plugins
(both emulators as fixtures, and the record of the operator's Kubernetes API calls that the chart's RBAC
check reads: see tests/harness/), no ambient Cloudflare credentials, the long tests started first (see
tests/harness/slow.py) and tests marked ``last`` run after every other test of their process (see
tests/test_chart_rbac.py).
"""

from __future__ import annotations

import logging
import os
import re
import ssl
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "operator"))


def _small_trust_store() -> None:
    """Every SSL context the tests and the operators they start make (the Kubernetes clients, kopf's session, the
    Cloudflare SDK's httpx client: two or more per operator start) loads the trust store named by SSL_CERT_FILE, else
    the system's: 30 ms of CPU each time. Nothing in the tests verifies a server against it (the emulators speak
    plain HTTP; the router-hosts emulator's TLS names its own CA), so it is one certificate of the system's, in a
    file of the temporary directory (inherited by subprocesses: ``chutes run`` replicas, the demo). An
    SSL_CERT_FILE set in the environment (as on machines whose every tool is pointed at the system's bundle) is
    such a store too: its first certificate replaces it."""
    store = os.environ.get("SSL_CERT_FILE") or ssl.get_default_verify_paths().cafile
    if not store or not Path(store).is_file():
        return
    first = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n?", Path(store).read_text(), re.S)
    if first is None:
        return
    path = Path(tempfile.gettempdir()) / "chutes-tests-trust-store.pem"
    if not path.exists() or path.read_text() != first.group(0):
        partial = path.with_name(f"{path.name}.{os.getpid()}")
        partial.write_text(first.group(0))
        partial.replace(path)  # atomic: parallel workers write the same content
    os.environ["SSL_CERT_FILE"] = str(path)


_small_trust_store()
pytest.register_assert_rewrite("harness")  # the harness's checks explain their failures as tests' asserts do
pytest_plugins = ("harness.rbac_record", "harness.emulators")


@pytest.fixture(autouse=True)
def _no_ambient_cloudflare_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK prefers CLOUDFLARE_EMAIL/API_KEY over a token when they are set: never let them leak in."""
    for name in ("CLOUDFLARE_EMAIL", "CLOUDFLARE_API_KEY", "CLOUDFLARE_API_TOKEN", "CLOUDFLARE_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _no_hostnames_of_earlier_tests() -> None:
    """The published-hostnames gauge is process-wide: an earlier test's operator may have stopped with
    hostnames published; each test starts from none."""
    from chutes.observability.metrics import HOSTNAMES, REFUSALS

    HOSTNAMES.clear()
    REFUSALS.clear()


@pytest.fixture(autouse=True)
def restored_logging() -> Iterator[None]:
    """The logging set up by a test that runs ``chutes run`` in-process (handlers on the stderr pytest captured for
    that test only, levels) is undone after it: a handler left on a closed stream would fail on every later record
    of the process ("--- Logging error ---")."""
    names = ("", "httpx", "httpcore", "cloudflare", "asyncio", "kopf")
    levels = {name: logging.getLogger(name).level for name in names}
    handlers = {name: list(logging.getLogger(name).handlers) for name in names}
    try:
        yield
    finally:
        for name in names:
            logging.getLogger(name).setLevel(levels[name])
            logging.getLogger(name).handlers[:] = handlers[name]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "last: run after every other test of the session")


def pytest_sessionfinish(session: pytest.Session) -> None:
    from harness import zygote

    zygote.close()  # the replicas' zygote (harness.zygote), if this process started one


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # the long tests at the head of each worker's share (harness.slow), the tests marked `last` at the end
    from harness import slow

    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    items[:] = slow.order(sorted(items, key=lambda item: item.get_closest_marker("last") is not None), workers)
