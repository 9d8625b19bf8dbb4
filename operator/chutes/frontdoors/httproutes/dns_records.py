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


async def _adopt(core: CloudflareCore, zone_id: str, name: str, source: str, ids: tuple[str, ...]) -> bool:
    adopted = False
    for record_id in ids:
        record = await step(f"adopting DNS record {record_id}", core.adopt_dns_record(zone_id, record_id, name, source))
        adopted = adopted or record is not None
    return adopted


async def ensure_record(core: CloudflareCore, zone_id: str, record: DesiredRecord,
                        adopt_ids: tuple[str, ...]) -> DnsRecord:
    """The record, adopting one the state recorded for this route when it lacks our marker (seed-made)."""
    doing = f"ensuring the {record.type} record {record.name}"
    try:
        return await core.ensure_dns_record(zone_id, record)
    except Conflict as conflict:
        if not await _adopt(core, zone_id, record.name, record.source, adopt_ids):
            raise problem_from_cloudflare(conflict, doing) from conflict
    except CloudflareError as exc:
        raise problem_from_cloudflare(exc, doing) from exc
    return await step(doing, core.ensure_dns_record(zone_id, record))


async def check_name(core: CloudflareCore, zone_id: str, record: DesiredRecord, adopt_ids: tuple[str, ...], *,
                     asked: bool) -> None:
    """Refuse before writing anything when a record that is not the route's holds the name (one name-filtered
    listing); a record the route's state lists (seed-made) is adopted first. With `record.adopt` (asked and
    permitted), an unmarked record of its type is no obstacle: the DNS writer takes it over. `asked`: the route
    asked for adoption (the refusal then says the operator does not permit it)."""
    doing = f"checking {record.name}"

    async def check() -> Conflict | None:
        """The refusal of one check, None when the name is free for the record."""
        try:
            await core.check_dns_name_available(zone_id, record.name, record.source, record.type, adopt=record.adopt)
        except Conflict as conflict:
            return conflict
        except CloudflareError as exc:
            raise problem_from_cloudflare(exc, doing) from exc
        return None

    refusal = await check()
    if refusal is not None and adopt_ids and await _adopt(core, zone_id, record.name, record.source, adopt_ids):
        refusal = await check()
    if refusal is None:
        return
    hint = f" ({adoption.NOT_PERMITTED})" if asked and not record.adopt and refusal.holder is None else ""
    raise Problem(c.HOSTNAME_CONFLICT, f"{refusal.message}{hint}", FOREIGN_RETRY)


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
