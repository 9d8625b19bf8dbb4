"""The write policy and dry-run: which changes to Cloudflare are made, skipped or only logged.

Policies as in external-dns: ``sync`` makes every change; ``upsert-only`` never deletes (an object or
a tunnel rule); ``create-only`` also never changes what exists (and so never adopts), only creates, except
an update that only revokes access (an allow policy losing include rules): refusing it would keep access
open that its owner withdrew.
Under dry-run nothing is written: each change is logged (``dry-run: would create tunnel chute-x``).

A skipped change is logged at INFO and counted in ``chutes_cloudflare_changes_skipped_total``; the
caller sees success (a delete returns, an update returns the current object). A create whose result
the caller needs (an id, a token) raises :class:`DryRunStop` under dry-run instead. Names and details
given to the gate end up in logs: never pass a secret.
"""

from __future__ import annotations

import logging
from typing import Literal, cast

from chutes.write_policy import POLICIES, WritePolicy, forbids

from .errors import DryRunStop, InvalidInput
from .metrics import CHANGES_SKIPPED

__all__ = ["POLICIES", "Change", "ChangeGate", "ObjectKind", "WritePolicy", "is_read"]

log = logging.getLogger(__name__)

Change = Literal["create", "update", "delete"]
ObjectKind = Literal[
    "dns_record", "tunnel_rule", "access_app", "access_policy", "service_token", "tunnel", "identity_provider"
]

_LABELS: dict[str, str] = {
    "dns_record": "DNS",
    "tunnel_rule": "tunnel rule",
    "access_app": "Access app",
    "access_policy": "Access policy",
    "service_token": "service token",
    "tunnel": "tunnel",
    "identity_provider": "identity provider",
}
_DOING = {"create": "creating", "update": "updating", "delete": "deleting"}
_READ_OPS = frozenset({"tunnels.token"})  # a GET that returns the connector token


def is_read(op: str) -> bool:
    """Whether the client operation `op` only reads (by its name: ``*.list``, ``*.get``, the tunnel token)."""
    return op.endswith((".list", ".get")) or op in _READ_OPS


class ChangeGate:
    """Decides, logs and counts each change the core is about to make (see the module docstring)."""

    def __init__(self, policy: str = "sync", dry_run: bool = False) -> None:
        if policy not in POLICIES:
            raise InvalidInput(f"unknown write policy {policy!r}: expected one of {', '.join(POLICIES)}")
        self.policy = cast(WritePolicy, policy)
        self.dry_run = dry_run

    @property
    def may_adopt(self) -> bool:
        """Adoption is an update of something that exists: never under create-only."""
        return self.policy != "create-only"

    def forbids(self, change: Change, *, revokes: bool = False) -> bool:
        """Whether the policy (not dry-run) skips `change`; an update that only `revokes` access is never
        skipped (see the module docstring)."""
        return forbids(self.policy, change, revokes=revokes)

    def allows(self, change: Change, obj: ObjectKind, name: str, *, needed: bool = False,
               revokes: bool = False) -> bool:
        """True when `change` of `obj` `name` must be made now. Else it is logged and counted, and False
        comes back; under dry-run a `needed` change (the caller needs its result) raises DryRunStop."""
        label = _LABELS[obj]
        if self.forbids(change, revokes=revokes):
            log.info("policy %s: not %s %s %s", self.policy, _DOING[change], label, name)
            CHANGES_SKIPPED.labels(reason="policy", object=obj, change=change).inc()
            return False
        if not self.dry_run:
            return True
        message = f"dry-run: would {change} {label} {name}"
        log.info("%s", message)
        CHANGES_SKIPPED.labels(reason="dry_run", object=obj, change=change).inc()
        if needed:
            raise DryRunStop(message)
        return False
