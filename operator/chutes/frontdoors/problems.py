"""Why a source object could not be reconciled, when to try again, and where Events go; shared by the
front doors.

A :class:`Problem` carries a condition reason, a message naming what is wrong, and a retry delay (one of
:mod:`chutes.frontdoors.retries`): ``None`` when only a change of the source object (or what it refers to)
can help (kopf ``PermanentError``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

import kopf

from chutes import conditions as c
from chutes.claims import ClaimLost
from chutes.cloudflare_core import (
    CloudflareError,
    Conflict,
    CredentialsInvalid,
    DryRunStop,
    InvalidInput,
    NotFound,
    RateLimited,
    TransientError,
)
from chutes.frontdoors.retries import CREDENTIALS_RETRY, FOREIGN_RETRY, LOST_RETRY, TRANSIENT_RETRY
from chutes.frontdoors.specs import SpecError
from chutes.kube import StaleObject
from chutes.observability import metrics

T = TypeVar("T")


class Problem(Exception):
    def __init__(self, reason: str, message: str, delay: float | None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.delay = delay


def to_kopf(problem: Problem) -> Exception:
    """What a kopf handler raises for `problem`: a retry after its delay, else a permanent error."""
    if problem.delay is None:
        return kopf.PermanentError(f"{problem.reason}: {problem.message}")
    return kopf.TemporaryError(f"{problem.reason}: {problem.message}", delay=problem.delay)


@contextlib.contextmanager
def refused(delay: float | None = None) -> Iterator[None]:
    """A :class:`SpecError` raised inside becomes a :class:`Problem` of its reason and message, tried again after
    `delay` (None: only a change of the object can help)."""
    try:
        yield
    except SpecError as exc:
        raise Problem(exc.reason, str(exc), delay) from None


def already_said(conditions: Iterable[Mapping[str, Any]] | None, problem: Problem) -> bool:
    """Whether the Ready condition among `conditions` says `problem` already (its Warning Event was posted when
    it was written): one Warning Event per distinct problem, not one per retry."""
    ready = c.find(conditions, c.READY)
    return ready is not None and (ready.get("reason"), ready.get("message")) == (problem.reason, problem.message)


def problem_from_cloudflare(exc: CloudflareError, doing: str) -> Problem:
    if isinstance(exc, DryRunStop):  # "dry-run: would create tunnel chute-x": nothing to retry until a real run
        return Problem(c.DRY_RUN, exc.message, None)
    if isinstance(exc, RateLimited):
        return Problem(c.RATE_LIMITED, f"{doing}: Cloudflare rate limit",  # a stable message
                       max(exc.delay, TRANSIENT_RETRY))
    if isinstance(exc, TransientError):
        return Problem(c.CLOUDFLARE_UNAVAILABLE, f"{doing}: {exc.message}", max(exc.delay, TRANSIENT_RETRY))
    if isinstance(exc, CredentialsInvalid):
        return Problem(c.CREDENTIALS_INVALID, f"{doing}: the API token was refused: {exc.message}", CREDENTIALS_RETRY)
    if isinstance(exc, Conflict):
        return Problem(c.HOSTNAME_CONFLICT, f"{doing}: {exc.message}", FOREIGN_RETRY)
    if isinstance(exc, NotFound):
        return Problem(c.CLOUDFLARE_REJECTED, f"{doing}: not found: {exc.message}", FOREIGN_RETRY)
    if isinstance(exc, InvalidInput):
        return Problem(c.CLOUDFLARE_REJECTED, f"{doing}: {exc.message}", None)
    return Problem(c.CLOUDFLARE_REJECTED, f"{doing}: {exc}", CREDENTIALS_RETRY)


async def step(doing: str, action: Awaitable[T]) -> T:
    """Await one Cloudflare call; its failure becomes a :class:`Problem` saying what we were doing."""
    try:
        return await action
    except CloudflareError as exc:
        raise problem_from_cloudflare(exc, doing) from exc


Post = Callable[..., Any]


class EventSink:
    """Kubernetes Events about one object (kopf's poster in production). Never given a secret."""

    def __init__(self, body: Mapping[str, Any] | None, post: Post) -> None:
        self._body = body
        self._post = post

    def normal(self, reason: str, message: str) -> None:
        if self._body is not None:
            self._post(self._body, type="Normal", reason=reason, message=message)

    def warning(self, reason: str, message: str) -> None:
        if self._body is not None:
            self._post(self._body, type="Warning", reason=reason, message=message)


def operator_pod(environ: Mapping[str, str], default_namespace: str | None = None) -> dict[str, Any] | None:
    """The operator's own Pod (the chart's POD_ID, else HOSTNAME), for Events that concern no other object (the
    sweeps' cap); None when its name or namespace is not known."""
    name = environ.get("POD_ID") or environ.get("HOSTNAME")
    namespace = environ.get("OPERATOR_NAMESPACE") or environ.get("POD_NAMESPACE") or default_namespace
    if not name or not namespace:
        return None
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": namespace, "name": name}}


class SaidBook:
    """The problem last said about each object that has no status of ours to say it in (an annotated Service), by
    uid: so that a retry does not say it again. Forgotten when the object is served; at most `size` objects (the
    oldest forgotten first: it is said once more)."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._said: dict[str, tuple[str, str]] = {}

    def repeats(self, uid: str, problem: Problem) -> bool:
        """Whether `problem` is what was last said about `uid`; it is from now on."""
        said = (problem.reason, problem.message)
        if self._said.get(uid) == said:
            return True
        self._said.pop(uid, None)
        self._said[uid] = said
        while len(self._said) > self.size:
            del self._said[next(iter(self._said))]
        return False

    def forget(self, uid: str) -> None:
        self._said.pop(uid, None)


@contextlib.contextmanager
def said(body: Mapping[str, Any], front_door: str, book: SaidBook | None = None) -> Iterator[EventSink]:
    """A kopf handler's Events on `body`; a :class:`Problem` raised inside becomes one Warning Event per distinct
    problem (not one per retry: see :func:`already_said`, or `book` for an object with no status of ours;
    conflicts are counted every time), then kopf's retry or permanent error. A race lost on the cluster (a claim
    released or taken under the pass, an object changed between our read and our write) is no problem of the
    source: retried soon, without an Event."""
    events = EventSink(body, kopf.event)
    uid = str((body.get("metadata") or {}).get("uid") or "")
    try:
        yield events
    except (ClaimLost, StaleObject) as race:
        raise kopf.TemporaryError(f"{race}: trying again", delay=LOST_RETRY) from None
    except Problem as problem:
        if problem.reason == c.HOSTNAME_CONFLICT:
            metrics.conflict(front_door)
        repeated = book is not None and book.repeats(uid, problem)
        if not repeated and not already_said((body.get("status") or {}).get("conditions"), problem):
            events.warning(problem.reason, problem.message)
        raise to_kopf(problem) from None
    if book is not None:
        book.forget(uid)
