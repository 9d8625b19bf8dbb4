"""``KubeSandbox``: a FaithfulEmulator served over HTTP from a thread with its own event loop.

Synchronous code (tests, the ``kubernetes`` client, ``KopfRunner`` with kopf in yet another thread) talks
to it through ``kube.url`` or the kubeconfig file at ``kube.kubeconfig``; ``kube.operator_kubeconfig`` is
the same cluster with a token of its own, so that ``kube.api_calls(OPERATOR_TOKEN)`` tells exactly which
API calls the operator made. State can be read or seeded on
the emulator's own loop with ``kube.call(coroutine)`` or ``kube.seed(...)``, which are thread-safe.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import shutil
import tempfile
import threading
from collections.abc import Callable, Coroutine, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import aiohttp.web

from chutes.sandbox.kubernetes.audit import ApiCall
from chutes.sandbox.kubernetes.discovery import load_crd_manifests
from chutes.sandbox.kubernetes.emulator import FaithfulEmulator
from chutes.sandbox.kubernetes.kubeconfig import OPERATOR_TOKEN, write_kubeconfig
from chutes.sandbox.kubernetes.store import JSON

T = TypeVar('T')
DEFAULT_NAMESPACES = ('default', 'kube-system', 'kube-public', 'kube-node-lease')
REPO_CRDS = Path(__file__).resolve().parents[4] / 'crds'
START_TIMEOUT = 30.0


def default_crd_paths() -> list[Path]:
    """Every YAML in ``<repo>/crds/`` when running from a source checkout, else nothing."""
    return [REPO_CRDS] if REPO_CRDS.is_dir() else []


class KubeSandbox:
    """Runs a :class:`FaithfulEmulator` on ``host:port`` (a free port by default) until stopped.

    ``crd_paths``: CRD manifests (files or directories) installed at start; by default ``<repo>/crds``.
    ``namespaces``: Namespaces created at start. ``setup(emulator)`` runs on the emulator's loop before
    serving (e.g. to add kmock reactions). Other keyword arguments go to :class:`FaithfulEmulator`.
    """

    def __init__(self, crd_paths: Iterable[str | Path] | None = None,
                 namespaces: Iterable[str] = DEFAULT_NAMESPACES, *, host: str = '127.0.0.1', port: int = 0,
                 setup: Callable[[FaithfulEmulator], None] | None = None, **emulator_options: Any) -> None:
        self.crd_paths = list(default_crd_paths() if crd_paths is None else crd_paths)
        self.namespaces = list(namespaces)
        self.host = host
        self.port = port
        self._setup = setup
        self._options = emulator_options
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._tmpdir: Path | None = None
        self._emulator: FaithfulEmulator | None = None
        self.url = ''
        self.kubeconfig = ''
        self.operator_kubeconfig = ''

    @property
    def emulator(self) -> FaithfulEmulator:
        if self._emulator is None:
            raise RuntimeError('The sandbox is not running.')
        return self._emulator

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc_value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError('The sandbox is already running.')
        manifests = load_crd_manifests(self.crd_paths)
        self._tmpdir = Path(tempfile.mkdtemp(prefix='kube-sandbox-'))
        self._ready.clear()
        self._thread = threading.Thread(target=self._run, args=(manifests,), name='kube-sandbox', daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            self._failure = self._failure or TimeoutError('The Kubernetes sandbox did not start in time.')
        if self._failure is not None:
            failure = self._failure
            self.stop()
            raise failure

    def stop(self) -> None:
        if self._thread is not None:
            if self._loop is not None and self._stopping is not None and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(START_TIMEOUT)
            self._thread = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = 10.0) -> T:
        """Run a coroutine on the emulator's loop and return its result (thread-safe)."""
        if self._loop is None or self._thread is None:
            coro.close()
            raise RuntimeError('The sandbox is not running.')
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    def api_calls(self, user: str | None = None) -> collections.Counter[ApiCall]:
        """The requests served so far in RBAC terms, counted; only those sent with token ``user`` when
        given (e.g. ``OPERATOR_TOKEN``). Thread-safe."""
        async def snapshot() -> collections.Counter[ApiCall]:
            return collections.Counter({call: n for call, n in self.emulator.audit.items()
                                        if user is None or call.user == user})
        return self.call(snapshot())

    def seed(self, resource: str, body: Mapping[str, Any], namespace: str | None = None) -> JSON:
        """Create an object through the emulator's store (stamped, with an ADDED event); thread-safe."""
        async def seed() -> JSON:
            return self.emulator.seed(resource, body, namespace)
        return self.call(seed())

    def _run(self, manifests: list[dict[str, Any]]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(manifests))
        except BaseException as exc:  # reported to start(); the thread must not die silently
            self._failure = exc
        finally:
            self._ready.set()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self, manifests: list[dict[str, Any]]) -> None:
        assert self._tmpdir is not None
        self._stopping = asyncio.Event()
        async with FaithfulEmulator(**self._options) as emulator:
            for manifest in manifests:
                emulator.add_crd(manifest)
            for namespace in self.namespaces:
                emulator.seed('v1/namespaces', {'metadata': {'name': namespace}})
            if self._setup is not None:
                self._setup(emulator)
            server = aiohttp.web.Server(emulator, handler_cancellation=True, access_log=None)
            runner = aiohttp.web.ServerRunner(server, handle_signals=False, shutdown_timeout=1.0)
            await runner.setup()
            try:
                site = aiohttp.web.TCPSite(runner, self.host, self.port)
                await site.start()
                port = runner.addresses[0][1]
                self.url = f'http://{self.host}:{port}'
                self.kubeconfig = str(write_kubeconfig(self._tmpdir / 'kubeconfig', self.url))
                self.operator_kubeconfig = str(write_kubeconfig(self._tmpdir / 'operator-kubeconfig', self.url,
                                                                token=OPERATOR_TOKEN))
                self._emulator = emulator
                self._ready.set()
                await self._stopping.wait()
                emulator.store.close()  # ends the open watch streams, so that the shutdown is quick
            finally:
                await runner.cleanup()
                self._emulator = None
