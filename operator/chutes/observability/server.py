"""The metrics port: ``GET /metrics`` (Prometheus text format) and ``GET /readyz``.

Served on every interface of the Pod by aiohttp in the operator's own event loop; started by a kopf
startup handler and stopped by a cleanup handler (see :mod:`chutes.runtime`).
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler

__all__ = ["MetricsServer"]

Problems = Callable[[], list[str]]


class MetricsServer:
    def __init__(self, port: int, problems: Problems, *, host: str = "0.0.0.0",
                 registry: CollectorRegistry = REGISTRY) -> None:
        self.host = host
        self.port = port
        self._problems = problems
        self._registry = registry
        self._runner: web.AppRunner | None = None

    async def _readyz(self, _request: web.Request) -> web.Response:
        problems = self._problems()
        if problems:
            return web.Response(status=503, text="not ready: " + "; ".join(problems) + "\n")
        return web.Response(text="ok\n")

    async def start(self) -> int:
        """Serve; returns the bound port (useful with port 0)."""
        app = web.Application()
        app.router.add_get("/metrics", make_aiohttp_handler(self._registry))
        app.router.add_get("/readyz", self._readyz)
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
