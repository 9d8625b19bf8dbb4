"""``GrpcHostsBackend``: the HostsBackend of a real router-hosts server, ``grpc.aio`` over mutual TLS.

- Transport: the CA, our certificate (chain) and key, checked at construction (``load_tls_files``). The server's
  certificate must name the host part of `address` (``router.lan`` for ``router.lan:50051``; an IP SAN for an IP);
  `server_name` overrides that name (tests, or a certificate issued for another name). gRPC Python cannot pin the
  TLS version: it offers TLS 1.2 and 1.3, a router-hosts server accepts only 1.3 (so 1.3 is what is negotiated),
  and TLS 1.3's downgrade protection keeps a man in the middle from forcing 1.2 on us.
- No keepalive pings: the v0.10.x server keeps Go's default policy (at most one ping per 5 minutes) and would
  close a connection pinging more often. Reconnection backs off from 0.2 s up to 5 s (not gRPC's 120 s).
- Every attempt has a deadline (`timeout`; for ListHosts/SearchHosts it covers the whole stream).
  UNAVAILABLE, DEADLINE_EXCEEDED and RESOURCE_EXHAUSTED are retried here (`attempts` in all, backoff doubling
  from `backoff` up to `max_backoff`), then raised as HostsUnavailable; ABORTED is raised at once as
  VersionConflict (the caller re-reads). Every attempt counts in ``chutes_router_hosts_calls_total{rpc, code}``.
- The channel is made on first use, in the event loop of that use (grpc.aio channels belong to one loop).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar

import grpc
import grpc.aio

from .errors import (
    DEFAULT_UNAVAILABLE_DELAY,
    HostAlreadyExists,
    HostNotFound,
    HostsError,
    HostsInternal,
    HostsUnavailable,
    InvalidHost,
    VersionConflict,
)
from .generated import hosts_pb2, hosts_pb2_grpc
from .metrics import CALLS
from .models import HostEntry, HostSpec
from .tls import TlsFiles, load_tls_files

__all__ = ["TRANSIENT_CODES", "GrpcHostsBackend", "translate"]

T = TypeVar("T")

TRANSIENT_CODES = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}
)


class GrpcHostsBackend:
    """A HostsBackend on the router-hosts server at `address` (``host:port``)."""

    def __init__(
        self,
        address: str,
        ca_path: str,
        cert_path: str,
        key_path: str,
        *,
        timeout: float = 5.0,
        attempts: int = 3,
        backoff: float = 0.2,
        max_backoff: float = 2.0,
        unavailable_delay: float = DEFAULT_UNAVAILABLE_DELAY,
        server_name: str | None = None,
    ) -> None:
        if not address:
            raise ValueError("router-hosts server address is empty")
        if timeout <= 0 or attempts < 1:
            raise ValueError("timeout must be positive and attempts at least 1")
        self.address = address
        self.tls: TlsFiles = load_tls_files(ca_path, cert_path, key_path)
        self._timeout = timeout
        self._attempts = attempts
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._unavailable_delay = unavailable_delay
        self._server_name = server_name
        self._channel: grpc.aio.Channel | None = None
        self._stub: Any = None
        self._closed = False

    # --- HostsBackend ------------------------------------------------------------------------------

    async def add(self, spec: HostSpec) -> HostEntry:
        request = hosts_pb2.AddHostRequest(
            ip_address=spec.ip, hostname=spec.hostname, tags=list(spec.tags), aliases=list(spec.aliases)
        )
        if spec.comment is not None:
            request.comment = spec.comment  # also "": upstream omits an empty comment, we keep it as given
        response: hosts_pb2.AddHostResponse = await self._unary("AddHost", request)
        return _entry_of("AddHost", response.entry if response.HasField("entry") else None)

    async def get(self, host_id: str) -> HostEntry:
        response: hosts_pb2.GetHostResponse = await self._unary("GetHost", hosts_pb2.GetHostRequest(id=host_id))
        return _entry_of("GetHost", response.entry if response.HasField("entry") else None)

    async def update(self, host_id: str, spec: HostSpec, expected_version: str) -> HostEntry:
        request = hosts_pb2.UpdateHostRequest(
            id=host_id,
            ip_address=spec.ip,
            hostname=spec.hostname,
            comment=spec.comment or "",
            expected_version=expected_version,
        )
        # Both wrappers always present, also empty: absent would keep the server's lists (the upstream gap).
        request.aliases.SetInParent()
        request.aliases.values.extend(spec.aliases)
        request.tags.SetInParent()
        request.tags.values.extend(spec.tags)
        response: hosts_pb2.UpdateHostResponse = await self._unary("UpdateHost", request)
        return _entry_of("UpdateHost", response.entry if response.HasField("entry") else None)

    async def delete(self, host_id: str, expected_version: str | None = None) -> None:
        request = hosts_pb2.DeleteHostRequest(id=host_id)
        if expected_version is not None:
            request.expected_version = expected_version
        await self._unary("DeleteHost", request)

    async def search(self, query: str) -> list[HostEntry]:
        return await self._stream("SearchHosts", hosts_pb2.SearchHostsRequest(query=query))

    async def list_all(self) -> list[HostEntry]:
        return await self._stream("ListHosts", hosts_pb2.ListHostsRequest())

    async def close(self) -> None:
        self._closed = True
        channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            await channel.close()

    async def __aenter__(self) -> GrpcHostsBackend:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # --- calls -------------------------------------------------------------------------------------

    def _service(self) -> Any:
        if self._closed:
            raise HostsInternal("the router-hosts client is closed")
        if self._stub is None:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=self.tls.ca, private_key=self.tls.key, certificate_chain=self.tls.cert
            )
            options: list[tuple[str, Any]] = [
                ("grpc.initial_reconnect_backoff_ms", 200),
                ("grpc.min_reconnect_backoff_ms", 200),
                ("grpc.max_reconnect_backoff_ms", 5000),
            ]
            if self._server_name:
                options.append(("grpc.ssl_target_name_override", self._server_name))
            self._channel = grpc.aio.secure_channel(self.address, credentials, options=options)
            self._stub = hosts_pb2_grpc.HostsServiceStub(self._channel)
        return self._stub

    async def _unary(self, rpc: str, request: Any) -> Any:
        async def attempt() -> Any:
            return await getattr(self._service(), rpc)(request, timeout=self._timeout)

        return await self._call(rpc, attempt)

    async def _stream(self, rpc: str, request: Any) -> list[HostEntry]:
        async def attempt() -> list[HostEntry]:
            call = getattr(self._service(), rpc)(request, timeout=self._timeout)
            return [_entry_of(rpc, message.entry if message.HasField("entry") else None) async for message in call]

        return await self._call(rpc, attempt)

    async def _call(self, rpc: str, attempt: Callable[[], Awaitable[T]]) -> T:
        pause = self._backoff
        for number in range(1, self._attempts + 1):
            try:
                result = await attempt()
            except grpc.aio.AioRpcError as error:
                CALLS.labels(rpc=rpc, code=error.code().name).inc()
                if error.code() in TRANSIENT_CODES and number < self._attempts:
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, self._max_backoff)
                    continue
                raise translate(rpc, error.code(), error.details(), delay=self._unavailable_delay) from None
            CALLS.labels(rpc=rpc, code="OK").inc()
            return result
        raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover


def translate(rpc: str, code: grpc.StatusCode, details: str | None, *, delay: float) -> HostsError:
    """Our exception for status `code` answered to `rpc` (`details`: the server's message)."""
    text = details or code.name
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidHost(text, code=code.name)
    message = f"{rpc}: {text}"
    if code == grpc.StatusCode.NOT_FOUND:
        return HostNotFound(message, code=code.name)
    if code == grpc.StatusCode.ALREADY_EXISTS:
        return HostAlreadyExists(message, code=code.name)
    if code == grpc.StatusCode.ABORTED:
        return VersionConflict(message, code=code.name)
    if code in TRANSIENT_CODES:
        return HostsUnavailable(f"{rpc}: {code.name}: {text}", code=code.name, delay=delay)
    return HostsInternal(f"{rpc}: {code.name}: {text}", code=code.name)


def _entry_of(rpc: str, entry: hosts_pb2.HostEntry | None) -> HostEntry:
    if entry is None or not entry.id:
        raise HostsInternal(f"{rpc}: the server answered without an entry", code="OK")
    return HostEntry(
        id=entry.id,
        ip=entry.ip_address,
        hostname=entry.hostname,
        comment=entry.comment if entry.HasField("comment") else None,
        aliases=tuple(entry.aliases),
        tags=tuple(entry.tags),
        version=entry.version,
    )
