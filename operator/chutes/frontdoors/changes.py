"""The change set a front door's *decide* step returns, filtered as a whole by the write policy and dry-run,
and applied in order (see ``frontdoors/README.md``). Pure, except :func:`apply`, which awaits the door's own
executor for each change it lets through.

A :class:`Change` says what a user would read (``create DNS record app.example.com``) and carries what the
executor needs (``payload``, immutable and door-specific; never a secret: changes are logged and printed).
Its position in the set is its order; ``needs`` names earlier changes (by ``key``) it cannot be made without:
a change whose need is held back is held back too (a CNAME is not created while the Access application that
must protect its hostname was not).

:func:`admit` splits a set into the changes to make now and the ones held back, with why: the policy
(:func:`chutes.write_policy.forbids`, never an update that only revokes access nor a change the policy does not
govern), dry-run (everything but an ``ensure``, which its maker filters), or a held need. ``chutes plan``, dry-run
and the logs print the same lines (:func:`describe`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from chutes.write_policy import Action, forbids

__all__ = ["Admitted", "Change", "Decision", "admit", "apply", "describe"]

P = TypeVar("P")

LABELS: dict[str, str] = {
    "dns_record": "DNS record",
    "tunnel_rule": "tunnel rule",
    "tunnel": "tunnel",
    "access_app": "Access application",
    "access_policy": "Access policy",
    "service_token": "service token",
    "identity_provider": "identity provider",
    "host_entry": "host entry",
}
_SIGNS = {"create": "+", "update": "~", "delete": "-"}


@dataclass(frozen=True)
class Change(Generic[P]):
    action: Action
    kind: str  # a key of LABELS, or a Kubernetes kind ("Secret", "Deployment", "IngressRoute"...)
    name: str  # what a user reads: a hostname, an object name; never a secret
    payload: P
    detail: str = ""  # e.g. "-> 10.0.0.5" or "ip 10.0.0.4 -> 10.0.0.5"; never a secret
    key: str = ""  # how later changes name this one in `needs` (default: kind/name)
    needs: tuple[str, ...] = ()
    revokes: bool = False  # an update that only withdraws access: no policy holds it back
    # An update of an object that exists, whose difference only its maker sees (the core compares it with the live
    # object, writes only what differs, and applies the write policy and dry-run itself, field by field). Neither
    # holds it back here; a held need does.
    ensure: bool = False
    governed: bool = True  # False: an object the ledger alone decides (a tunnel's ConfigMap): no policy holds it

    @property
    def ref(self) -> str:
        return self.key or f"{self.kind}/{self.name}"


@dataclass(frozen=True)
class Decision(Generic[P]):
    """What *decide* returns: the changes in the order the safety rules need, and the problems its checks found
    (each a reason and a message for a condition and an Event). A door applies no change of a decision with a
    problem that blocks the whole object; which problems block is the door's rule, said in its docstring."""

    changes: tuple[Change[P], ...] = ()
    problems: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Admitted(Generic[P]):
    now: tuple[Change[P], ...]
    held: tuple[tuple[Change[P], str], ...] = field(default=())  # (change, why)

    def lines(self) -> list[str]:
        """What ``chutes plan``, dry-run and the logs print: one line per change, held ones with why."""
        return [describe(change) for change in self.now] + [f"{describe(change)} (held: {why})"
                                                            for change, why in self.held]


def describe(change: Change[Any]) -> str:
    label = LABELS.get(change.kind, change.kind)
    tail = f" {change.detail}" if change.detail else ""
    return f"{_SIGNS[change.action]} {change.action} {label} {change.name}{tail}"


def admit(changes: Iterable[Change[P]], policy: str, *, dry_run: bool = False) -> Admitted[P]:
    """Split `changes` into the ones to make now, in order, and the ones held back (see the module docstring)."""
    now: list[Change[P]] = []
    held: list[tuple[Change[P], str]] = []
    held_refs: set[str] = set()
    for change in changes:
        why = ""
        if dry_run and not change.ensure:
            why = "dry-run"
        elif not change.ensure and change.governed and forbids(policy, change.action, revokes=change.revokes):
            why = f"policy {policy}"
        elif blocked := [need for need in change.needs if need in held_refs]:
            why = f"needs {blocked[0]}"
        if why:
            held.append((change, why))
            held_refs.add(change.ref)
        else:
            now.append(change)
    return Admitted(tuple(now), tuple(held))


async def apply(admitted: Admitted[P], run: Callable[[Change[P]], Awaitable[None]],
                log: logging.Logger | None = None) -> None:
    """Make the admitted changes in order through `run` (the door's executor, which goes through the core);
    the first failure stops the rest (raised). Held changes are logged at INFO."""
    for change, why in admitted.held:
        (log or logging.getLogger(__name__)).info("not made: %s (%s)", describe(change), why)
    for change in admitted.now:
        await run(change)
