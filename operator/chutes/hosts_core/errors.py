"""Our own exception tree for the router-hosts server; no gRPC exception ever leaves ``chutes.hosts_core``.

```
HostsError(code)
 ├─ HostNotFound             NOT_FOUND (an unknown or deleted id)
 ├─ HostAlreadyExists        ALREADY_EXISTS (a live entry has this very ip and hostname)
 ├─ VersionConflict          ABORTED (stale expected_version: re-read, then retry)
 ├─ InvalidHost              INVALID_ARGUMENT (the server's message kept: the spec must change)
 ├─ HostsUnavailable(delay)  UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, after the client's own retries
 ├─ HostsInternal            INTERNAL and every other code (the server sanitises INTERNAL's text)
 └─ TlsFilesInvalid(path)    a TLS file (CA, certificate, key) missing, unreadable or not what it should be
```

`code` is the gRPC status code name (``"NOT_FOUND"``...; ``""`` for TlsFilesInvalid). Messages carry the server's
text and the RPC, never certificate or key material (a TLS failure is reported by the file's path and role).
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_UNAVAILABLE_DELAY",
    "HostAlreadyExists",
    "HostNotFound",
    "HostsError",
    "HostsInternal",
    "HostsUnavailable",
    "InvalidHost",
    "TlsFilesInvalid",
    "VersionConflict",
]

DEFAULT_UNAVAILABLE_DELAY = 5.0


class HostsError(Exception):
    """Base of every error raised by the router-hosts client."""

    def __init__(self, message: str, *, code: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class HostNotFound(HostsError):
    """No live entry has this id (deleted, never existed, or gone with a server-side rollback)."""


class HostAlreadyExists(HostsError):
    """AddHost refused: a live entry has the identical ip string and hostname string (search, then prove it ours)."""


class VersionConflict(HostsError):
    """The entry changed since the version we sent: re-read it and decide again."""


class InvalidHost(HostsError):
    """The server refused the values (or the id) as invalid; `message` is its reason."""


class HostsUnavailable(HostsError):
    """The server did not answer in time or at all, after the client's retries: try again after `delay` seconds.
    A write may or may not have been applied (a lost answer); every write is safe to repeat (add: ALREADY_EXISTS,
    update: ABORTED, delete: NOT_FOUND)."""

    def __init__(self, message: str, *, code: str = "UNAVAILABLE", delay: float = DEFAULT_UNAVAILABLE_DELAY) -> None:
        super().__init__(message, code=code)
        self.delay = float(delay)


class HostsInternal(HostsError):
    """The server failed (INTERNAL) or answered with a code this client does not expect."""


class TlsFilesInvalid(HostsError):
    """A TLS file is missing, unreadable or wrong. `role` is ``CA``, ``certificate`` or ``key``; `path` the file."""

    def __init__(self, message: str, *, role: str, path: str) -> None:
        super().__init__(message)
        self.role = role
        self.path = path
