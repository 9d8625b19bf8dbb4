"""RouterHostsServer (serves in the current event loop) and RouterHostsSandbox (its own thread and loop)."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from chutes.hosts_core.generated import hosts_pb2_grpc
from chutes.hosts_core.models import HostEntry

from ..server_thread import ServerThread
from .certs import CertFiles, ensure_certs
from .faults import Faults
from .log import RequestLog, RequestRecord
from .service import HostsServicer
from .store import Store, StoredHost

__all__ = ["RouterHostsSandbox", "RouterHostsServer"]


class RouterHostsServer:
    """The emulated router-hosts server: mutual TLS (a client certificate signed by the CA is required and
    verified), the host RPCs of ``HostsService``, fault injection (``faults``) and a request log (``requests``).
    ``on_response`` (tests): called on the server's loop with each call's record once it was carried out (a write
    is in the store) and right before its answer is sent, so a test can kill the client while the answer is in
    flight: the write applied, its answer lost.

    Without `certs_dir`, its certificates live in a temporary folder removed by ``stop()``; with it, the files
    there are reused (or made there)."""

    def __init__(self, certs_dir: str | Path | None = None) -> None:
        self._own_dir = certs_dir is None
        folder = Path(tempfile.mkdtemp(prefix="routerhosts-")) if certs_dir is None else Path(certs_dir)
        self.certs: CertFiles = ensure_certs(folder)
        self.store = Store()
        self.faults = Faults()
        self._log = RequestLog()
        self.on_response: Callable[[RequestRecord], None] | None = None
        self._server: grpc.aio.Server | None = None
        self.host = "127.0.0.1"
        self.port = 0

    # --- lifecycle ---------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> RouterHostsServer:
        credentials = self._credentials()
        server = grpc.aio.server()
        servicer = HostsServicer(self.store, self.faults, self._log, self._answered)
        hosts_pb2_grpc.add_HostsServiceServicer_to_server(servicer, server)
        bound = server.add_secure_port(f"{host}:{port}", credentials)
        if bound == 0:
            raise OSError(f"router-hosts emulator: cannot listen on {host}:{port}")
        await server.start()
        self._server, self.host, self.port = server, host, bound
        return self

    def _answered(self, record: RequestRecord) -> None:
        hook = self.on_response
        if hook is not None:
            hook(record)

    def _credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(Path(self.certs.server_key).read_bytes(), Path(self.certs.server_cert).read_bytes())],
            root_certificates=Path(self.certs.ca).read_bytes(),
            require_client_auth=True,  # required and verified against the CA
        )

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace=None)
        if self._own_dir:
            shutil.rmtree(self.certs.folder, ignore_errors=True)

    async def __aenter__(self) -> RouterHostsServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- what a client needs -------------------------------------------------------------------------

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def ca(self) -> str:
        return self.certs.ca

    @property
    def cert(self) -> str:
        """The client certificate."""
        return self.certs.client_cert

    @property
    def key(self) -> str:
        """The client key."""
        return self.certs.client_key

    def ready_line(self) -> dict[str, str]:
        return {"address": self.address, "ca": self.ca, "cert": self.cert, "key": self.key}

    # --- inspection (thread-safe) -------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        return self._log.records

    def calls(self, rpc: str | None = None) -> list[RequestRecord]:
        return [record for record in self._log.records if rpc is None or record.rpc == rpc]

    @property
    def counters(self) -> Counter[str]:
        """Calls by RPC."""
        return self._log.counters()

    def reset_log(self) -> None:
        self._log.reset()

    def snapshot(self) -> list[dict[str, Any]]:
        """Every stored entry as JSON-able dicts (``id``, ``ip_address``, ``hostname``, ``comment``, ``tags``,
        ``aliases``, ``version``), by id."""
        return [host.as_dict() for host in self.store.snapshot()]

    def entries(self) -> list[HostEntry]:
        return [
            HostEntry(id=h.id, ip=h.ip, hostname=h.hostname, comment=h.comment, aliases=h.aliases, tags=h.tags,
                      version=str(h.version))
            for h in self.store.snapshot()
        ]

    # --- out-of-band changes (another tool, an admin): no validation, no log, no faults -----------------

    def put_entry(
        self,
        ip: str,
        hostname: str,
        comment: str | None = None,
        *,
        tags: tuple[str, ...] = (),
        aliases: tuple[str, ...] = (),
        version: int = 1,
        host_id: str | None = None,
    ) -> str:
        """Store an entry as it is (a foreign entry, or one restored from a snapshot); its id."""
        now = time.time()
        entry_id = host_id or self.store.new_id()
        self.store.put(StoredHost(id=entry_id, ip=ip, hostname=hostname, comment=comment, tags=tuple(tags),
                                  aliases=tuple(aliases), version=version, created_at=now, updated_at=now))
        return entry_id

    def remove_entry(self, host_id: str) -> bool:
        """Delete an entry behind the client's back; False when there was none."""
        return self.store.remove(host_id)

    def restore(self, snapshot: list[dict[str, Any]]) -> None:
        """Load a :meth:`snapshot` (entries keep their ids and versions)."""
        for item in snapshot:
            self.put_entry(item["ip_address"], item["hostname"], item.get("comment"), tags=tuple(item["tags"]),
                           aliases=tuple(item["aliases"]), version=int(item["version"]), host_id=item["id"])


class RouterHostsSandbox(ServerThread[RouterHostsServer]):
    """``with RouterHostsSandbox() as server:`` serves a RouterHostsServer from a daemon thread with its own loop."""

    def __init__(self, certs_dir: str | Path | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(RouterHostsServer(certs_dir), "routerhosts-sandbox", "router-hosts emulator", host, port)
