"""Proof of ownership for the objects that carry no marker of ours (tunnels, Access applications,
service tokens): the ledger's `Recorded` entry checked against what Cloudflare reports (id, created_at).

Names are hints to look objects up with, never proof: an object found under our natural key that the
record does not cover belongs to someone else and is left untouched (`Conflict`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from .errors import Conflict, InvalidInput
from .models import Recorded

__all__ = ["covered", "require_intent", "unrecorded"]

T = TypeVar("T")


def unrecorded(what: str, recorded: Recorded, *, hint: str = "") -> Conflict:
    """The refusal for an object found under our natural key that `recorded` does not cover."""
    detail = f" (the ledger records {recorded.id})" if recorded.id else ""
    return Conflict(f"{what} exists and this installation has no record of creating it{detail}: left untouched{hint}")


def require_intent(recorded: Recorded, what: str) -> None:
    """A create needs the intent recorded first, so a crash after it can be resolved (InvalidInput:
    a programming error of the caller, not of the spec)."""
    if recorded.since is None:
        raise InvalidInput(f"refusing to create {what}: no intent recorded before the create (a bug: record it first)")


def covered(items: Sequence[T], recorded: Recorded, identity: Callable[[T], tuple[str, str | None]],
            what: str) -> T | None:
    """The one item of `items` that `recorded` covers (`identity`: its id and created_at), else None.
    Several covered items (only possible while resolving an intent by time) are ambiguous: Conflict."""
    found = [item for item in items if recorded.covers(*identity(item))]
    if len(found) > 1:
        ids = ", ".join(sorted(identity(item)[0] for item in found))
        raise Conflict(f"{what}: several objects ({ids}) were created after the recorded intent; "
                       "which one is ours cannot be told: left untouched")
    return found[0] if found else None
