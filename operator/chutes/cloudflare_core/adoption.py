"""Explicit adoption of a DNS record by id: mark it as ours so the DNS writer manages it from then on.

Used when Kubernetes state written by another tool (a seed operator's state ConfigMap) records that
this record was created for the object asking. A record carrying ANOTHER owner's marker is never
adopted, nor one of ours marked for another source (it is that source's); nor is a record whose name
is not the one expected (a stale id pointing elsewhere).
Adoption is an update: never under create-only (None: not adoptable); under dry-run the caller's
next step would need the record to be ours, so it stops there (`DryRunStop`).
"""

from __future__ import annotations

import logging

from .client import CloudflareClient, to_wire
from .dns import record_from_wire
from .errors import NotFound
from .models import DnsRecord, normalize_name
from .ownership import marker, marks, parse

__all__ = ["adopt_dns_record"]

log = logging.getLogger(__name__)


async def adopt_dns_record(
    client: CloudflareClient, zone_id: str, record_id: str, name: str, owner_id: str, source: str
) -> DnsRecord | None:
    """The record `record_id`, marked as `owner_id`'s for `source`; None when it does not exist, is
    named otherwise, or is marked by another owner or for another source (left untouched)."""
    records = client.sdk.dns.records
    try:
        found = await client.call("dns.get", records.get, record_id, zone_id=zone_id)
    except NotFound:
        return None
    record = record_from_wire(to_wire(found))
    if record.name != normalize_name(name):
        return None
    if marks(record.comment, owner_id, source):
        return record
    if parse(record.comment) is not None:
        return None  # another installation's record, or ours for another source
    what = f"{record.type} {record.name} (id {record_id}: adopting it for {source})"
    if not client.gate.allows("update", "dns_record", what, needed=True):
        return None  # the policy forbids updates
    edited = await client.call(
        "dns.edit",
        records.edit,
        record_id,
        zone_id=zone_id,
        name=record.name,
        type=record.type,
        ttl=record.ttl,
        comment=marker(owner_id, source),
    )
    log.info("Adopted DNS record %s %s (id %s) for %s", record.type, record.name, record_id, source)
    return record_from_wire(to_wire(edited))
