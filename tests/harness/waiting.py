"""The one polling helper: tests that watch the operator (or an emulator) converge wait for a condition,
never for a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes.client.exceptions import ApiException

T = TypeVar("T")
LONGEST_PAUSE = 0.25  # seconds between two probes of a long wait


def wait_for(what: str, probe: Callable[[], T], timeout: float = 30.0, interval: float = 0.03) -> T:
    """Poll `probe` until it returns something truthy, and return that; a Kubernetes 404 counts as "not yet".
    Fails after `timeout` seconds naming `what` and the last value seen. The pause between probes starts at
    `interval` and grows by half each time up to :data:`LONGEST_PAUSE`: a quick answer is seen quickly, and a long
    wait does not spend the machine's CPU (the emulator's and the probe's) that the operators under test need."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = probe()
        except ApiException as exc:
            if exc.status != 404:
                raise
            last = None
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; last value: {last!r}")
        time.sleep(interval)
        interval = min(interval * 1.5, max(interval, LONGEST_PAUSE))


def wait_quiet(what: str, value: Callable[[], object], quiet: float, timeout: float = 20.0,
               interval: float = 0.05, *, required: bool = True) -> bool:
    """Wait until `value` (a count, a resourceVersion...) has not changed for `quiet` seconds: whatever writes
    it is idle. After `timeout` seconds without such a pause, fail naming `what` (unless not `required`:
    then return False)."""
    deadline = time.monotonic() + timeout
    last, since = value(), time.monotonic()
    while time.monotonic() - since < quiet:
        if time.monotonic() > deadline:
            if required:
                raise AssertionError(f"{what} never paused for {quiet} s in {timeout} s")
            return False
        time.sleep(interval)
        current = value()
        if current != last:
            last, since = current, time.monotonic()
    return True
