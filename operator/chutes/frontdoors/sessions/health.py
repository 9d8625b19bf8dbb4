"""``GET /healthz`` on ``HEALTH_PORT``: 200 ``ok`` while the session task runs, 503 once it has stopped;
any other path is 404; on every interface of the Pod unless told otherwise (as the seed)."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from chutes.observability.server import ALL_INTERFACES, HttpServer


class HealthServer(HttpServer):
    def __init__(self, port: int, healthy: Callable[[], bool], host: str = ALL_INTERFACES) -> None:
        self._healthy = healthy
        super().__init__(port, {"/healthz": self._healthz}, host)

    async def _healthz(self, _request: web.Request) -> web.Response:
        if self._healthy():
            return web.Response(text="ok")
        return web.Response(status=503, text="unhealthy")
