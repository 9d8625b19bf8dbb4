"""DNS record endpoints (create, list, get, PUT, PATCH, delete); rules live in dns_records."""

from __future__ import annotations

from . import dns_records
from .dns_filters import select
from .envelope import PageRules, Reply, paginate
from .routing import Ctx, Route

PAGES = PageRules(default_per_page=100, max_per_page=50_000, error_code=dns_records.VALIDATION)


def _records(ctx: Ctx) -> dict[str, dict[str, object]]:
    return ctx.state.dns[ctx.zone.id]


def create(ctx: Ctx) -> Reply:
    return Reply(dns_records.create(ctx.zone, _records(ctx), ctx.json_object(dns_records.VALIDATION)))


def list_(ctx: Ctx) -> Reply:
    return paginate(select(list(_records(ctx).values()), ctx.query), ctx.query, PAGES)


def get(ctx: Ctx) -> Reply:
    record = _records(ctx).get(ctx.params["dns_record_id"])
    if record is None:
        raise dns_records.not_found()
    return Reply(record)


def update(ctx: Ctx) -> Reply:
    body = ctx.json_object(dns_records.VALIDATION)
    return Reply(dns_records.replace(ctx.zone, _records(ctx), ctx.params["dns_record_id"], body))


def edit(ctx: Ctx) -> Reply:
    body = ctx.json_object(dns_records.VALIDATION)
    return Reply(dns_records.patch(ctx.zone, _records(ctx), ctx.params["dns_record_id"], body))


def delete(ctx: Ctx) -> Reply:
    record = dns_records.delete(_records(ctx), ctx.params["dns_record_id"])
    return Reply({"id": record["id"]})


_R = "/zones/{zone_id}/dns_records"
ROUTES = [
    Route("POST", _R, "dns.create", create, mutates=True),
    Route("GET", _R, "dns.list", list_),
    Route("GET", _R + "/{dns_record_id}", "dns.get", get),
    Route("PUT", _R + "/{dns_record_id}", "dns.update", update, mutates=True),
    Route("PATCH", _R + "/{dns_record_id}", "dns.edit", edit, mutates=True),
    Route("DELETE", _R + "/{dns_record_id}", "dns.delete", delete, mutates=True),
]
