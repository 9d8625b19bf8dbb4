"""Short Cloudflare retry waits, for a test that makes Cloudflare fail on purpose and then waits for the retry."""

from __future__ import annotations

import pytest

from chutes.cloudflare_core import errors
from chutes.frontdoors import problems


def short_cloudflare_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 5xx without ``Retry-After`` is waited out 0.5 s (5 s: ``errors.DEFAULT_TRANSIENT_DELAY``) and a source that
    met one is retried at the earliest 1 s later (10 s: ``retries.TRANSIENT_RETRY``). What is retried, and in which
    order, is unchanged: only the waits are, which the test would otherwise sit through."""
    monkeypatch.setattr(errors, "DEFAULT_TRANSIENT_DELAY", 0.5)
    monkeypatch.setattr(problems, "TRANSIENT_RETRY", 1.0)
