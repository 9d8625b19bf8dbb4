"""``HostsService`` over grpc.aio: the six host RPCs the operator uses, on a ``Store``, with faults and a log.

The other RPCs (ImportHosts, ExportHosts, WatchHosts, snapshots, CompactAggregates, Liveness, Readiness, Health)
answer UNIMPLEMENTED: the operator never calls them. An unexpected failure answers INTERNAL with the server's
only text, ``internal server error`` (the detail goes to this process's log).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import grpc
import grpc.aio
from google.protobuf import json_format, timestamp_pb2

from chutes.hosts_core.generated import hosts_pb2, hosts_pb2_grpc

from .faults import Faults
from .log import RequestLog, RequestRecord
from .store import Refusal, Store, StoredHost, Update

__all__ = ["HostsServicer", "to_proto"]

log = logging.getLogger(__name__)
T = TypeVar("T")


def to_proto(host: StoredHost) -> hosts_pb2.HostEntry:
    entry = hosts_pb2.HostEntry(
        id=host.id,
        ip_address=host.ip,
        hostname=host.hostname,
        tags=list(host.tags),
        aliases=list(host.aliases),
        version=str(host.version),
        created_at=_timestamp(host.created_at),
        updated_at=_timestamp(host.updated_at),
    )
    if host.comment is not None:
        entry.comment = host.comment
    return entry


def _timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


class HostsServicer(hosts_pb2_grpc.HostsServiceServicer):  # type: ignore[misc]
    def __init__(self, store: Store, faults: Faults, requests: RequestLog,
                 answered: Callable[[RequestRecord], None] | None = None) -> None:
        self.store = store
        self.faults = faults
        self.requests = requests
        self.answered = answered  # told of every call right before its answer leaves (the action already done)

    async def AddHost(self, request: hosts_pb2.AddHostRequest, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        def add() -> hosts_pb2.AddHostResponse:
            host = self.store.add(
                request.ip_address,
                request.hostname,
                request.comment if request.HasField("comment") else None,
                list(request.tags),
                list(request.aliases),
            )
            return hosts_pb2.AddHostResponse(id=host.id, entry=to_proto(host))

        return await self._answer("AddHost", request, context, add)

    async def GetHost(self, request: hosts_pb2.GetHostRequest, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        return await self._answer(
            "GetHost", request, context, lambda: hosts_pb2.GetHostResponse(entry=to_proto(self.store.get(request.id)))
        )

    async def UpdateHost(
        self, request: hosts_pb2.UpdateHostRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Any:
        change = Update(
            ip=request.ip_address if request.HasField("ip_address") else None,
            hostname=request.hostname if request.HasField("hostname") else None,
            comment=request.comment if request.HasField("comment") else None,
            tags=list(request.tags.values) if request.HasField("tags") else None,
            aliases=list(request.aliases.values) if request.HasField("aliases") else None,
            expected_version=request.expected_version if request.HasField("expected_version") else None,
        )
        return await self._answer(
            "UpdateHost",
            request,
            context,
            lambda: hosts_pb2.UpdateHostResponse(entry=to_proto(self.store.update(request.id, change))),
        )

    async def DeleteHost(
        self, request: hosts_pb2.DeleteHostRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Any:
        def delete() -> hosts_pb2.DeleteHostResponse:
            version = request.expected_version if request.HasField("expected_version") else None
            self.store.delete(request.id, version)
            return hosts_pb2.DeleteHostResponse(success=True)

        return await self._answer("DeleteHost", request, context, delete)

    async def ListHosts(
        self, request: hosts_pb2.ListHostsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[hosts_pb2.ListHostsResponse]:
        hosts = await self._answer("ListHosts", request, context, self.store.list_all)
        for host in hosts:
            yield hosts_pb2.ListHostsResponse(entry=to_proto(host))

    async def SearchHosts(
        self, request: hosts_pb2.SearchHostsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[hosts_pb2.SearchHostsResponse]:
        hosts = await self._answer("SearchHosts", request, context, lambda: self.store.search(request.query))
        for host in hosts:
            yield hosts_pb2.SearchHostsResponse(entry=to_proto(host))

    async def _answer(
        self, rpc: str, request: Any, context: grpc.aio.ServicerContext[Any, Any], action: Callable[[], T]
    ) -> T:
        """Delay, injected failure, the action (a Refusal becomes its status), injected lost answer; logged."""
        summary = json_format.MessageToDict(request, preserving_proto_field_name=True)
        client = _client_name(context)
        pause = self.faults.take_delay(rpc)
        if pause > 0:
            try:
                await asyncio.sleep(pause)
            except asyncio.CancelledError:  # the client's deadline ran out (or it cancelled): nothing was done
                self.requests.add(RequestRecord(rpc=rpc, request=summary, code="CANCELLED",
                                                message="the client gave up during the injected delay", client=client))
                raise
        failure = self.faults.take_failure(rpc, after=False)
        outcome: tuple[grpc.StatusCode, str] | None = None
        result: T | None = None
        injected = ""
        if failure is not None:
            outcome, injected = (failure.code, failure.message), "failed"
        else:
            try:
                result = action()
            except Refusal as refusal:
                outcome = (refusal.code, refusal.message)
            except Exception:
                log.exception("router-hosts emulator: %s failed", rpc)
                outcome = (grpc.StatusCode.INTERNAL, "internal server error")
            else:
                lost = self.faults.take_failure(rpc, after=True)
                if lost is not None:
                    outcome, injected = (lost.code, lost.message), "answer lost"
        code, message = outcome or (grpc.StatusCode.OK, "")
        record = RequestRecord(rpc=rpc, request=summary, code=code.name, message=message, client=client,
                               injected=injected)
        self.requests.add(record)
        if self.answered is not None:
            self.answered(record)
        if outcome is not None:
            await context.abort(code, message)
        assert result is not None
        return result


def _client_name(context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    name = next(iter(context.auth_context().get("x509_common_name") or ()), None)
    return name.decode() if name is not None else None
