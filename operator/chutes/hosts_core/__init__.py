"""The router-hosts core: the only code that talks gRPC to a router-hosts server (``router_hosts.v1.HostsService``).

- ``models``: HostEntry (an entry on the server), HostSpec (what we want), ``in_sync``, and the server's
  validation rules (``ip_problem``, ``hostname_problem``, ``alias_problems``, ``spec_problems``), all pure.
- ``backend``: the ``HostsBackend`` Protocol the front door uses; ``grpc_backend``: its implementation over gRPC
  with mutual TLS (``GrpcHostsBackend``); ``errors``: the one exception tree; ``tls``: the TLS files, checked at
  start; ``metrics``: ``chutes_router_hosts_calls_total``.
- ``proto/router_hosts/v1/hosts.proto``: the wire contract, written from the reference; ``generated/``: the
  Python modules ``make proto`` makes from it (never edited by hand; front doors never import them, nor grpc).

Like ``chutes.cloudflare_core``, it imports neither kopf, nor ``chutes.kube``, nor a front door, nor the sandbox.
"""

from .backend import HostsBackend
from .errors import (
    HostAlreadyExists,
    HostNotFound,
    HostsError,
    HostsInternal,
    HostsUnavailable,
    InvalidHost,
    TlsFilesInvalid,
    VersionConflict,
)
from .grpc_backend import GrpcHostsBackend
from .models import HostEntry, HostSpec, alias_problems, hostname_problem, in_sync, ip_problem, spec_problems
from .tls import TlsFiles, load_tls_files

__all__ = [
    "GrpcHostsBackend",
    "HostAlreadyExists",
    "HostEntry",
    "HostNotFound",
    "HostSpec",
    "HostsBackend",
    "HostsError",
    "HostsInternal",
    "HostsUnavailable",
    "InvalidHost",
    "TlsFiles",
    "TlsFilesInvalid",
    "VersionConflict",
    "alias_problems",
    "hostname_problem",
    "in_sync",
    "ip_problem",
    "load_tls_files",
    "spec_problems",
]
