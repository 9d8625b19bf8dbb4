"""DNS record endpoints (create, list, get, PUT, PATCH, delete); rules live in dns_records."""

from __future__ import annotations

from . import dns_records
from .dns_filters import select
from .envelope import PageRules, Reply, paginate
from .routing import Ctx, collection_routes

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


ROUTES = collection_routes("/zones/{zone_id}/dns_records", "dns_record_id", "dns",
                           create=create, list_=list_, get=get, update=update, edit=edit, delete=delete)
