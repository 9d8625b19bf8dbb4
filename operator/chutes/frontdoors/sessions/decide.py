"""The session door's *decide* step (pure), in batch form: from the sessions the live Pods want and what one pass
read (the zone's DNS records, the tunnel's rules, our IngressRoutes, the installation's claims), the change set of
the whole pass and the problems found (``frontdoors/README.md``).

The checks, each blocking its session only (nothing is written for it; its Pods get a Warning ``HostnameConflict``):

1. claims: another source (another door's ChuteGateway or HTTPRoute) claims the hostname and the session holds no
   record proven its own there (its record, made first, is its claim: it keeps it);
2. rules: a session the last pass did not publish (`Inputs.fresh`) whose hostname has a rule in the tunnel and no
   DNS record at all: someone else's rule (a record of ours would make it routable, and the next rule sync would
   take it for ours); asked only when the rules were read;
3. DNS: a record in the way that is not the session's (the core's rule: ``dns_plan.plan_ensure``).

The changes, in order: the DNS records to create or update; each live session's tunnel rule (needing its record's
create: the record proves the rule ours; an *ensure* when the rules were not read: the core compares) and its two
IngressRoutes; then the rules of the stale records, the IngressRoutes of no live session, and the stale records,
each after its rule. A stale record is ours (proven by its whole marker), of no session wanted, not protected (the
watch reports its session alive) and allowed by the deletion cap (:class:`chutes.sweep.cap.Allowance`: removals
the watch explains are never held). IngressRoutes are Kubernetes objects the door always writes (as the gateway
door's Secret and Deployment): ensures, which neither the write policy nor dry-run holds (they govern Cloudflare).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from chutes import conditions as c
from chutes.cloudflare_core.dns_plan import plan_ensure
from chutes.cloudflare_core.errors import CloudflareError, Conflict
from chutes.cloudflare_core.models import DesiredRecord, DnsRecord, IngressRule
from chutes.cloudflare_core.ownership import is_ours
from chutes.frontdoors import adoption
from chutes.frontdoors.changes import Change, Decision
from chutes.frontdoors.sessions import desired as d
from chutes.frontdoors.sessions.config import SessionConfig
from chutes.sweep.cap import Allowance
from chutes.write_policy import Action

__all__ = ["Inputs", "Outcome", "Write", "blocked_message", "blocked_reason", "decide"]


@dataclass(frozen=True)
class Write:
    """What the executor needs for one change: the session hostname it serves, and the record (a desired one to
    ensure, a listed one to delete), the rule or the IngressRoute (a manifest; None: delete by name)."""

    hostname: str
    record: DesiredRecord | DnsRecord | None = None
    rule: IngressRule | None = None
    route: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Inputs:
    """What one pass read (the zone's records; the tunnel's rules, None when not read; the IngressRoutes labelled
    ours; the wanted hostnames another source claims -> holder) and the rest of its judgement: hashes the watch
    reports alive that the listing missed (`protected`), hostnames whose removal the watch explains, the cap's room
    (None: no cap), the hostnames the last pass did not publish (`fresh`), whether a record may be adopted."""

    records: Sequence[DnsRecord] = ()
    rules: Sequence[Mapping[str, Any]] | None = None
    routes: Sequence[Mapping[str, Any]] = ()
    claimed: Mapping[str, str] = field(default_factory=dict)
    protected: frozenset[str] = frozenset()
    explained: frozenset[str] = frozenset()
    room: int | None = None
    fresh: frozenset[str] = frozenset()
    may_adopt: bool = True


@dataclass(frozen=True)
class Outcome:
    """The decision, the sessions to publish (`live`), the ones blocked with (reason, message), and the orphan
    hostnames the cap held back (`held`) or let go (`allowed`: to charge it with once removed)."""

    decision: Decision[Write]
    live: tuple[d.Session, ...] = ()
    blocked: tuple[tuple[d.Session, str, str], ...] = ()
    held: tuple[str, ...] = ()
    allowed: tuple[str, ...] = ()


def decide(config: SessionConfig, sessions: Mapping[str, d.Session], inputs: Inputs, owner_id: str) -> Outcome:
    """The change set of one pass and its problems (see the module)."""
    by_name: dict[str, list[DnsRecord]] = {}
    for listed_record in inputs.records:
        by_name.setdefault(listed_record.name, []).append(listed_record)
    listed = [rule for rule in inputs.rules or () if isinstance(rule, Mapping)]
    first = {str(rule.get("hostname") or ""): rule for rule in reversed(listed)}  # the first rule of each hostname
    rules = {str(rule.get("hostname") or ""): rule for rule in listed if not rule.get("path")}
    creates: list[Change[Write]] = []
    publish: list[Change[Write]] = []
    live: list[d.Session] = []
    blocked: list[tuple[d.Session, str, str]] = []
    wanted: set[str] = set()
    for session in sessions.values():
        host = session.hostname
        holder = inputs.claimed.get(host)
        if holder and not d.proven_hostnames(config, by_name.get(host, ()), owner_id):
            blocked.append((session, c.HOSTNAME_CONFLICT, f"{host} is claimed by {holder} (one hostname, one holder); "
                            "nothing is published"))
            continue
        if inputs.rules is not None and host in inputs.fresh and host in first and host not in by_name:
            blocked.append((session, c.HOSTNAME_CONFLICT, _foreign_rule_message(config, host, first[host])))
            continue
        wanted.add(host)
        record = d.dns_record(config, session)
        try:
            plan = plan_ensure(record, by_name.get(host, ()), owner_id, may_adopt=inputs.may_adopt)
        except Conflict as error:
            blocked.append((session, c.HOSTNAME_CONFLICT, blocked_message(session, error)))
            continue
        live.append(session)
        needs: tuple[str, ...] = ()
        if plan.action:
            action: Action = "create" if plan.action == "create" else "update"
            creates.append(Change(action, "dns_record", host, Write(host, record=record),
                                  f"CNAME -> {record.content} (proxied){' (adopting it)' if plan.adopted else ''}"))
            needs = (creates[-1].ref,) if action == "create" or plan.adopted else ()  # what proves the rule ours
        publish += _rule_change(config, session, inputs.rules is not None, rules.get(host), needs)
    stale, held, allowed = _stale(config, wanted, owner_id, inputs)
    removals = [Change("delete", "tunnel_rule", name, Write(name)) for name in dict.fromkeys(r.name for r in stale)
                if inputs.rules is None or name in rules]  # when read, only a rule that is there
    keep = {d.route_name(d.Session(value, d.first_label(config, value), ""), kind)
            for value in inputs.protected for kind in d.ROUTE_KINDS}
    routes = d.route_changes(config, live, inputs.routes, keep=keep)
    changes = [*creates, *publish, *_route_changes(config, live, routes), *removals,
               *(Change("delete", "IngressRoute", name, Write(""), ensure=True) for name in routes.delete),
               *(_record_delete(record, removals) for record in stale)]
    return Outcome(Decision(tuple(changes), tuple((reason, message) for _, reason, message in blocked)),
                   tuple(live), tuple(blocked), held, allowed)


def _rule_change(config: SessionConfig, session: d.Session, read: bool, current: Mapping[str, Any] | None,
                 needs: tuple[str, ...]) -> list[Change[Write]]:
    """The session's rule: an ensure when the rules were not read, else a create, an update or nothing."""
    rule = d.tunnel_rule(config, session)
    if read and current is not None and {k: v for k, v in current.items() if v not in (None, {}, [], "")} == \
            rule.to_wire():
        return []
    action: Action = "create" if read and current is None else "update"
    return [Change(action, "tunnel_rule", session.hostname, Write(session.hostname, rule=rule),
                   f"-> {rule.service}", needs=needs, ensure=not read)]


def _record_delete(record: DnsRecord, removals: Sequence[Change[Write]]) -> Change[Write]:
    needs = tuple(change.ref for change in removals if change.name == record.name)
    return Change("delete", "dns_record", record.name, Write(record.name, record=record),
                  f"({record.type}, id {record.id})", key=f"dns_record/{record.id}", needs=needs)


def _route_changes(config: SessionConfig, live: Sequence[d.Session], routes: d.RouteChanges) -> list[Change[Write]]:
    hosts = {d.route_name(session, kind): session.hostname for session in live for kind in d.ROUTE_KINDS}
    made: tuple[tuple[Action, tuple[dict[str, Any], ...]], ...] = (("create", routes.create), ("update", routes.update))
    return [Change(action, "IngressRoute", route["metadata"]["name"],
                   Write(hosts[route["metadata"]["name"]], route=route), f"({config.ingressroute_namespace})",
                   ensure=True)
            for action, found in made for route in found]


def _stale(config: SessionConfig, wanted: set[str], owner_id: str,
           inputs: Inputs) -> tuple[list[DnsRecord], tuple[str, ...], tuple[str, ...]]:
    """Our records of no wanted session, not protected, that the cap lets go (asked in the listing's order), sorted;
    the hostnames the cap held, and those it allowed."""
    protected = {d.hostname(config, value) for value in inputs.protected}
    cap = Allowance(inputs.room, inputs.explained)
    stale = [record for record in inputs.records
             if record.name not in wanted and is_ours(record.comment, owner_id)
             and d.owns_record(config, record, owner_id) and record.name not in protected and cap.allows(record.name)]
    return (sorted(stale, key=lambda record: (record.name, record.type, record.id)),
            tuple(sorted(str(name) for name in cap.held)), tuple(str(name) for name in cap.allowed))


def blocked_reason(error: CloudflareError) -> str:
    return c.HOSTNAME_CONFLICT if isinstance(error, Conflict) else c.CLOUDFLARE_REJECTED


def blocked_message(session: d.Session, error: CloudflareError) -> str:
    if isinstance(error, Conflict):
        holder = f"{error.holder}'s DNS record" if error.holder else "a DNS record this operator does not own"
        refused = f" ({adoption.NOT_PERMITTED})" if session.asked_adoption and not session.adopt else ""
        return f"{session.hostname} is held by {holder}{refused}; nothing is published"
    return f"{session.hostname}: Cloudflare refused the DNS record ({error}); nothing is published"


def _foreign_rule_message(config: SessionConfig, host: str, rule: Mapping[str, Any]) -> str:
    path = f", path {rule['path']}" if rule.get("path") else ""
    return (f"{host} already has a rule in tunnel {config.tunnel_id} that this operator did not make "
            f"(→ {rule.get('service')}{path}): left untouched; nothing is published")
