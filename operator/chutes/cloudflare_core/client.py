"""The one place that holds an SDK client: budget, metrics, retries, error translation, paging.

The SDK's own retries are off (`max_retries=0`): it would re-send a 409 three times and ignore a
`Retry-After` above 60 s. `CloudflareClient.call()` retries what is worth retrying (connection
errors, timeouts, 408, 5xx, and 429 with a short `Retry-After`; never sooner than the backoff, even
after `Retry-After: 0`), spends the shared request budget
on every attempt, counts every attempt by operation and status, and raises only our own errors.

It also holds the core's `ChangeGate` (write policy, dry-run). Under dry-run it refuses, without
sending anything, every operation that is not a read: a path that missed the gate cannot write.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import random
import traceback
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Any, TypeVar

import cloudflare
import httpx
from cloudflare._base_client import BasePage
from cloudflare._wrappers import ResultWrapper

from . import drift
from .budget import RequestBudget, shared_budget
from .credentials import ApiCredentials
from .errors import (
    CloudflareError,
    CredentialsInvalid,
    DryRunStop,
    NotFound,
    RateLimited,
    TransientError,
    translate,
)
from .gate import ChangeGate, ObjectKind, is_read
from .metrics import BUDGET_REMAINING, REQUESTS

__all__ = ["NO_REPLAY_OPS", "NO_RETRY_OPS", "CloudflareClient", "to_wire"]

T = TypeVar("T")
log = logging.getLogger(__name__)

# Creates whose natural key Cloudflare does not enforce as unique: re-sending them after a
# dropped connection could make a duplicate, so they are sent once; the ensure_* function then
# looks the object up by its natural key and adopts it.
NO_REPLAY_OPS = frozenset(
    {
        "access.apps.create",
        "access.app_policies.create",
        "access.policies.create",
        "service_tokens.create",
        "service_tokens.rotate",
    }
)
# Writes of a whole document merged onto an earlier read (Cloudflare takes no If-Match): never re-sent as they are
# after a failure, for another writer's edit landing during the pause would be overwritten (and a write applied whose
# answer was lost would be replayed over it); the caller reads the document again and merges again. A failure is
# raised at once with the pause a retry would have waited in its `delay`.
NO_RETRY_OPS = frozenset({"tunnels.config.put"})
_AUTH_HEADERS = ("authorization", "x-auth-email", "x-auth-key", "x-auth-user-service-key")
_current_op: contextvars.ContextVar[str | None] = contextvars.ContextVar("cloudflare_op", default=None)


def to_wire(obj: object) -> dict[str, Any]:
    """An SDK response model (or dict) as a plain JSON dict with the API's own key names."""
    if obj is None:
        return {}
    if isinstance(obj, cloudflare.BaseModel):
        return obj.to_dict(mode="json")
    if isinstance(obj, Mapping):
        return dict(obj)
    raise TypeError(f"unexpected Cloudflare response object {type(obj).__name__}")


def _kinds(failure: BaseException) -> str:
    """The types along an exception's cause chain (``APIConnectionError < ConnectError``): what failed, with
    none of the texts, which may quote request headers."""
    kinds: list[str] = []
    current: BaseException | None = failure
    while current is not None and len(kinds) < 8:
        kinds.append(type(current).__name__)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return " < ".join(kinds)


class _AnswersAsSent(cloudflare.AsyncCloudflare):
    """The SDK's client, but the objects of an answer stay the JSON Cloudflare sent.

    The SDK builds a model of every object it receives: for an Access application or a DNS record, a union of a
    dozen types, each tried in turn (a fifth of the operator's CPU in the test suite, measured with py-spy),
    and the core turns each model straight back into JSON (:func:`to_wire`). Here the answer's envelope (the
    result wrapper, a listing's page and its ``result_info``) is still the SDK's model, so that its unwrapping and
    paging work as they do; the objects inside are the dicts as sent, which :func:`to_wire` takes as they are."""

    def _process_response_data(self, *, data: object, cast_to: type[T], response: httpx.Response) -> T:
        as_sent: type[T] = _objects_as_sent(cast_to)  # type: ignore[arg-type]  # a type is hashable
        return super()._process_response_data(data=data, cast_to=as_sent, response=response)


@functools.cache
def _objects_as_sent(cast_to: Hashable) -> Any:
    """`cast_to` (the SDK's ``ResultWrapper[X]`` or ``SomePage[X]``) with `X` left as sent: ``ResultWrapper[object]``;
    any other type unchanged."""
    generic = getattr(cast_to, "__pydantic_generic_metadata__", None) or {}
    origin = generic.get("origin")
    if origin is not None and (origin is ResultWrapper or issubclass(origin, BasePage)) and generic.get("args"):
        return origin[object]
    return cast_to


class CloudflareClient:
    def __init__(
        self,
        api_token: str | ApiCredentials,
        base_url: str | None = None,
        *,
        budget: RequestBudget | None = None,
        max_attempts: int = 3,
        backoff: float = 0.2,
        backoff_max: float = 5.0,
        retry_after_max: float = 5.0,
        timeout: float = 30.0,
        gate: ChangeGate | None = None,
    ) -> None:
        """`api_token`: an API token, or :class:`ApiCredentials` (a token, or a global API key and its email)."""
        if not api_token:
            raise CredentialsInvalid("no Cloudflare API token configured")
        credentials = ApiCredentials.of(api_token)
        defect = credentials.defect()
        if defect is not None:  # never sent: an HTTP library would quote the malformed header in its errors
            raise CredentialsInvalid(defect)
        self.credentials = credentials
        self._token = credentials.secret  # what _scrub and _cause look for
        self.gate = gate if gate is not None else ChangeGate()
        # Names the credentials in metrics: short and non-reversible (the same as chutes.cores.fingerprint).
        self.token_fingerprint = credentials.fingerprint
        self.budget = budget if budget is not None else shared_budget(credentials.secret)
        self.max_attempts = max(1, max_attempts)
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.retry_after_max = retry_after_max
        http_client = cloudflare.DefaultAsyncHttpxClient(
            timeout=httpx.Timeout(timeout, connect=5.0),
            event_hooks={"response": [self._count_response]},
        )
        self.sdk = _AnswersAsSent(
            api_token=credentials.token,
            api_key=credentials.key,
            api_email=credentials.email if credentials.is_key else None,
            base_url=base_url,  # None: the SDK reads CLOUDFLARE_BASE_URL, else api.cloudflare.com
            max_retries=0,
            http_client=http_client,
        )
        # The SDK fills the credentials it was not given from CLOUDFLARE_* variables, and sends the *first* it has
        # (email, key, token, service key): keep only ours, so that the Bearer token, or the key and its email
        # (X-Auth-Key + X-Auth-Email, both always in the SDK's default headers), are what goes out.
        self.sdk.api_token = credentials.token
        self.sdk.api_key = credentials.key
        self.sdk.api_email = credentials.email if credentials.is_key else None
        self.sdk.user_service_key = None
        custom = self.sdk._custom_headers
        if isinstance(custom, dict):
            for name in [key for key in custom if key.lower() in _AUTH_HEADERS]:
                del custom[name]

    @property
    def base_url(self) -> str:
        return str(self.sdk.base_url)

    async def aclose(self) -> None:
        await self.sdk.close()

    async def _count_response(self, response: httpx.Response) -> None:
        op = _current_op.get()
        if op is not None:
            REQUESTS.labels(operation=op, status=str(response.status_code)).inc()

    def _backoff(self, attempt: int) -> float:
        base = min(self.backoff * 2.0 ** (attempt - 1), self.backoff_max)
        return base * random.uniform(0.75, 1.0)

    def _scrub(self, error: CloudflareError) -> CloudflareError:
        if self._token in error.message:
            error.message = error.message.replace(self._token, "***")
            error.args = (error.message,)
        return error

    def _cause(self, failure: BaseException) -> BaseException | None:
        """What our error may keep as its cause: never an SDK error (whose chain holds httpx's and httpcore's
        errors, which may quote the request's headers), nor anything whose text names the token."""
        if isinstance(failure, cloudflare.APIError):
            return None
        text = "".join(traceback.format_exception(failure))
        return None if self._token in text else failure

    async def call(self, op: str, fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> T:
        """Run one SDK call for operation `op` with budget, metrics, retries and translation."""
        read = is_read(op)
        if self.gate.dry_run and not read:
            log.warning("dry-run: refused to send %s (a write that did not go through the dry-run gate)", op)
            raise DryRunStop(f"dry-run: {op} not sent")
        replay = op not in NO_REPLAY_OPS
        attempts = 1 if op in NO_RETRY_OPS else self.max_attempts
        attempt = 0
        while True:
            attempt += 1
            await self.budget.acquire()
            BUDGET_REMAINING.labels(token=self.token_fingerprint).set(self.budget.remaining)
            token = _current_op.set(op)
            try:
                result = await fn(*args, **kwargs)
            except CloudflareError:
                raise
            except Exception as exc:  # raised below, out of this block: no implicit __context__ either
                failure: Exception = exc
            else:
                if not read:
                    drift.record_write(op)
                return result
            finally:
                _current_op.reset(token)

            if not isinstance(failure, cloudflare.APIError):  # a bug on our side (bad arguments...): never retried
                raise translate(failure) from self._cause(failure)
            error = self._scrub(translate(failure))
            connection_failure = isinstance(failure, cloudflare.APIConnectionError)
            if connection_failure:
                REQUESTS.labels(operation=op, status="error").inc()
            if isinstance(error, RateLimited):
                # A 429 with `Retry-After: 0` (or none short enough to matter) still waits what a transient
                # error would: never a retry without a pause.
                error.delay = max(error.delay, self._backoff(attempt))
                self.budget.block_for(error.delay)
                if error.delay <= self.retry_after_max and attempt < attempts:
                    log.debug("Cloudflare %s: rate limited, retrying in %.1fs", op, error.delay)
                    continue  # the next acquire() waits the block out
                raise error from self._cause(failure)
            if isinstance(error, TransientError) and attempts == 1:
                error.delay = max(error.delay, self._backoff(attempt))  # the caller's pause before it reads again
            if not isinstance(error, TransientError) or attempt >= attempts:
                raise error from self._cause(failure)
            if connection_failure and not replay:
                raise error from self._cause(failure)
            pause = self._backoff(attempt)
            log.debug("Cloudflare %s: %s (%s); attempt %d, retrying in %.2fs", op, error, _kinds(failure), attempt,
                      pause)
            await asyncio.sleep(pause)

    async def get(self, op: str, fn: Callable[..., Awaitable[Any]], /, *args: Any,
                  **kwargs: Any) -> dict[str, Any] | None:
        """One read of an object by id, as a wire dict; None when Cloudflare has no such object (404)."""
        try:
            return to_wire(await self.call(op, fn, *args, **kwargs))
        except NotFound:
            return None

    async def delete(self, op: str, obj: ObjectKind, label: str, fn: Callable[..., Awaitable[Any]], /, *args: Any,
                     **kwargs: Any) -> bool:
        """One delete that the write policy and dry-run may skip (logged and counted by the gate) and that a
        404 satisfies. True when the object was deleted by this call."""
        if not self.gate.allows("delete", obj, label):
            return False
        try:
            await self.call(op, fn, *args, **kwargs)
        except NotFound:
            return False
        return True

    async def list_all(
        self, op: str, fn: Callable[..., Awaitable[Any]], /, *args: Any, per_page: int, **kwargs: Any
    ) -> list[dict[str, Any]]:
        """Every item of a paged listing, as wire dicts.

        One request per page of `per_page`; the next page is fetched only when this one was
        full (the SDK's auto-iteration always asks for one more, empty, page).
        """
        items: list[dict[str, Any]] = []
        page = 1
        while True:
            params = dict(kwargs, per_page=per_page)
            if page > 1:
                params["page"] = page
            result = await self.call(op, fn, *args, **params)
            batch = list(getattr(result, "result", None) or [])
            items.extend(to_wire(item) for item in batch)
            info = getattr(result, "result_info", None)
            served = getattr(info, "per_page", None) or per_page
            total_pages = getattr(info, "total_pages", None)
            if not batch or len(batch) < served:
                return items
            if total_pages is not None and page >= total_pages:
                return items
            page += 1
