"""Run the whole operator in a background thread with its own event loop (tests, ``make demo``).

The emulators run in threads of their own too, so that neither blocks the other's loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TypeVar

import kopf

from chutes import runtime
from chutes.observability.readiness import Insights
from chutes.settings import Settings

DISCOVERY_WAIT = 5.0  # at most, at a stop: kopf's own wait for a scan cut off by the stop (see `stop`)
logger = logging.getLogger(__name__)
LEFT_OVER_DELAY = 0.2  # s after the last cleanup handler: what is still running then is left over
T = TypeVar("T")


class OperatorThread:
    """``with OperatorThread(settings, environ):`` runs ``chutes run`` until the block ends."""

    def __init__(self, settings: Settings, environ: Mapping[str, str] | None = None, *, timeout: float = 15.0,
                 name: str = "chutes-operator"):
        self.settings = settings
        self.environ = dict(environ or {})
        self.timeout = timeout
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._insights: Insights | None = None
        self.memo: kopf.Memo | None = None  # the operator's, once it runs (read it from its loop, or when stopped)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)  # log records' threadName

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # reported to the thread that started us
            self.error = exc
            self._ready.set()

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        memo = self.memo = runtime.new_memo(self.settings)
        self._insights = memo.readiness.insights
        main = asyncio.current_task()
        reaper = asyncio.create_task(self._reap_left_overs(memo.cleaned_up, main))  # made before kopf starts
        try:
            await runtime.run(self.settings, self.environ, stop_flag=self._stop, ready_flag=self._ready, memo=memo)
        except Exception:
            if not memo.cleaned_up.is_set():
                raise
            # kopf re-raises what its left-over tasks raised: one still running once the operator's cleanup
            # closed the shared clients fails on them (aiohttp: no connector). An artefact of the stop, said.
            logger.warning("A task left running after the operator's cleanup failed on the closed clients",
                           exc_info=True)
        finally:
            reaper.cancel()

    @staticmethod
    async def _reap_left_overs(cleaned_up: asyncio.Event, main: asyncio.Task[None] | None) -> None:
        """Once the operator's last cleanup handler has run (the shared clients closed), cancel what kopf left
        running, as kopf itself does 5 s later: a timer kopf spawned for an object while it was stopping (its
        daemon killer already gone) is never stopped, and kopf waits 5 s for such left-over tasks."""
        await cleaned_up.wait()
        await asyncio.sleep(LEFT_OVER_DELAY)  # kopf ends its root tasks, then waits for the left-overs
        for task in asyncio.all_tasks() - {asyncio.current_task(), main}:
            task.cancel()

    def start(self) -> OperatorThread:
        self._thread.start()
        if not self._ready.wait(self.timeout):
            self.stop()
            raise TimeoutError(f"the operator did not become ready within {self.timeout} s")
        if self.error is not None:
            raise RuntimeError("the operator failed to start") from self.error
        return self

    def stop(self) -> None:
        self._discovered(DISCOVERY_WAIT)
        self._stop.set()
        self._thread.join(self.timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the operator did not stop within {self.timeout} s")
        if self.error is not None:
            raise RuntimeError("the operator stopped with an error") from self.error

    def _discovered(self, timeout: float) -> None:
        """Wait (at most `timeout` seconds) until kopf's first scan of the cluster's resources is over. A stop
        during that scan costs 5 s: kopf does not cancel the scan's requests with their root task, the stop
        closes their session, and kopf gives such left-over tasks 5 s before it cancels them."""
        deadline = time.monotonic() + timeout
        while (self._thread.is_alive() and time.monotonic() < deadline
               and not (self._insights is not None and self._insights.ready_resources.is_set())):
            time.sleep(0.005)

    def call(self, read: Callable[[kopf.Memo], T]) -> concurrent.futures.Future[T]:
        """``read(memo)`` run on the operator's own loop (where its memo may be read safely), once it runs."""
        loop, memo = self._loop, self.memo
        if loop is None or memo is None:
            raise RuntimeError("the operator is not running")

        async def run() -> T:
            return read(memo)

        return asyncio.run_coroutine_threadsafe(run(), loop)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> OperatorThread:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
