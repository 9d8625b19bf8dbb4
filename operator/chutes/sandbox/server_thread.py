"""An emulator served from a daemon thread with its own event loop: ``with ServerThread(...) as server:``, for the
tests, ``make demo`` and ``chutes plan`` (the Cloudflare sandbox, the router-hosts emulator)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar


class Served(Protocol):
    def start(self, host: str, port: int) -> Awaitable[Any]: ...

    def stop(self) -> Awaitable[Any]: ...


S = TypeVar("S", bound=Served)


class ServerThread(Generic[S]):
    """Starts `server` (``await server.start(host, port)``) on a loop of its own in a daemon thread named `name`;
    the block's exit stops it (``await server.stop()``) and ends the thread. `label` names it in a start failure."""

    def __init__(self, server: S, name: str, label: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.server = server
        self._name = name
        self._label = label
        self._host = host
        self._port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def __enter__(self) -> S:
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise RuntimeError(f"the {self._label} failed to start") from self._error
        return self.server

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        loop = self._loop
        if loop is not None and self._thread is not None:
            asyncio.run_coroutine_threadsafe(self.server.stop(), loop).result(timeout=10)  # type: ignore[arg-type]
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(timeout=10)

    def call(self, coro: Any) -> Any:
        """Run a coroutine on the server's loop and return its result."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self.server.start(self._host, self._port))
        except BaseException as error:
            self._error = error
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()
