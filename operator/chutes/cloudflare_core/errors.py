"""Our own exception tree; no SDK exception ever leaves the Cloudflare core.

```
CloudflareError
 ├─ TransientError(delay)      5xx, 408, timeouts, connection errors (after our retries)
 │   └─ RateLimited(delay)     429 (delay from Retry-After, also > 60 s) or own budget exhausted
 ├─ CredentialsInvalid         401/403 (and 400 with an auth code: 9109, 10000, 10001, 6003, 6111...)
 ├─ Conflict(codes, holder)    409, DNS 81053/81054/81057/81058: exists and is not ours / name taken
 ├─ NotFound                   404 (internal: delete_* treat it as "already gone")
 │   └─ Unroutable             404/7003: an id in the path routes nowhere (a listing's: its account/zone is gone)
 ├─ InvalidInput               any other 4xx: permanent, the spec must change
 │   └─ MarkerTooLong          an ownership marker cannot fit in a DNS comment (shorter owner id)
 └─ DryRunStop                 dry-run: a create whose result the caller needs was not made
```

`translate()` maps an SDK exception to this tree. Messages carry the HTTP status and the
Cloudflare codes and messages, never request headers (so never the token).
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterable, Mapping

import cloudflare

__all__ = [
    "AUTH_CODES",
    "DEFAULT_RATE_LIMIT_DELAY",
    "DEFAULT_TRANSIENT_DELAY",
    "DNS_CONFLICT_CODES",
    "UNROUTABLE_CODE",
    "CloudflareError",
    "Conflict",
    "CredentialsInvalid",
    "DryRunStop",
    "InvalidInput",
    "MarkerTooLong",
    "NotFound",
    "OutcomeUnknown",
    "RateLimited",
    "TransientError",
    "Unroutable",
    "retry_after",
    "translate",
]

AUTH_CODES = frozenset({6003, 6100, 6101, 6102, 6103, 6111, 9103, 9106, 9107, 9109, 10000, 10001})
DNS_CONFLICT_CODES = frozenset({81053, 81054, 81057, 81058})
DEFAULT_RATE_LIMIT_DELAY = 60.0
DEFAULT_TRANSIENT_DELAY = 5.0
UNROUTABLE_CODE = 7003  # "Could not route to /zones/<id>/..., perhaps your object identifier is invalid?"


class CloudflareError(Exception):
    """Base of every error raised by the Cloudflare core."""

    def __init__(self, message: str, *, status: int | None = None, codes: Iterable[int] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.codes: tuple[int, ...] = tuple(codes)


class TransientError(CloudflareError):
    """Try again after `delay` seconds; nothing is wrong with the request itself."""

    def __init__(
        self,
        message: str,
        *,
        delay: float = DEFAULT_TRANSIENT_DELAY,
        status: int | None = None,
        codes: Iterable[int] = (),
    ) -> None:
        super().__init__(message, status=status, codes=codes)
        self.delay = float(delay)


class RateLimited(TransientError):
    """Cloudflare (429) or our own request budget says: wait `delay` seconds."""


class OutcomeUnknown(TransientError):
    """A write whose answer was lost (connection dropped, timeout, 5xx): it may or may not have been applied.
    A caller that records an intent before such a write keeps it (the next attempt finds the object)."""


class CredentialsInvalid(CloudflareError):
    """The token is missing, invalid, expired or lacks the permission for this resource."""


class Conflict(CloudflareError):
    """The object exists and is not ours, or its natural key is taken. `holder`: the source (``Kind/ns/name``)
    of this installation holding it, when the object is ours for another source; None when it is foreign."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        codes: Iterable[int] = (),
        holder: str | None = None,
    ) -> None:
        super().__init__(message, status=status, codes=codes)
        self.holder = holder


class NotFound(CloudflareError):
    """The object does not exist (delete_* functions treat this as success)."""


class Unroutable(NotFound):
    """404 with code 7003: an identifier in the path names nothing Cloudflare can route to (gone, or malformed).
    For a listing, whose only identifier is its account or zone, that means the account or zone no longer exists,
    and everything in it went with it (records, tunnels, Access applications): a token that may not use an
    existing account or zone gets 403 (code 10000) instead."""


class InvalidInput(CloudflareError):
    """Cloudflare refused the request as invalid: retrying will not help until the spec changes."""


class MarkerTooLong(InvalidInput):
    """The ownership marker (owner id + ``Kind/namespace/``) cannot fit in the 100-character DNS comment:
    nothing can be published for that kind in that namespace until the owner id is shorter."""


class DryRunStop(CloudflareError):
    """Dry-run: a change whose result the caller needs (a new id, a token) was logged, not made; the
    message says what would have been created ("dry-run: would create tunnel chute-x")."""


def retry_after(headers: Mapping[str, str] | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms` or `Retry-After` (seconds or HTTP date), else None."""
    if not headers:
        return None
    lowered = {key.lower(): value for key, value in headers.items()}
    raw_ms = lowered.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000.0)
        except ValueError:
            pass
    raw = lowered.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def _describe(status: int | None, errors: list[tuple[int, str]], fallback: str) -> str:
    head = f"HTTP {status}" if status is not None else "request failed"
    if not errors:
        return f"{head}: {fallback}" if fallback else head
    details = "; ".join(f"[{code}] {message}" for code, message in errors)
    return f"{head}: {details}"


def _errors_of(exc: cloudflare.APIError) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for item in getattr(exc, "errors", None) or []:
        code = getattr(item, "code", None)
        message = getattr(item, "message", None) or ""
        if isinstance(code, int):
            found.append((code, str(message)))
    return found


def translate(exc: BaseException) -> CloudflareError:
    """Map any exception raised while talking to Cloudflare to our exception tree."""
    if isinstance(exc, CloudflareError):
        return exc
    if isinstance(exc, cloudflare.APITimeoutError):
        return TransientError("request timed out", delay=DEFAULT_TRANSIENT_DELAY)
    if isinstance(exc, cloudflare.APIConnectionError):
        return TransientError("connection to the Cloudflare API failed", delay=DEFAULT_TRANSIENT_DELAY)
    if isinstance(exc, cloudflare.APIStatusError):
        return _translate_status(exc)
    if isinstance(exc, cloudflare.APIResponseValidationError):
        return TransientError("unexpected response from the Cloudflare API", status=exc.status_code)
    if isinstance(exc, cloudflare.APIError):
        return TransientError("Cloudflare API error")
    return CloudflareError(f"unexpected {type(exc).__name__} while calling Cloudflare")


def _translate_status(exc: cloudflare.APIStatusError) -> CloudflareError:
    status = exc.status_code
    errors = _errors_of(exc)
    codes = [code for code, _ in errors]
    message = _describe(status, errors, "" if errors else _reason(exc))
    headers: Mapping[str, str] = exc.response.headers if exc.response is not None else {}
    if status == 429:
        delay = retry_after(headers)
        return RateLimited(
            message, delay=DEFAULT_RATE_LIMIT_DELAY if delay is None else delay, status=status, codes=codes
        )
    if status == 408 or status >= 500:
        delay = retry_after(headers)
        return TransientError(
            message, delay=DEFAULT_TRANSIENT_DELAY if delay is None else delay, status=status, codes=codes
        )
    if status == 401 or (status in (400, 403) and AUTH_CODES.intersection(codes)) or (status == 403 and not codes):
        return CredentialsInvalid(message, status=status, codes=codes)
    if status == 404:
        return (Unroutable if UNROUTABLE_CODE in codes else NotFound)(message, status=status, codes=codes)
    if status == 409 or DNS_CONFLICT_CODES.intersection(codes):
        return Conflict(message, status=status, codes=codes)
    return InvalidInput(message, status=status, codes=codes)


def _reason(exc: cloudflare.APIStatusError) -> str:
    try:
        return exc.response.reason_phrase
    except Exception:  # pragma: no cover - httpx always has one
        return ""
