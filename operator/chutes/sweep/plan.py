"""The orphan sweep's plan: what is ours in one scope (account, zones, tunnels) that no source object of the
sweeping front door claims any more, in the order it may be deleted. Pure: no I/O.

What is ours:
- a DNS record carrying our owner id's marker whose source Kind belongs to the sweeping door (the records
  of a door that is switched off, or of another door, are never judged);
- a tunnel, Access application or service token whose name is one of our owner-qualified names with the
  door's prefix (``chute-``, ``cfzt-``);
- a tunnel ingress rule in a tunnel whose configuration was read, when its hostname is that of one of our
  orphaned DNS records pointing to that tunnel (``<tunnel id>.cfargotunnel.com``), or when the tunnel is
  ours and is itself an orphan.

An orphan is one of those that no claim names: DNS records and rules by hostname, the others by name.

Order: tunnel rules, DNS records, Access applications (their app-scoped policies go with them), service
tokens, tunnels. Rules go before DNS records (a hostname then briefly answers 404): a rule can only be
proven ours through our orphaned DNS record, so a pass cut by the cap must never delete the record and
leave its rule. An Access application is never deleted while any DNS record (anyone's) for its domain
remains after the pass, or a rule for its domain remains in a tunnel whose configuration was read; nor when
its domain lies outside the zones listed (what routes to it is unknown). A tunnel is never deleted while a
DNS record that stays points to it.

The cap keeps the first `cap` deletions of that order; because the order puts every deletion before those
that depend on it, any prefix is safe. The rest waits for the next pass (its orphans are found again).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from chutes.cloudflare_core.models import AccessApp, DnsRecord, ServiceToken, Tunnel, normalize_name
from chutes.cloudflare_core.ownership import is_our_name, parse

__all__ = [
    "ACCESS_APP",
    "DNS_RECORD",
    "ORDER",
    "SERVICE_TOKEN",
    "TUNNEL",
    "TUNNEL_RULE",
    "Claims",
    "Deletion",
    "DoorNames",
    "Inventory",
    "SweepPlan",
    "orphan_record_tunnels",
    "plan",
    "tunnel_of",
]

TUNNEL_RULE = "tunnel_rule"
DNS_RECORD = "dns_record"
ACCESS_APP = "access_app"
SERVICE_TOKEN = "service_token"
TUNNEL = "tunnel"
ORDER = (TUNNEL_RULE, DNS_RECORD, ACCESS_APP, SERVICE_TOKEN, TUNNEL)
TUNNEL_SUFFIX = ".cfargotunnel.com"


@dataclass(frozen=True)
class DoorNames:
    """What the sweeping front door owns: the Kinds in the source of its DNS markers (``ChuteGateway``,
    ``HTTPRoute``), and the name prefixes of its tunnels, Access applications and service tokens (None: the
    door makes none, they are not judged)."""

    door: str
    kinds: frozenset[str]
    tunnel_prefix: str | None = None
    app_prefix: str | None = None
    token_prefix: str | None = None


@dataclass(frozen=True)
class Claims:
    """What the door's live source objects ask for or hold (hostnames: FQDNs, lower case). `namespaces`,
    when set, limits the DNS records judged to those whose source lives in one of them (a door watching some
    namespaces only knows the claims there)."""

    hostnames: frozenset[str] = frozenset()
    tunnel_names: frozenset[str] = frozenset()
    app_names: frozenset[str] = frozenset()
    token_names: frozenset[str] = frozenset()
    namespaces: frozenset[str] | None = None


@dataclass(frozen=True)
class Inventory:
    """What exists in the scope, ours or not. `zones`: zone id -> zone name; `records`: zone id -> every record
    of that zone; `rules`: tunnel id -> its ingress rules, for the tunnels whose configuration was read."""

    owner_id: str
    zones: Mapping[str, str] = field(default_factory=dict)
    records: Mapping[str, Sequence[DnsRecord]] = field(default_factory=dict)
    rules: Mapping[str, Sequence[Mapping[str, Any]]] = field(default_factory=dict)
    tunnels: Sequence[Tunnel] = ()
    apps: Sequence[AccessApp] = ()
    tokens: Sequence[ServiceToken] = ()


@dataclass(frozen=True)
class Deletion:
    """One object to delete. `name`: the record's or rule's hostname, else the object's name."""

    object: str
    name: str
    id: str = ""
    zone_id: str = ""
    type: str = ""  # DNS record type
    tunnel_id: str = ""  # a rule's tunnel
    path: str | None = None  # a rule's path
    source: str = ""  # a DNS record's marker source

    def describe(self) -> str:
        if self.object == DNS_RECORD:
            return f"DNS {self.type} {self.name} (marked for {self.source})"
        if self.object == TUNNEL_RULE:
            where = f"{self.name}{self.path or ''}"
            return f"tunnel rule {where} in tunnel {self.tunnel_id}"
        label = {ACCESS_APP: "Access application", SERVICE_TOKEN: "service token", TUNNEL: "tunnel"}[self.object]
        return f"{label} {self.name} ({self.id})"


@dataclass(frozen=True)
class SweepPlan:
    """`deletions`: this pass, in order; `deferred`: orphans over the cap (next pass); `kept`: orphans left
    in place on purpose, each with the reason."""

    deletions: tuple[Deletion, ...] = ()
    deferred: tuple[Deletion, ...] = ()
    kept: tuple[str, ...] = ()

    @property
    def capped(self) -> bool:
        return bool(self.deferred)

    @property
    def orphans(self) -> int:
        return len(self.deletions) + len(self.deferred)


def tunnel_of(content: str) -> str | None:
    """The tunnel id a CNAME target ``<id>.cfargotunnel.com`` routes to, else None."""
    target = normalize_name(content)
    if not target.endswith(TUNNEL_SUFFIX):
        return None
    tunnel = target.removesuffix(TUNNEL_SUFFIX)
    return tunnel if tunnel and "." not in tunnel else None


def _judged(record: DnsRecord, owner_id: str, names: DoorNames, claims: Claims) -> str | None:
    """The record's source when it is ours and the door's to judge, else None."""
    mark = parse(record.comment)
    if mark is None or mark.owner_id != owner_id:
        return None
    kind, _, rest = mark.source.partition("/")
    if kind not in names.kinds:
        return None
    if claims.namespaces is not None and rest.partition("/")[0] not in claims.namespaces:
        return None
    return mark.source


def _orphan_records(inventory: Inventory, names: DoorNames, claims: Claims) -> list[tuple[str, DnsRecord, str]]:
    """(zone id, record, source) of our orphaned records, in a stable order."""
    found: list[tuple[str, DnsRecord, str]] = []
    for zone_id in sorted(inventory.records):
        for record in sorted(inventory.records[zone_id], key=lambda r: (r.name, r.type, r.id)):
            source = _judged(record, inventory.owner_id, names, claims)
            if source is not None and record.name not in claims.hostnames:
                found.append((zone_id, record, source))
    return found


def orphan_record_tunnels(inventory: Inventory, names: DoorNames, claims: Claims) -> set[str]:
    """The tunnels our orphaned DNS records point to: the configurations to read before planning."""
    found: set[str] = set()
    for _zone, record, _source in _orphan_records(inventory, names, claims):
        tunnel = tunnel_of(record.content) if record.type == "CNAME" else None
        if tunnel:
            found.add(tunnel)
    return found


def _ours(name: str, owner_id: str, prefix: str | None) -> bool:
    return prefix is not None and is_our_name(name, owner_id, prefix)


def _in_zones(domain: str, zone_names: Iterable[str]) -> bool:
    return any(domain == zone or domain.endswith("." + zone) for zone in zone_names)


def plan(inventory: Inventory, names: DoorNames, claims: Claims, cap: int) -> SweepPlan:
    """The orphans of `inventory` given `claims`, ordered, the first `cap` of them to delete in this pass."""
    owner = inventory.owner_id
    kept: list[str] = []

    # Tunnels of ours nobody claims (deleted last; their rules count as ours).
    dying = {
        tunnel.id: tunnel
        for tunnel in sorted(inventory.tunnels, key=lambda t: t.name)
        if not tunnel.deleted
        and _ours(tunnel.name, owner, names.tunnel_prefix)
        and tunnel.name not in claims.tunnel_names
    }

    # DNS records, and the rules they prove ours.
    orphans = _orphan_records(inventory, names, claims)
    records: list[Deletion] = []
    seen: set[tuple[str, str, str]] = set()
    routed: set[tuple[str, str]] = set()  # (tunnel id, hostname) our orphaned records route
    for zone_id, record, source in orphans:
        tunnel = tunnel_of(record.content) if record.type == "CNAME" else None
        if tunnel:
            routed.add((tunnel, record.name))
        key = (zone_id, record.name, record.type)
        if key not in seen:
            seen.add(key)
            records.append(Deletion(DNS_RECORD, record.name, record.id, zone_id=zone_id, type=record.type,
                                    source=source))

    rules: list[Deletion] = []
    for tunnel_id in sorted(inventory.rules):
        for rule in inventory.rules[tunnel_id]:
            hostname = normalize_name(str(rule.get("hostname") or ""))
            if not hostname or hostname == "*":
                continue  # the catch-all (or a host-less rule) is never ours
            if tunnel_id in dying or (tunnel_id, hostname) in routed:
                rules.append(Deletion(TUNNEL_RULE, hostname, tunnel_id=tunnel_id, path=rule.get("path") or None))

    # What stays after the rules and records above are gone.
    deleted_records = {(d.zone_id, d.name, d.type) for d in records}
    remaining: list[DnsRecord] = [
        record
        for zone_id, zone_records in inventory.records.items()
        for record in zone_records
        if not ((zone_id, record.name, record.type) in deleted_records and _judged(record, owner, names, claims))
    ]
    remaining_names = {record.name for record in remaining}
    deleted_rules = {(d.tunnel_id, d.name, d.path) for d in rules}
    remaining_rule_hosts = {
        normalize_name(str(rule.get("hostname") or ""))
        for tunnel_id, tunnel_rules in inventory.rules.items()
        for rule in tunnel_rules
        if (tunnel_id, normalize_name(str(rule.get("hostname") or "")), rule.get("path") or None) not in deleted_rules
    }

    apps: list[Deletion] = []
    zone_names = list(inventory.zones.values())
    for app in sorted(inventory.apps, key=lambda a: (a.name, a.id)):
        if not _ours(app.name, owner, names.app_prefix) or app.name in claims.app_names:
            continue
        domain = normalize_name(app.domain.partition("/")[0])
        if not _in_zones(domain, zone_names):
            kept.append(f"Access application {app.name}: {domain} is outside the zones swept")
        elif domain in remaining_names:
            kept.append(f"Access application {app.name}: a DNS record for {domain} remains")
        elif domain in remaining_rule_hosts:
            kept.append(f"Access application {app.name}: a tunnel rule for {domain} remains")
        else:
            apps.append(Deletion(ACCESS_APP, app.name, app.id))

    tokens = [
        Deletion(SERVICE_TOKEN, token.name, token.id)
        for token in sorted(inventory.tokens, key=lambda t: (t.name, t.id))
        if _ours(token.name, owner, names.token_prefix) and token.name not in claims.token_names
    ]

    pointed = {tunnel_of(record.content) for record in remaining if record.type == "CNAME"}
    tunnels: list[Deletion] = []
    for orphan in dying.values():
        if orphan.id in pointed:
            kept.append(f"tunnel {orphan.name}: a DNS record that stays points to it")
        else:
            tunnels.append(Deletion(TUNNEL, orphan.name, orphan.id))

    ordered = (*rules, *records, *apps, *tokens, *tunnels)
    limit = max(0, cap)
    return SweepPlan(deletions=ordered[:limit], deferred=ordered[limit:], kept=tuple(kept))
