"""A route's DNS records in its zone: ensured (a record the route's state lists, made by the seed without our
marker, is adopted first), the name checked before anything is written (a record that is not the route's holds
it: ``HostnameConflict``), and deleted only when its marker names the route.
"""

from __future__ import annotations

from chutes import conditions as c
from chutes.cloudflare_core import CloudflareCore, CloudflareError, Conflict, DesiredRecord, DnsRecord
from chutes.frontdoors import adoption
from chutes.frontdoors.httproutes.problems import EventSink, Problem, problem_from_cloudflare, step
from chutes.frontdoors.retries import FOREIGN_RETRY


async def ensure_record(core: CloudflareCore, zone_id: str, record: DesiredRecord,
                        adopt_ids: tuple[str, ...]) -> DnsRecord:
    """The record, adopting one the state recorded for this route when it lacks our marker (seed-made)."""
    return await step(f"ensuring the {record.type} record {record.name}",
                      core.ensure_dns_record(zone_id, record, proven_ids=adopt_ids))


async def check_name(core: CloudflareCore, zone_id: str, record: DesiredRecord, adopt_ids: tuple[str, ...], *,
                     asked: bool) -> None:
    """Refuse before writing anything when a record that is not the route's holds the name (one name-filtered
    listing); a record the route's state lists (seed-made) is adopted first. With `record.adopt` (asked and
    permitted), an unmarked record of its type is no obstacle: the DNS writer takes it over. `asked`: the route
    asked for adoption (the refusal then says the operator does not permit it)."""
    try:
        await core.check_dns_name_available(zone_id, record.name, record.source, record.type, adopt=record.adopt,
                                            proven_ids=adopt_ids)
    except Conflict as refusal:
        hint = f" ({adoption.NOT_PERMITTED})" if asked and not record.adopt and refusal.holder is None else ""
        raise Problem(c.HOSTNAME_CONFLICT, f"{refusal.message}{hint}", FOREIGN_RETRY) from refusal
    except CloudflareError as exc:
        raise problem_from_cloudflare(exc, f"checking {record.name}") from exc


async def delete_record(core: CloudflareCore, zone_id: str, name: str, type_: str, source: str,
                        events: EventSink) -> None:
    """The route's own `type_` record at `name` (its marker names the route); any other stays, with a Warning."""
    doing = f"removing the {type_} record {name}"
    try:
        await core.delete_dns_record(zone_id, name, type_, source)
    except Conflict as conflict:
        events.warning(c.HOSTNAME_CONFLICT, f"{doing}: left in place, not ours ({conflict.message})")
    except CloudflareError as exc:
        raise problem_from_cloudflare(exc, doing) from exc
