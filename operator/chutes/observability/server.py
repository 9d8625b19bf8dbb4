"""The operator's small HTTP servers, served by aiohttp in the operator's own event loop: :class:`HttpServer`
(a few GET routes on one port), and the metrics port, ``GET /metrics`` (Prometheus text format) and
``GET /readyz`` (:class:`MetricsServer`), started by a kopf startup handler and stopped by a cleanup handler
(see :mod:`chutes.runtime`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler

__all__ = ["HttpServer", "MetricsServer"]

ALL_INTERFACES = "0.0.0.0"  # every interface of the Pod
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Problems = Callable[[], list[str]]


class HttpServer:
    """GET `routes` (path -> handler) on `host`:`port`; any other path is 404."""

    def __init__(self, port: int, routes: Mapping[str, Handler], host: str = ALL_INTERFACES) -> None:
        self.host = host
        self.port = port
        self._routes = dict(routes)
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        """Serve; returns the bound port (useful with port 0)."""
        app = web.Application()
        for path, handler in self._routes.items():
            app.router.add_get(path, handler)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        if runner.addresses:
            self.port = int(runner.addresses[0][1])
        return self.port

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()


class MetricsServer(HttpServer):
    def __init__(self, port: int, problems: Problems, *, host: str = ALL_INTERFACES,
                 registry: CollectorRegistry = REGISTRY) -> None:
        self._problems = problems
        super().__init__(port, {"/metrics": make_aiohttp_handler(registry), "/readyz": self._readyz}, host)

    async def _readyz(self, _request: web.Request) -> web.Response:
        problems = self._problems()
        if problems:
            return web.Response(status=503, text="not ready: " + "; ".join(problems) + "\n")
        return web.Response(text="ok\n")
