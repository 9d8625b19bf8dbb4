"""CloudflareSandbox (runs in the current loop) and SandboxThread (own thread + loop)."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ..server_thread import ServerThread
from . import access_apps, access_idps, access_policies, dns, dns_batch, restore, service_tokens, tunnels, zones
from .config import SandboxConfig
from .faults import Faults
from .log import RequestLog, RequestRecord, ResponseEvent
from .ratelimit import RateLimiter
from .routing import Route
from .seeding import seed_state
from .server import ApiServer
from .state import State, TunnelConfig, now_iso

ROUTES: list[Route] = [
    *tunnels.ROUTES,
    *zones.ROUTES,
    *dns_batch.ROUTES,
    *dns.ROUTES,
    *access_apps.ROUTES,
    *access_policies.ROUTES,
    *access_idps.ROUTES,
    *service_tokens.ROUTES,
]


class CloudflareSandbox:
    """A strict, stateful Cloudflare v4 API emulator for the operator's subset."""

    def __init__(self, cfg: SandboxConfig | None = None) -> None:
        self.config = cfg or SandboxConfig.default()
        self.state = State(self.config)
        seed_state(self.state, self.config)
        self.faults = Faults()
        self.limiter = RateLimiter(self.config.rate_limit)
        self._log = RequestLog()
        self._server = ApiServer(self.state, ROUTES, self.config.prefix, self.faults, self.limiter, self._log)
        self._runner: web.AppRunner | None = None
        self.host = "127.0.0.1"
        self.port = 0

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> CloudflareSandbox:
        runner = web.AppRunner(self._server.app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        self.host = host
        self.port = int(runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> CloudflareSandbox:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- addresses and seed ----------------------------------------------------------------------

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.root_url + self.config.prefix

    @property
    def token(self) -> str:
        return self.config.tokens[0].value

    def token_named(self, name: str) -> str:
        return next(t.value for t in self.config.tokens if t.name == name)

    def global_key(self, name: str) -> tuple[str, str]:
        """(email, key) of the seeded global API key `name`."""
        return next((str(k.email), k.value) for k in self.config.global_keys if k.name == name)

    @property
    def accounts(self) -> list[dict[str, str]]:
        return [{"id": a.id, "name": a.name} for a in self.config.accounts]

    @property
    def zones(self) -> list[dict[str, str]]:
        return [{"id": z.id, "name": z.name, "account_id": z.account_id, "plan": z.plan} for z in self.config.zones]

    @property
    def account_id(self) -> str:
        return self.config.accounts[0].id

    def zone_id(self, name: str) -> str:
        return next(z.id for z in self.config.zones if z.name == name.lower().rstrip("."))

    def ready_line(self) -> dict[str, Any]:
        return {"base_url": self.base_url, "token": self.token, "accounts": self.accounts, "zones": self.zones}

    # --- inspection ------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        return self._log.records

    @property
    def counters(self) -> Counter[str]:
        return self._log.counters

    def calls(self, op: str | None = None, method: str | None = None) -> list[RequestRecord]:
        return [
            r
            for r in self._log.records
            if (op is None or r.op == op) and (method is None or r.method == method.upper())
        ]

    def reset_log(self) -> None:
        self._log.reset()

    def snapshot(self) -> dict[str, Any]:
        return self.state.snapshot()

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Load a :meth:`snapshot` (e.g. saved by ``chutes plan --save-state``) into this sandbox."""
        restore.restore(self.state, snapshot)

    @property
    def on_response(self) -> Callable[[ResponseEvent], None] | None:
        """Optional callback receiving a ResponseEvent for every answered API request."""
        return self._server.on_response

    @on_response.setter
    def on_response(self, callback: Callable[[ResponseEvent], None] | None) -> None:
        self._server.on_response = callback

    def set_rate_limit(self, requests: int | None = None, period: float | None = None) -> None:
        """Change the per-token limit at runtime (windows restart)."""
        self.limiter.configure(requests, period)

    def edit_tunnel_config(self, tunnel_id: str, edit: Callable[[dict[str, Any]], dict[str, Any]]) -> int:
        """Another client's configuration PUT of `edit(current configuration)`, read and written at once (a careful
        writer: nothing lands between its read and its write); the new version."""
        with self.state.lock:
            previous = self.state.tunnel_configs.get(tunnel_id)
            config = edit(copy.deepcopy(previous.config or {}) if previous else {})
            tunnels.validate_config(config)
            version = (previous.version if previous else 0) + 1
            self.state.tunnel_configs[tunnel_id] = TunnelConfig(version=version, config=config, created_at=now_iso())
            return version

    def connect_tunnel(self, tunnel_id: str, colo: str = "ams01") -> dict[str, Any]:
        """Simulate a cloudflared connector attaching to a tunnel (status becomes healthy)."""
        return tunnels.add_connection(self.state, tunnel_id, colo)

    def remove_zone(self, zone_id: str) -> None:
        """Simulate the zone being deleted in the dashboard: its records go with it, and every path under
        ``/zones/{zone_id}`` answers 404/7003 from then on."""
        with self.state.lock:
            self.state.zones.pop(zone_id, None)
            self.state.dns.pop(zone_id, None)

    def remove_account(self, account_id: str) -> None:
        """Simulate the account being deleted: it and its zones become unroutable (404/7003), and so does
        everything in them (tunnels, Access, records are unreachable with it)."""
        with self.state.lock:
            for zone in self.state.zones_of(account_id):
                self.state.zones.pop(zone.id, None)
                self.state.dns.pop(zone.id, None)
            self.state.accounts.pop(account_id, None)


class SandboxThread(ServerThread[CloudflareSandbox]):
    """``with SandboxThread(cfg) as sb:`` serves a CloudflareSandbox from a daemon thread."""

    def __init__(self, cfg: SandboxConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(CloudflareSandbox(cfg), "cloudflare-sandbox", "Cloudflare sandbox", host, port)
        self.sandbox = self.server
