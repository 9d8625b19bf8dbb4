"""Shared test setup: the package root is ``<repo>/operator`` (no install needed), the harness's plugins
(both emulators as fixtures, and the record of the operator's Kubernetes API calls that the chart's RBAC
check reads: see tests/harness/), no ambient Cloudflare credentials, and tests marked ``last`` run after
every other test of their process (see tests/test_chart_rbac.py).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "operator"))

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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)  # stable: order kept otherwise
