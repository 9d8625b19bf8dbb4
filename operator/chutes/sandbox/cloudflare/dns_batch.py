"""DNS batch: deletes → patches → puts → posts on a copy of the zone, committed only if every
action succeeds; the first failure is answered as HTTP 400 with its own code and a
``source.pointer`` naming the action (e.g. ``/posts/3``). Over 200 actions (Free) or 3,500
(paid) → 400/1004."""

from __future__ import annotations

import copy
from typing import Any

from . import dns_records
from .envelope import ApiError, Reply
from .routing import Ctx, Route

VALIDATION = dns_records.VALIDATION
KINDS = ("deletes", "patches", "puts", "posts")


def _actions(body: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    actions: dict[str, list[dict[str, Any]]] = {}
    for kind in KINDS:
        items = body.get(kind) or []
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise ApiError(400, VALIDATION, f"'{kind}' must be a list of objects")
        actions[kind] = items
    return actions


def batch(ctx: Ctx) -> Reply:
    zone = ctx.zone
    actions = _actions(ctx.json_object(VALIDATION))
    total = sum(len(items) for items in actions.values())
    limit = dns_records.batch_limit(zone)
    if total > limit:
        raise ApiError(400, VALIDATION, f"Too many actions in one batch: {total} (the limit for this plan is {limit})")
    work = copy.deepcopy(ctx.state.dns[zone.id])
    result: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    for kind in KINDS:
        for index, item in enumerate(actions[kind]):
            try:
                if kind == "deletes":
                    record = dns_records.delete(work, item.get("id"))
                elif kind == "patches":
                    record = dns_records.patch(zone, work, item.get("id"), item)
                elif kind == "puts":
                    record = dns_records.replace(zone, work, item.get("id"), item)
                else:
                    record = dns_records.create(zone, work, item)
            except ApiError as error:
                raise ApiError(400, error.code, error.message, pointer=f"/{kind}/{index}") from None
            result[kind].append(copy.deepcopy(record))
    ctx.state.dns[zone.id] = work
    return Reply(result)


ROUTES = [Route("POST", "/zones/{zone_id}/dns_records/batch", "dns.batch", batch, mutates=True)]
