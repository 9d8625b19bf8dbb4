"""The aiohttp application: prefix, routing, auth, rate limit, faults, envelope, log, inspection.

Request pipeline (API prefix only; ``/__sandbox/*`` is inspection, unauthenticated, unlogged):
latency → authentication → forced 429 / rate limit → route (404/7000, 405/7001) → account/zone
in the path (404/7003, 403/10000) → JSON body (400/6007) → `before` hook → forced failure → handler
(under the state lock; handlers validate fully before mutating) → drop-after-write → envelope + log.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
from collections.abc import Callable
from typing import Any

from aiohttp import web

from .config import TokenSeed
from .envelope import ApiError, error_body, success_body
from .faults import Faults
from .log import RequestLog, RequestRecord, ResponseEvent, redact
from .ratelimit import RateLimiter
from .routing import Ctx, Route, Router
from .state import State

HEX32 = re.compile(r"^[0-9a-f]{32}$")
AUTH_ERROR = (10000, "Authentication error")
# Global API keys, answered as Cloudflare does (X-Auth-Key + X-Auth-Email; see `_authenticate_key`).
GLOBAL_KEY = re.compile(r"^(?:[0-9a-f]{37}|cfk_[A-Za-z0-9_-]{20,})$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
UNKNOWN_KEY = (9103, "Unknown X-Auth-Key or X-Auth-Email")
MISSING_EMAIL = (9106, "Missing X-Auth-Email header")
MISSING_KEY = (9107, "Missing X-Auth-Key header")
BAD_EMAIL_FORMAT = (6102, "Invalid format for X-Auth-Email header")
BAD_KEY_FORMAT = (6103, "Invalid format for X-Auth-Key header")
RATE_LIMITED = (971, "Please wait and consider throttling your request speed")


class ApiServer:
    def __init__(
        self,
        state: State,
        routes: list[Route],
        prefix: str,
        faults: Faults,
        limiter: RateLimiter,
        log: RequestLog,
    ) -> None:
        self.state = state
        self.router = Router(routes)
        self.prefix = prefix
        self.faults = faults
        self.limiter = limiter
        self.log = log
        self.on_response: Callable[[ResponseEvent], None] | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_get("/__sandbox/requests", self._inspect_requests)
        app.router.add_get("/__sandbox/counters", self._inspect_counters)
        app.router.add_get("/__sandbox/state", self._inspect_state)
        app.router.add_get("/__sandbox/faults", self._inspect_faults)
        app.router.add_post("/__sandbox/faults", self._set_faults)
        app.router.add_post("/__sandbox/reset-log", self._reset_log)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    # --- API -------------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body, body_ok = _parse_json(raw)
        query = {k: v for k, v in request.query.items()}
        path = request.path
        route: Route | None = None
        token: TokenSeed | None = None
        headers: dict[str, str] = {}
        if self.faults.latency > 0:
            await asyncio.sleep(self.faults.latency)
        try:
            rel = self._relative(path)
            match = self.router.match(request.method, rel)
            route = match.route
            token = self._authenticate(request)
            headers = self._admit(token)
            if route is None:
                if match.method_allowed:
                    raise ApiError(404, 7000, "No route for that URI")
                raise ApiError(405, 7001, "Method not allowed for this URI")
            self._check_scope(token, match.params, rel)
            if not body_ok:
                raise ApiError(400, 6007, "Malformed JSON in request body")
            hook = self.faults.take_before(route.op)
            if hook is not None:
                outcome = hook()
                if inspect.isawaitable(outcome):
                    await outcome
            forced = self.faults.take_failure(route.op)
            if forced is not None:
                raise ApiError(forced.status, forced.code, _fault_message(forced.status))
            ctx = Ctx(state=self.state, token=token, params=match.params, query=query, body=body)
            with self.state.lock:  # results may share stored objects: serialise before releasing
                reply = route.handler(ctx)
                text = json.dumps(success_body(reply))
        except ApiError as error:
            status, text = error.status, json.dumps(error_body(error))
            headers |= error.headers
        else:
            status = reply.status
            headers |= reply.headers
            if route.mutates and self.faults.take_drop(route.op):
                self._record(request, path, route, status, query, body, token, dropped=True)
                self._answered(request, route, status, text, dropped=True)
                return _drop(request)
        self._record(request, path, route, status, query, body, token)
        self._answered(request, route, status, text)
        return web.Response(text=text, status=status, headers=headers, content_type="application/json")

    def _answered(self, request: web.Request, route: Route | None, status: int, text: str,
                  dropped: bool = False) -> None:
        if self.on_response is not None:
            self.on_response(
                ResponseEvent(
                    op=route.op if route else None,
                    method=request.method,
                    route=route.template if route else None,
                    status=status,
                    body=json.loads(text),
                    dropped=dropped,
                )
            )

    def _relative(self, path: str) -> str:
        if self.prefix == "":
            return path
        if path == self.prefix or path.startswith(self.prefix + "/"):
            return path[len(self.prefix) :] or "/"
        raise ApiError(404, 7000, "No route for that URI")

    def _authenticate(self, request: web.Request) -> TokenSeed:
        if "X-Auth-Email" in request.headers or "X-Auth-Key" in request.headers:
            return self._authenticate_key(request.headers.get("X-Auth-Key"), request.headers.get("X-Auth-Email"))
        header = request.headers.get("Authorization")
        if header is None or not header.startswith("Bearer ") or not header[7:].strip():
            raise ApiError(
                400, 6003, "Invalid request headers", chain=[(6111, "Invalid format for Authorization header")]
            )
        token = self.state.tokens.get(header[7:].strip())
        if token is None:
            raise ApiError(403, *AUTH_ERROR)
        return token

    def _authenticate_key(self, key: str | None, email: str | None) -> TokenSeed:
        """A global API key and its account email, as Cloudflare answers them: a header missing → 403 9106
        (email) / 9107 (key); a value of the wrong shape → 400 6003 with 6102 (email) / 6103 (key) in the chain;
        a well-formed pair that is not a seeded key's → 403 9103. The key alone never authenticates."""
        if email is None or key is None:
            raise ApiError(403, *(MISSING_EMAIL if email is None else MISSING_KEY))
        chain = [*([BAD_EMAIL_FORMAT] if not EMAIL.match(email) else []),
                 *([BAD_KEY_FORMAT] if not GLOBAL_KEY.match(key) else [])]
        if chain:
            raise ApiError(400, 6003, "Invalid request headers", chain=chain)
        seed = self.state.global_keys.get((email.lower(), key))
        if seed is None:
            raise ApiError(403, *UNKNOWN_KEY)
        return seed

    def _admit(self, token: TokenSeed) -> dict[str, str]:
        forced = self.faults.take_rate_limit()
        if forced is not None:
            raise ApiError(429, *RATE_LIMITED, headers={"Retry-After": str(forced)})
        verdict = self.limiter.check(token.value)
        settings = self.limiter.settings
        headers = {
            "Ratelimit": f'"default";r={verdict.remaining};t={verdict.reset_after}',
            "Ratelimit-Policy": f'"default";q={settings.requests};w={int(settings.period)}',
        }
        if not verdict.allowed:
            raise ApiError(429, *RATE_LIMITED, headers=headers | {"Retry-After": str(verdict.reset_after)})
        return headers

    def _check_scope(self, token: TokenSeed, params: dict[str, str], rel: str) -> None:
        unroutable = ApiError(404, 7003, f"Could not route to {rel}, perhaps your object identifier is invalid?")
        if "account_id" in params:
            account_id = params["account_id"]
            if not HEX32.match(account_id) or account_id not in self.state.accounts:
                raise unroutable
            if not token.allows_account(account_id):
                raise ApiError(403, *AUTH_ERROR)
        if "zone_id" in params:
            zone = self.state.zones.get(params["zone_id"])
            if zone is None:
                raise unroutable
            if not token.allows_zone(zone.id, zone.seed.account_id):
                raise ApiError(403, *AUTH_ERROR)

    def _record(
        self,
        request: web.Request,
        path: str,
        route: Route | None,
        status: int,
        query: dict[str, str],
        body: Any,
        token: TokenSeed | None,
        dropped: bool = False,
    ) -> None:
        self.log.add(
            RequestRecord(
                method=request.method,
                path=path,
                op=route.op if route else None,
                status=status,
                query=query,
                body=redact(body),
                token_name=token.name if token else None,
                dropped=dropped,
            )
        )

    # --- inspection ------------------------------------------------------------------------------

    async def _inspect_requests(self, request: web.Request) -> web.Response:
        return web.json_response({"requests": [r.as_dict() for r in self.log.records]})

    async def _inspect_counters(self, request: web.Request) -> web.Response:
        return web.json_response({"counters": dict(self.log.counters)})

    async def _inspect_state(self, request: web.Request) -> web.Response:
        return web.json_response(self.state.snapshot())

    async def _inspect_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self._fault_view())

    async def _set_faults(self, request: web.Request) -> web.Response:
        try:
            spec = await request.json()
            if not isinstance(spec, dict):
                raise TypeError("the faults document must be a JSON object")
            self.faults.apply(spec)
            limits = spec.get("limits")
            if limits is not None:
                self.limiter.configure(limits.get("requests"), limits.get("period"))
        except (ValueError, TypeError) as error:
            return web.json_response({"error": str(error)}, status=400)
        return web.json_response(self._fault_view())

    async def _reset_log(self, request: web.Request) -> web.Response:
        self.log.reset()
        return web.json_response({"ok": True})

    def _fault_view(self) -> dict[str, Any]:
        settings = self.limiter.settings
        return self.faults.describe() | {"limits": {"requests": settings.requests, "period": settings.period}}


def _parse_json(raw: bytes) -> tuple[Any, bool]:
    if not raw.strip():
        return None, True
    try:
        return json.loads(raw), True
    except ValueError:
        return None, False


def _fault_message(status: int) -> str:
    if status == 503:
        return "Service unavailable (injected by the sandbox)"
    if status >= 500:
        return "Internal server error (injected by the sandbox)"
    return "Request failed (injected by the sandbox)"


def _drop(request: web.Request) -> web.StreamResponse:
    """Close the connection without answering: the client sees a connection error."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    raise asyncio.CancelledError
