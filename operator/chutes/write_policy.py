"""The installation's write policy, as in external-dns: which kinds of change it lets through. Pure.

``sync`` makes every change; ``upsert-only`` never deletes; ``create-only`` also never changes what exists, only
creates, except an update that only revokes access (an allow rule losing include rules): refusing it would keep
access open that its owner withdrew. Dry-run is not a policy: it holds every change (see
:mod:`chutes.frontdoors.changes`).
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["POLICIES", "Action", "WritePolicy", "forbids"]

WritePolicy = Literal["sync", "upsert-only", "create-only"]
Action = Literal["create", "update", "delete"]
POLICIES: tuple[str, ...] = get_args(WritePolicy)


def forbids(policy: str, action: Action, *, revokes: bool = False) -> bool:
    """Whether `policy` holds back `action`; an update that only `revokes` access is never held back."""
    if policy == "upsert-only":
        return action == "delete"
    if policy == "create-only":
        return action == "delete" or (action == "update" and not revokes)
    return False
