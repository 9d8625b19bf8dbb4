"""Ownership: the DNS marker kept in the record `comment` (the only place Free plans allow), and the
owner-qualified names of the objects that have no comment (tunnels, Access apps, service tokens).

    chutes-operator owner=<owner_id> src=<Kind/namespace/name>

Always at most 100 characters (the Free-plan comment limit). A long or odd source keeps its
``Kind/namespace/`` intact and its name becomes ``<as much of it as fits>~<sha256(source)[:10]>``;
when even ``Kind/namespace/~<hash>`` cannot fit, :class:`MarkerTooLong` (use a shorter owner id).
Earlier versions cut the whole source instead (:func:`legacy_marker`); both are recognised.

A record is ours for a request only when its marker names OUR owner id AND the asking source
(:func:`marks`); a record of our owner id and another source is that source's, never the request's.
`is_ours` (owner id only) answers "is it this installation's at all".

Names: the default owner keeps the seeds' names (``chute-<ns>-<name>``, ``cfzt-<hostname>``) so existing
installations are found again; any other owner id is appended after ``@`` (``chute-ns-web@blue``), a
character no Kubernetes name, hostname or owner id contains, so a name says unambiguously whose it is.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from .errors import InvalidInput, MarkerTooLong

__all__ = [
    "DEFAULT_OWNER",
    "MARKER_PREFIX",
    "MAX_COMMENT",
    "Ownership",
    "is_our_name",
    "is_ours",
    "legacy_marker",
    "marker",
    "marker_fits",
    "marks",
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
_ODD = re.compile(r"[^A-Za-z0-9._:/@-]")


@dataclass(frozen=True)
class Ownership:
    owner_id: str
    source: str

    @property
    def kind(self) -> str:
        """The source's kind (``ChuteGateway``); "" when the marker's source has no ``/``."""
        kind, slash, _ = self.source.partition("/")
        return kind if slash else ""

    @property
    def namespace(self) -> str:
        """The source's namespace; "" unless the marker's source is ``Kind/namespace/...`` (a legacy
        marker may have cut it)."""
        parts = self.source.split("/", 2)
        return parts[1] if len(parts) == 3 else ""


def validate_owner_id(owner_id: str) -> str:
    if not _OWNER_ID.match(owner_id):
        raise InvalidInput(f"invalid owner id {owner_id!r}: expected [a-z0-9][a-z0-9-]{{0,31}}")
    return owner_id


def _head(owner_id: str) -> str:
    return f"{MARKER_PREFIX} owner={validate_owner_id(owner_id)} src="


def _digest(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:_HASH_LEN]


def _split(source: str) -> tuple[str, str]:
    """(``Kind/namespace/``, name) of a source; ("", source) when it has fewer than two ``/``."""
    parts = source.split("/", 2)
    if len(parts) < 3:
        return "", source
    return f"{parts[0]}/{parts[1]}/", parts[2]


def marker(owner_id: str, source: str) -> str:
    """The comment marking a record as owned by `owner_id` for `source` (``Kind/namespace/name``);
    ≤ 100 characters. A source that does not fit (or has odd characters) keeps ``Kind/namespace/``
    and gets a hashed tail, so the marker still says which kind and namespace it belongs to.
    Raises MarkerTooLong when even ``Kind/namespace/~<hash>`` cannot fit."""
    head = _head(owner_id)
    room = MAX_COMMENT - len(head)
    if _SOURCE_CHARS.match(source) and len(source) <= room:
        return head + source
    prefix, name = _split(source)
    prefix = _ODD.sub("_", prefix)
    keep = room - len(prefix) - _HASH_LEN - 1
    if keep < 0:
        kind, _, rest = prefix.partition("/")
        raise MarkerTooLong(
            f"the ownership marker of owner id {owner_id!r} for {kind} objects in namespace "
            f"{rest.rstrip('/')!r} cannot fit in the {MAX_COMMENT}-character DNS comment: use a shorter owner id"
        )
    return f"{head}{prefix}{_ODD.sub('_', name)[:keep]}~{_digest(source)}"


def legacy_marker(owner_id: str, source: str) -> str:
    """The marker earlier versions wrote: a source that does not fit is cut as a whole (``Kind/namespace/``
    included) and given the hash suffix. Recognised by :func:`marks`, never written any more."""
    head = _head(owner_id)
    room = MAX_COMMENT - len(head)
    if _SOURCE_CHARS.match(source) and len(source) <= room:
        return head + source
    cleaned = _ODD.sub("_", source)
    keep = room - _HASH_LEN - 1
    return f"{head}{cleaned[:keep]}~{_digest(source)}"


def marker_fits(owner_id: str, kind: str, namespace: str) -> bool:
    """Whether every source ``kind/namespace/<any name>`` gets a marker with `owner_id` (no
    MarkerTooLong): checked at start, before anything is published."""
    return len(_head(owner_id)) + len(f"{kind}/{namespace}/") + 1 + _HASH_LEN <= MAX_COMMENT


def marks(comment: str | None, owner_id: str, source: str) -> bool:
    """Whether `comment` marks a record as `owner_id`'s for `source`: it is :func:`marker` (when that
    fits) or :func:`legacy_marker` of them, or a marker whose ``src`` is literally `source` (a caller
    asking with a source read from a marker, e.g. the orphan sweep; a hashed ``src`` holds a ``~``,
    which no Kubernetes name does, so it never equals a real source)."""
    if not comment:
        return False
    found = parse(comment)
    if found is None or found.owner_id != owner_id:
        return False
    if found.source == source:
        return True
    text = comment.strip()
    try:
        if text == marker(owner_id, source):
            return True
    except MarkerTooLong:
        pass
    return text == legacy_marker(owner_id, source)


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
