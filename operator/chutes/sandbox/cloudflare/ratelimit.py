"""Per-token fixed-window rate limit: Cloudflare's 1,200 requests per 5 minutes by default."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .config import RateLimitSettings


@dataclass
class Window:
    started: float
    used: int


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    remaining: int
    reset_after: int  # whole seconds until the window frees


class RateLimiter:
    """A window opens at a token's first request; past ``requests`` calls in it, every call is
    refused until it ends. Refused calls do not count."""

    def __init__(self, settings: RateLimitSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.settings = settings
        self._windows: dict[str, Window] = {}

    def configure(self, requests: int | None = None, period: float | None = None) -> None:
        """Change the limit at runtime (open windows are restarted)."""
        with self._lock:
            self.settings = RateLimitSettings(
                requests=self.settings.requests if requests is None else int(requests),
                period=self.settings.period if period is None else float(period),
            )
            self._windows.clear()

    def reset(self) -> None:
        with self._lock:
            self._windows.clear()

    def check(self, key: str) -> Verdict:
        with self._lock:
            now = self._clock()
            window = self._windows.get(key)
            if window is None or now >= window.started + self.settings.period:
                window = self._windows[key] = Window(started=now, used=0)
            reset_after = max(1, math.ceil(window.started + self.settings.period - now))
            if window.used >= self.settings.requests:
                return Verdict(False, 0, reset_after)
            window.used += 1
            return Verdict(True, self.settings.requests - window.used, reset_after)
