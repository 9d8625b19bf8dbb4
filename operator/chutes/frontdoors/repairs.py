"""Which reconciles are drift repairs. A pass that no change of the source object caused (a resume, the
resync timer, the periodic session pass) over something already published in full writes nothing in the
steady state: whatever it writes puts back what was changed or deleted behind our back, and the core counts
it in ``chutes_drift_repairs_total{front_door, object}`` while :func:`scope` is active. Pure decisions
here; the counting is :mod:`chutes.cloudflare_core.drift`.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Collection, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Any

from chutes import conditions as c
from chutes.cloudflare_core import drift

_unprompted: contextvars.ContextVar[bool] = contextvars.ContextVar("chutes_unprompted_pass", default=False)


def scope(front_door: str, repairing: bool, *, reuse_listings: bool = True) -> AbstractContextManager[None]:
    """``drift.repairing(front_door)`` when `repairing`, else a block that counts nothing. `reuse_listings`:
    see ``drift.repairing`` (False for a pass verifying a write just made: it must read afresh)."""
    return drift.repairing(front_door, reuse_listings=reuse_listings) if repairing else contextlib.nullcontext()


@contextlib.contextmanager
def unprompted() -> Iterator[None]:
    """Mark the reconciles started inside the block (tasks included) as prompted by no change of their
    source object: a resync timer or a resume. Where they find their inputs published already, they open a
    :func:`scope`."""
    token = _unprompted.set(True)
    try:
        yield
    finally:
        _unprompted.reset(token)


def is_unprompted() -> bool:
    return _unprompted.get()


def gateway_published(body: Mapping[str, Any]) -> bool:
    """A ChuteGateway whose current generation reached Cloudflare in full before: its ``DNSReady`` condition
    (the last Cloudflare step) is True for this very generation. A new gateway, a spec change or a first
    publish that stopped half-way is not a repair, whatever the handler (create, update, resume, timer)."""
    generation = (body.get("metadata") or {}).get("generation")
    dns = c.find((body.get("status") or {}).get("conditions"), c.DNS_READY)
    return (generation is not None and dns is not None and dns.get("status") == "True"
            and dns.get("observedGeneration") == generation)


def ready_for_generation(body: Mapping[str, Any]) -> bool:
    """A source whose current generation was published in full: its ``Ready`` condition is True and its status
    observed this very generation (a TunnelBinding, a (Cluster)Tunnel)."""
    status = body.get("status") or {}
    ready = c.find(status.get("conditions"), c.READY)
    generation = (body.get("metadata") or {}).get("generation")
    return (generation is not None and ready is not None and ready.get("status") == "True"
            and status.get("observedGeneration") == generation)


# Reasons only a spec change can fix: the resync timer leaves a source refused for one of them alone.
PERMANENT_REASONS = frozenset({c.INVALID_SPEC, c.HOSTNAME_OUTSIDE_ZONE, c.CLOUDFLARE_REJECTED,
                               c.HOSTNAME_NOT_AUTHORIZED})  # the hostname rules change at a restart only


def refused_for_good(body: Mapping[str, Any], permanent: Collection[str] = PERMANENT_REASONS) -> bool:
    """A source whose current generation was refused for one of the `permanent` reasons (its ``Ready``
    condition, its status observed this very generation): a resync of it would change nothing."""
    status = body.get("status") or {}
    ready = c.find(status.get("conditions"), c.READY) or {}
    return ready.get("reason") in permanent and status.get("observedGeneration") == body["metadata"].get("generation")


def route_published(previous_published: bool, previous_digest: str, previous_hostname: str, digest: str,
                    hostname: str) -> bool:
    """An HTTPRoute whose current inputs (annotation hash: annotations and templates; hostname) were
    published in full before, as its state records."""
    return previous_published and previous_digest == digest and previous_hostname == hostname


def session_pass_repairs(cause: str) -> bool:
    """A session pass is a repair when the scheduler ran it for the periodic resync or the verification
    after a write (see :meth:`PassScheduler.cause`), not for Pod events, at start or as a retry."""
    return cause in ("resync", "verify")
