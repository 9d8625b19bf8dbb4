"""Ownership: the DNS marker kept in the record `comment` (the only place Free plans allow), and the
owner-qualified names of the objects that have no comment (tunnels, Access apps, service tokens).

    chutes-operator owner=<owner_id> src=<Kind/namespace/name>

Always at most 100 characters (the Free-plan comment limit): a long or odd source is cut and
given a stable hash suffix. A record whose comment does not carry OUR owner id is never
updated or deleted.

Names: the default owner keeps the seeds' names (``chute-<ns>-<name>``, ``cfzt-<hostname>``) so existing
installations are found again; any other owner id is appended after ``@`` (``chute-ns-web@blue``), a
character no Kubernetes name, hostname or owner id contains, so a name says unambiguously whose it is.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from .errors import InvalidInput

__all__ = [
    "DEFAULT_OWNER",
    "MARKER_PREFIX",
    "MAX_COMMENT",
    "Ownership",
    "is_our_name",
    "is_ours",
    "marker",
    "name_owner",
    "owned_name",
    "parse",
    "validate_owner_id",
]

DEFAULT_OWNER = "default"

MARKER_PREFIX = "chutes-operator"
MAX_COMMENT = 100
_OWNER_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
_SOURCE_CHARS = re.compile(r"^[A-Za-z0-9._:/@-]+$")
_MARKER = re.compile(rf"^{MARKER_PREFIX} owner=([a-z0-9][a-z0-9-]{{0,31}}) src=(\S+)$")
_HASH_LEN = 10


@dataclass(frozen=True)
class Ownership:
    owner_id: str
    source: str


def validate_owner_id(owner_id: str) -> str:
    if not _OWNER_ID.match(owner_id):
        raise InvalidInput(f"invalid owner id {owner_id!r}: expected [a-z0-9][a-z0-9-]{{0,31}}")
    return owner_id


def marker(owner_id: str, source: str) -> str:
    """The comment marking a record as owned by `owner_id` for `source`; ≤ 100 characters."""
    validate_owner_id(owner_id)
    head = f"{MARKER_PREFIX} owner={owner_id} src="
    room = MAX_COMMENT - len(head)
    if _SOURCE_CHARS.match(source) and len(source) <= room:
        return head + source
    digest = hashlib.sha256(source.encode()).hexdigest()[:_HASH_LEN]
    cleaned = re.sub(r"[^A-Za-z0-9._:/@-]", "_", source)
    keep = room - _HASH_LEN - 1
    return f"{head}{cleaned[:keep]}~{digest}"


def parse(comment: str | None) -> Ownership | None:
    if not comment:
        return None
    found = _MARKER.match(comment.strip())
    if found is None:
        return None
    return Ownership(owner_id=found.group(1), source=found.group(2))


def is_ours(comment: str | None, owner_id: str) -> bool:
    found = parse(comment)
    return found is not None and found.owner_id == owner_id


def owned_name(base: str, owner_id: str) -> str:
    """The Cloudflare name of an object of ours whose seed name is `base`: `base` for the default owner,
    else ``base@owner``."""
    validate_owner_id(owner_id)
    return base if owner_id == DEFAULT_OWNER else f"{base}@{owner_id}"


def name_owner(name: str) -> tuple[str, str]:
    """(base, owner id) of a name made by :func:`owned_name`; a name without a valid ``@owner`` suffix
    belongs to the default owner."""
    base, at, owner = name.rpartition("@")
    if at and base and _OWNER_ID.match(owner):
        return base, owner
    return name, DEFAULT_OWNER


def is_our_name(name: str, owner_id: str, prefix: str) -> bool:
    """Whether `name` is one of `owner_id`'s names starting with `prefix` (e.g. ``chute-``)."""
    base, owner = name_owner(name)
    return owner == owner_id and base.startswith(prefix)
