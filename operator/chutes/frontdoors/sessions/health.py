"""``GET /healthz`` on ``HEALTH_PORT``: 200 ``ok`` while the session task runs, 503 once it has stopped;
any other path is 404 (as the seed)."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

HEALTH_HOST = "0.0.0.0"  # the seed listens on every interface of the Pod


class HealthServer:
    def __init__(self, port: int, healthy: Callable[[], bool], host: str = HEALTH_HOST) -> None:
        self.host = host
        self.port = port
        self._healthy = healthy
        self._runner: web.AppRunner | None = None

    async def _healthz(self, _request: web.Request) -> web.Response:
        if self._healthy():
            return web.Response(text="ok")
        return web.Response(status=503, text="unhealthy")

    async def start(self) -> int:
        """Serve; returns the bound port (useful with port 0)."""
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._runner = runner
        if runner.addresses:
            self.port = int(runner.addresses[0][1])
        return self.port

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
