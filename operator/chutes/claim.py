"""One claim as the ledger records it, and the names derived from what is claimed: pure (no I/O), so the doors'
pure decisions can take claims as inputs. The ledger itself (reads and writes) is :mod:`chutes.claims`, which
re-exports all of this."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from chutes.cloudflare_core.models import Recorded

ClaimKind = Literal["hostname", "tunnel"]
CLAIM_KINDS: tuple[ClaimKind, ...] = get_args(ClaimKind)

# The objects a claim records today (an entry may have any other ConfigMap key that is not reserved).
TUNNEL = "tunnel"
ACCESS_APP = "access_app"
ACCESS_POLICY = "access_policy"
SERVICE_TOKEN = "service_token"
TUNNEL_RULE = "tunnel_rule"
DNS = "dns"
OBJECTS = (TUNNEL, ACCESS_APP, ACCESS_POLICY, SERVICE_TOKEN, TUNNEL_RULE, DNS)
RESERVED = frozenset({"kind", "key", "source", "claimed_at"})

NAME_PREFIX = "chutes-claim-"
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def normalize_key(kind: ClaimKind, key: str) -> str:
    """Hostnames: lower case, no trailing dot. Tunnel keys (``<account>/<name>``): as given."""
    if kind not in CLAIM_KINDS:
        raise ValueError(f"unknown claim kind {kind!r}: expected one of {', '.join(CLAIM_KINDS)}")
    normalized = key.strip().lower().rstrip(".") if kind == "hostname" else key
    if not normalized:
        raise ValueError(f"an empty {kind} cannot be claimed")
    return normalized


def claim_name(owner_id: str, kind: ClaimKind, key: str) -> str:
    """The ConfigMap name of a claim: derived from (owner, kind, key), so there is one per thing claimed."""
    return NAME_PREFIX + _sha(f"{owner_id}|{kind}|{normalize_key(kind, key)}")[:20]


def source_hash(source: str) -> str:
    return _sha(source)[:20]


def split_source(source: str) -> tuple[str, str, str]:
    """(kind, namespace, name) of ``Kind/namespace/name``; :class:`ValueError` for anything else."""
    parts = source.split("/", 2)
    if len(parts) != 3 or not parts[0] or not parts[2]:
        raise ValueError(f"a claim's source must be Kind/namespace/name, got {source!r}")
    kind, namespace, _name = parts
    for value in (kind, namespace):
        if len(value) > 63 or not _LABEL_VALUE.match(value):
            raise ValueError(f"a claim's source must be Kind/namespace/name, got {source!r}")
    return parts[0], parts[1], parts[2]


@dataclass(frozen=True)
class Claim:
    """One claim as read from (or written to) the ledger."""

    kind: ClaimKind
    key: str
    source: str  # Kind/namespace/name
    entries: Mapping[str, Mapping[str, Any]]
    claimed_at: str
    fresh: bool = False  # created by this acquire() call
    name: str = ""  # the ConfigMap's name
    uid: str = ""
    version: str = field(default="", compare=False)  # its resourceVersion as read: what a conditional release needs

    def entry(self, obj: str) -> Mapping[str, Any] | None:
        return self.entries.get(obj)

    def recorded(self, obj: str) -> Recorded:
        """What the ledger says about ``obj``: its id once created, the time its creation was intended."""
        found = self.entries.get(obj) or {}
        ident, since = found.get("id"), found.get("since")
        return Recorded(id=str(ident) if ident else None, since=str(since) if since else None)


class ClaimChanged(Exception):
    """A conditional release found the claim written since it was read (another attempt recorded something in it):
    it stays, to be judged again as it is now."""


class HeldElsewhere(Exception):
    """The hostname or tunnel is claimed by another source (``holder``, ``Kind/namespace/name``)."""

    def __init__(self, claim: Claim) -> None:
        self.claim = claim
        self.holder = claim.source
        super().__init__(f"{claim.kind} {claim.key} is held by {claim.source}")
