"""A strict emulator of a router-hosts server (``router_hosts.v1.HostsService`` over gRPC with mutual TLS).

AddHost, GetHost, UpdateHost, DeleteHost, ListHosts and SearchHosts behave as the reference's §5 says (``store``
holds the rules: validation with Go's ``net.ParseIP`` semantics, ALREADY_EXISTS on identical ip and hostname,
ULIDs, decimal versions with one event per change, ABORTED on a stale ``expected_version``, NOT_FOUND, sanitised
INTERNAL); every other RPC answers UNIMPLEMENTED. The client certificate is required and verified against the
emulator's CA. Tests inject faults (``server.faults``: a status for the next N calls or at a seeded random rate,
latency, a lost answer) and read the request log (``server.requests``) and the entries (``server.snapshot()``).

``python -m chutes.sandbox.routerhosts --port N [--certs DIR]`` runs it standalone; in-process,
``RouterHostsSandbox`` (own thread) or ``RouterHostsServer`` (the current loop).

Known differences from the real server: gRPC Python cannot refuse TLS 1.2 (the real server accepts only 1.3;
clients offering 1.3 negotiate it with both); malformed ids with characters outside the ULID alphabet are refused
(the server's lenient parse would answer NOT_FOUND); hooks, output files, snapshots and import/export are absent.
"""

from .certs import CertFiles, ensure_certs, issue_certificate, make_certs
from .faults import Faults
from .log import RequestRecord
from .server import RouterHostsSandbox, RouterHostsServer

__all__ = [
    "CertFiles",
    "Faults",
    "RequestRecord",
    "RouterHostsSandbox",
    "RouterHostsServer",
    "ensure_certs",
    "issue_certificate",
    "make_certs",
]
