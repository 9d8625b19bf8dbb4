"""What ensuring one DNS record needs, judged on the records listed at its name (pure; no I/O).

The ownership rules of a record (external-dns style): only a record whose marker names our owner id AND the
asking source is changed or deleted; any other record in the way (of the same type, a CNAME beside anything, an
address record beside one of the other address type) is a :class:`Conflict`, naming its holder when it is ours for
another source, unless the desired record asks for adoption, adoption is permitted and the record carries no
chutes-operator marker at all. The DNS writer plans every write with :func:`plan_ensure`; a front door that
decides from a listing of its own (the session door) asks it too, so that both judge alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .errors import Conflict
from .models import DesiredRecord, DnsRecord, normalize_name
from .ownership import MARKER_PREFIX, marker, marks, parse

__all__ = ["EnsurePlan", "adoptable", "clash", "plan_ensure", "record_body", "refusal"]

PROXIABLE = frozenset({"A", "AAAA", "CNAME"})
_ADDRESS = frozenset({"A", "AAAA"})


def refusal(name: str, blocking: Sequence[DnsRecord], owner_id: str, source: str) -> Conflict:
    """The Conflict of `source` about `blocking` records: held by another source of this installation
    (named, and in `holder`) when one is, else foreign."""
    for record in blocking:
        found = parse(record.comment)
        if found is not None and found.owner_id == owner_id:
            return Conflict(
                f"{name}: the {record.type} record of owner {owner_id} is held by {found.source}, "
                f"not by {source}: left untouched",
                holder=found.source,
            )
    types = ", ".join(sorted({record.type for record in blocking}))
    return Conflict(f"{name}: a {types} record not owned by {owner_id} exists: left untouched")


def adoptable(record: DnsRecord, wanted_type: str) -> bool:
    """A record adoption may take over: same type, and no chutes-operator marker at all (any owner)."""
    return record.type == wanted_type and not (record.comment or "").strip().startswith(MARKER_PREFIX)


def clash(wanted_type: str, existing_type: str) -> bool:
    """Whether a record of `existing_type` stands in the way of one of `wanted_type`: the same type, a CNAME
    beside anything, or an address record beside one of the other address type (A and AAAA answer for the
    same name: an IPv6-only name made by hand must not get our A record beside it; our own other address
    record is replaced in the same batch)."""
    return (
        wanted_type == existing_type
        or "CNAME" in (wanted_type, existing_type)
        or {wanted_type, existing_type} <= _ADDRESS
    )


def _same_content(record_type: str, left: str, right: str) -> bool:
    if record_type in ("CNAME", "NS", "MX", "PTR"):
        return normalize_name(left) == normalize_name(right)
    return left == right


def record_body(desired: DesiredRecord, comment: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": desired.name,
        "type": desired.type,
        "content": desired.content,
        "ttl": desired.effective_ttl,
        "comment": comment,
    }
    if desired.type in PROXIABLE:
        body["proxied"] = desired.proxied
    return body


@dataclass(frozen=True)
class EnsurePlan:
    """The writes one desired record needs: our clashing records to delete (ids), the record to POST or to
    PATCH (wire body; a patch carries the id), the record as it stands (None: none yet), and the unmarked
    records it adopts."""

    deletes: tuple[str, ...] = ()
    post: dict[str, Any] | None = None
    patch: dict[str, Any] | None = None
    current: DnsRecord | None = None
    adopted: tuple[DnsRecord, ...] = ()

    @property
    def action(self) -> str:
        """``create``, ``update`` (a patch, or our clashing records to delete), or "" (nothing to write)."""
        return "create" if self.post is not None else "update" if self.patch is not None or self.deletes else ""


def plan_ensure(desired: DesiredRecord, existing: Sequence[DnsRecord], owner_id: str, *,
                may_adopt: bool = True) -> EnsurePlan:
    """What ensuring `desired` needs given the records named like it (see the module); raises Conflict when a
    record that is not the source's is in the way."""
    source = desired.source
    blocking = [record for record in existing
                if not marks(record.comment, owner_id, source) and clash(desired.type, record.type)]
    adopted = tuple(r for r in blocking if desired.adopt and may_adopt and adoptable(r, desired.type))
    foreign = [record for record in blocking if record not in adopted]
    if foreign:
        raise refusal(desired.name, foreign, owner_id, source)
    comment = marker(owner_id, source)
    ours = [record for record in existing if marks(record.comment, owner_id, source)] + list(adopted)
    current = next((record for record in ours if record.type == desired.type), None)
    deletes = tuple(record.id for record in ours if record is not current and clash(desired.type, record.type))
    body = record_body(desired, comment)
    if current is None:
        return EnsurePlan(deletes, post=body, adopted=adopted)
    up_to_date = (
        _same_content(desired.type, current.content, desired.content)
        and (current.proxied == desired.proxied or desired.type not in PROXIABLE)
        and current.ttl == desired.effective_ttl
        and current.comment == comment
    )
    patch = None if up_to_date else {"id": current.id, **body}
    return EnsurePlan(deletes, patch=patch, current=current, adopted=adopted)
