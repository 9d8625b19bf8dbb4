"""The orphan sweep's verdict: what this installation can prove it made in one scope (account, zones, tunnels) for
source objects of the sweeping front door that no longer want it, in the order it may be deleted. Pure: no I/O.

Ownership is proven, never inferred from a name or a shape (DESIGN.md, invariant 1):
- a **claim** (the ledger in Kubernetes, see :mod:`chutes.claims`) names its source and records the objects
  made for it: the Access application, the service token and the tunnel rule of a hostname claim, the tunnel
  of a tunnel claim. An entry with an id proves that object; an entry with only an intent (``since``) proves
  the object found under its natural key that was created after the intent (a crash between the create and
  its completion). A rule has no id nor creation time: the entry (written or only intended) proves the
  path-less rule at the hostname in its tunnel only while that rule routes to the service it records (one
  replaced by hand is theirs now; an entry recording no service proves nothing);
- a **DNS record** is ours for a source when its marker carries our owner id and that source (``marks``); a
  record whose marker names a source of the sweeping door's Kind that is gone (or no longer wants that
  hostname) and that no claim covers is an orphan too (records of earlier versions, or of a claim removed
  by hand), and so is the path-less rule at its hostname in the tunnel it points to.

Nothing else is ever judged: a tunnel, Access application or service token named like ours but unrecorded is
foreign, and so is any rule with a path, any rule at a hostname whose proof is not in this verdict, and anything
in a tunnel whose configuration was not read.

An orphan is a claim (or an unclaimed record) whose source is not among the door's live sources, or whose
live source no longer asks for its key. Sources being deleted keep everything (their finalizer tears it down).

Order: tunnel rules, DNS records, Access applications (their app-scoped policies go with them), service tokens,
tunnels; then the claims whose objects are all gone are released. Rules go before DNS records (a hostname then
briefly answers 404). An Access application is never deleted while any DNS record (anyone's) for its domain
remains after the pass, or a rule for its domain remains in a tunnel whose configuration was read, nor when its
domain lies outside the zones listed (what routes to it is unknown). A tunnel is never deleted while it has
active connections or a DNS record that stays points to it.

The cap (:class:`chutes.sweep.cap.Allowance`, every door's rule) keeps the first `cap` Cloudflare deletions of that
order; because the order puts every deletion before those that depend on it, any prefix is safe. A claim is
released only when none of its objects is deferred or kept. The rest waits for the next pass (it is found again).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from chutes.cloudflare_core.errors import InvalidInput
from chutes.cloudflare_core.models import AccessApp, DnsRecord, ServiceToken, Tunnel, normalize_name, tunnel_of
from chutes.cloudflare_core.ownership import Ownership, legacy_marker, marker, parse
from chutes.sweep.cap import Allowance

__all__ = [
    "ACCESS_APP",
    "CLAIM",
    "CLOCK_SKEW",
    "DNS_RECORD",
    "ORDER",
    "SERVICE_TOKEN",
    "TUNNEL",
    "TUNNEL_RULE",
    "ClaimView",
    "Deletion",
    "DoorNames",
    "Inventory",
    "Verdict",
    "Wants",
    "judge",
    "orphan_claims",
    "tunnel_of",
    "tunnels_to_read",
]

TUNNEL_RULE = "tunnel_rule"
DNS_RECORD = "dns_record"
ACCESS_APP = "access_app"
SERVICE_TOKEN = "service_token"
TUNNEL = "tunnel"
CLAIM = "claim"
ORDER = (TUNNEL_RULE, DNS_RECORD, ACCESS_APP, SERVICE_TOKEN, TUNNEL, CLAIM)
CLOCK_SKEW = timedelta(seconds=60)  # an object created up to this long before its intent was recorded is ours


class ClaimView(Protocol):
    """What the verdict reads of a claim (:class:`chutes.claims.Claim`)."""

    @property
    def kind(self) -> str: ...

    @property
    def key(self) -> str: ...

    @property
    def source(self) -> str: ...

    @property
    def entries(self) -> Mapping[str, Mapping[str, Any]]: ...

    @property
    def name(self) -> str: ...


@dataclass(frozen=True)
class DoorNames:
    """What the sweeping front door judges: the Kinds of its source objects (``ChuteGateway``, ``HTTPRoute``)."""

    door: str
    kinds: frozenset[str]


@dataclass(frozen=True)
class Wants:
    """What the door's live source objects ask for: source (``Kind/namespace/name``) -> the claim keys it
    wants (hostnames; tunnel keys ``<account>/<name>``). `deleting`: sources being deleted (their finalizer
    tears their objects down: never swept). `namespaces`, when set, limits judgement to sources living in
    those namespaces (a door watching some namespaces only knows the sources there)."""

    sources: Mapping[str, frozenset[str]] = field(default_factory=dict)
    deleting: frozenset[str] = frozenset()
    namespaces: frozenset[str] | None = None

    def wanted(self, source: str, key: str) -> bool:
        return source in self.deleting or key in self.sources.get(source, frozenset())


@dataclass(frozen=True)
class Inventory:
    """What exists in the scope. `zones`: zone id -> zone name; `records`: zone id -> every record of that zone;
    `rules`: tunnel id -> its ingress rules, for the tunnels whose configuration was read; `tunnels`, `apps`,
    `tokens`: listings of the account (only needed to resolve entries recorded as an intent, and for tunnels'
    connections); `claims`: this installation's claims."""

    owner_id: str
    account_id: str = ""  # the scope's account: a claim whose entries record another is not judged here ("": any)
    zones: Mapping[str, str] = field(default_factory=dict)
    records: Mapping[str, Sequence[DnsRecord]] = field(default_factory=dict)
    rules: Mapping[str, Sequence[Mapping[str, Any]]] = field(default_factory=dict)
    tunnels: Sequence[Tunnel] = ()
    apps: Sequence[AccessApp] = ()
    tokens: Sequence[ServiceToken] = ()
    claims: Sequence[ClaimView] = ()


@dataclass(frozen=True)
class Deletion:
    """One thing to delete. `name`: the record's or rule's hostname, else the object's name; `claim`: the name
    of the claim the deletion belongs to ("" for an unclaimed record and its rule)."""

    object: str
    name: str
    id: str = ""
    zone_id: str = ""
    type: str = ""  # DNS record type
    tunnel_id: str = ""  # a rule's tunnel
    path: str | None = None  # a rule's path (always None: a rule with a path is never ours)
    service: str | None = None  # a rule's recorded service: only a rule routing there is removed (None: any)
    source: str = ""  # the source object the deleted thing was made for
    domain: str = ""  # an Access application's domain
    since: str | None = None  # when its claim recorded the intent to create it (an Access app's, a service token's)
    claim: str = ""
    record: DnsRecord | None = None  # a DNS record as listed (deleted by id)

    def describe(self) -> str:
        if self.object == DNS_RECORD:
            return f"DNS {self.type} {self.name} (made for {self.source})"
        if self.object == TUNNEL_RULE:
            return f"tunnel rule {self.name}{self.path or ''} in tunnel {self.tunnel_id} (made for {self.source})"
        if self.object == CLAIM:
            return f"claim on {self.name} of {self.source}"
        label = {ACCESS_APP: "Access application", SERVICE_TOKEN: "service token", TUNNEL: "tunnel"}[self.object]
        return f"{label} {self.name} ({self.id}, made for {self.source})"


@dataclass(frozen=True)
class Verdict:
    """`deletions`: this pass, in order (claims to release last); `deferred`: Cloudflare deletions over the cap
    (next pass); `kept`: orphans left in place on purpose, each with the reason."""

    deletions: tuple[Deletion, ...] = ()
    deferred: tuple[Deletion, ...] = ()
    kept: tuple[str, ...] = ()

    @property
    def capped(self) -> bool:
        return bool(self.deferred)

    @property
    def orphans(self) -> int:
        return sum(d.object != CLAIM for d in (*self.deletions, *self.deferred))


def _judged(source: str, names: DoorNames, wants: Wants) -> bool:
    kind, _, rest = source.partition("/")
    namespace = rest.partition("/")[0]
    return kind in names.kinds and (wants.namespaces is None or namespace in wants.namespaces)


def _in_account(claim: ClaimView, account_id: str) -> bool:
    """Whether every object `claim` records lives in `account_id` (entries recording no account: any). A claim of
    another account is that account's scope's: judged with this scope's listings, its objects would look gone
    (absent from them) and the claim be released while they still exist."""
    return not account_id or all(str(entry.get("account") or account_id) == account_id
                                 for entry in claim.entries.values())


def orphan_claims(inventory: Inventory, names: DoorNames, wants: Wants) -> list[ClaimView]:
    """The claims of the door's sources in the scope's account that no live source wants, in a stable order."""
    found = [claim for claim in inventory.claims
             if _judged(claim.source, names, wants) and _in_account(claim, inventory.account_id)
             and not wants.wanted(claim.source, claim.key)]
    return sorted(found, key=lambda claim: (claim.kind, claim.key, claim.source))


def _markers(owner_id: str, sources: Iterable[str]) -> dict[str, str]:
    """Marker comment -> source, for every source (current and legacy marker forms)."""
    found: dict[str, str] = {}
    for source in sources:
        found[legacy_marker(owner_id, source)] = source
        with contextlib.suppress(InvalidInput):  # a marker that cannot fit: its source never published anything
            found[marker(owner_id, source)] = source
    return found


def _marked_for(record: DnsRecord, markers: Mapping[str, str]) -> str | None:
    return markers.get((record.comment or "").strip())


def _orphan_records(inventory: Inventory, names: DoorNames, wants: Wants,
                    claimed: set[tuple[str, str]]) -> list[tuple[str, DnsRecord, str]]:
    """(zone id, record, source) of records marked with our owner id for a source of the door that no longer
    wants the record's name and that no claim of that source covers. `source` is the full source when it is
    known (a live source or a claim's), else the marker's (possibly shortened) ``src``."""
    known = _markers(inventory.owner_id, {*wants.sources, *wants.deleting, *(c.source for c in inventory.claims)})
    found: list[tuple[str, DnsRecord, str]] = []
    for zone_id in sorted(inventory.records):
        for record in sorted(inventory.records[zone_id], key=lambda r: (r.name, r.type, r.id)):
            mark: Ownership | None = parse(record.comment)
            if mark is None or mark.owner_id != inventory.owner_id or not _judged(mark.source, names, wants):
                continue
            source = _marked_for(record, known)
            if source is None:  # no live source, no claim: its source is gone
                found.append((zone_id, record, mark.source))
            elif not wants.wanted(source, record.name) and (source, record.name) not in claimed:
                found.append((zone_id, record, source))
    return found


def tunnels_to_read(inventory: Inventory, names: DoorNames, wants: Wants) -> set[str]:
    """The tunnels whose configuration the verdict needs: those of the orphan claims' rules and those our orphaned
    records point to."""
    found: set[str] = set()
    for claim in orphan_claims(inventory, names, wants):
        rule = claim.entries.get(TUNNEL_RULE) or {}
        if rule.get("tunnel"):
            found.add(str(rule["tunnel"]))
    claimed = {(claim.source, claim.key) for claim in inventory.claims if claim.kind == "hostname"}
    for _zone, record, _source in _orphan_records(inventory, names, wants, claimed):
        tunnel = tunnel_of(record.content) if record.type == "CNAME" else None
        if tunnel:
            found.add(tunnel)
    return found


def _created_after(created_at: str | None, since: str | None) -> bool:
    if not created_at or not since:
        return False
    try:
        return _instant(created_at) >= _instant(since) - CLOCK_SKEW
    except ValueError:
        return False


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _recorded_id(entry: Mapping[str, Any], candidates: Iterable[tuple[str, str | None]]) -> str:
    """The id an entry proves: its own, else (an intent) the one candidate ``(id, created_at)`` created after it."""
    if entry.get("id"):
        return str(entry["id"])
    matches = [object_id for object_id, created in candidates if _created_after(created, entry.get("since"))]
    return matches[0] if len(matches) == 1 else ""


def _path_less(rules: Sequence[Mapping[str, Any]], hostname: str, service: str | None = None) -> bool:
    """Whether `rules` hold the path-less rule at `hostname` (routing to `service`, when given)."""
    return any(normalize_name(str(rule.get("hostname") or "")) == hostname and not rule.get("path")
               and (service is None or str(rule.get("service") or "") == service) for rule in rules)


def _in_zones(domain: str, zone_names: Iterable[str]) -> bool:
    return any(domain == zone or domain.endswith("." + zone) for zone in zone_names)


def judge(inventory: Inventory, names: DoorNames, wants: Wants, cap: int) -> Verdict:
    """The orphans of `inventory` given what the live sources want, ordered; the first `cap` Cloudflare
    deletions of them are made in this pass."""
    kept: list[str] = []
    by_phase: dict[str, list[Deletion]] = {phase: [] for phase in ORDER}
    claim_parts: dict[str, list[Deletion]] = {}
    blocked: set[str] = set()  # claims with something kept: not released

    def add(deletion: Deletion) -> None:
        by_phase[deletion.object].append(deletion)
        if deletion.claim:
            claim_parts.setdefault(deletion.claim, []).append(deletion)

    def keep(claim: ClaimView, why: str) -> None:
        """Something `claim` records stays (`why`, reported): the claim is not released."""
        kept.append(why)
        blocked.add(claim.name)

    orphans = orphan_claims(inventory, names, wants)
    host_claims = [claim for claim in orphans if claim.kind == "hostname"]
    tunnel_claims = [claim for claim in orphans if claim.kind == "tunnel"]
    claimed = {(claim.source, claim.key) for claim in inventory.claims if claim.kind == "hostname"}
    owner = inventory.owner_id

    # Rules and records of orphaned hostname claims.
    for claim in host_claims:
        hostname, source = claim.key, claim.source
        rule = claim.entries.get(TUNNEL_RULE) or {}
        tunnel_id, service = str(rule.get("tunnel") or ""), str(rule.get("service") or "")
        markers = _markers(owner, [source])
        held_by_another = any(
            record.name == hostname and (mark := parse(record.comment)) is not None and mark.owner_id == owner
            and _marked_for(record, markers) != source
            for records in inventory.records.values() for record in records)
        if held_by_another:  # the rule at that hostname is the other source's now
            kept.append(f"tunnel rule {hostname} of {source}: a DNS record of another source holds {hostname}")
        elif tunnel_id and service and _path_less(inventory.rules.get(tunnel_id, ()), hostname, service):
            add(Deletion(TUNNEL_RULE, hostname, tunnel_id=tunnel_id, service=service, source=source,
                         claim=claim.name))
        elif tunnel_id and _path_less(inventory.rules.get(tunnel_id, ()), hostname):
            why = f"it does not route to {service}, as recorded" if service else "the claim records no service for it"
            kept.append(f"tunnel rule {hostname} in tunnel {tunnel_id} of {source}: {why}: not proven ours")
        for zone_id in sorted(inventory.records):
            for record in inventory.records[zone_id]:
                if record.name == hostname and _marked_for(record, markers) == source:
                    add(Deletion(DNS_RECORD, hostname, record.id, zone_id=zone_id, type=record.type, source=source,
                                 claim=claim.name, record=record))

    # Records (and their rules) of gone sources that no claim covers.
    for zone_id, record, source in _orphan_records(inventory, names, wants, claimed):
        pointed_to = tunnel_of(record.content) if record.type == "CNAME" else None
        if pointed_to and _path_less(inventory.rules.get(pointed_to, ()), record.name):
            rule_deletion = Deletion(TUNNEL_RULE, record.name, tunnel_id=pointed_to, source=source)
            if rule_deletion not in by_phase[TUNNEL_RULE]:
                add(rule_deletion)
        add(Deletion(DNS_RECORD, record.name, record.id, zone_id=zone_id, type=record.type, source=source,
                     record=record))

    # What stays after the rules and records above are gone.
    gone_records = {(d.zone_id, d.id) for d in by_phase[DNS_RECORD]}
    remaining_names = {record.name for zone_id, records in inventory.records.items() for record in records
                       if (zone_id, record.id) not in gone_records}
    gone_rules = {(d.tunnel_id, d.name) for d in by_phase[TUNNEL_RULE]}
    remaining_rule_hosts = {
        normalize_name(str(rule.get("hostname") or ""))
        for tunnel_id, rules in inventory.rules.items() for rule in rules
        if rule.get("hostname") and not (
            (tunnel_id, normalize_name(str(rule["hostname"]))) in gone_rules and not rule.get("path"))
    }
    zone_names = list(inventory.zones.values())

    # Access applications and service tokens of orphaned hostname claims.
    for claim in host_claims:
        hostname, source = claim.key, claim.source
        app = claim.entries.get(ACCESS_APP)
        if app is not None:
            app_name = str(app.get("name") or "")
            app_id = _recorded_id(app, ((a.id, a.created_at) for a in inventory.apps
                                        if a.domain == hostname and a.name == app_name))
            label = f"Access application {app_name or app_id} of {source}"
            if not app_id:
                if app.get("since"):
                    kept.append(f"{label}: recorded as an intent, no application of that name and domain was "
                                "created after it")  # nothing to delete; the claim may go
            elif not _in_zones(hostname, zone_names):
                keep(claim, f"{label}: {hostname} is outside the zones swept")
            elif hostname in remaining_names:
                keep(claim, f"{label}: a DNS record for {hostname} remains")
            elif hostname in remaining_rule_hosts:
                keep(claim, f"{label}: a tunnel rule for {hostname} remains")
            else:
                add(Deletion(ACCESS_APP, app_name, app_id, source=source, domain=hostname, claim=claim.name,
                             since=str(app.get("since") or "") or None))
        token = claim.entries.get(SERVICE_TOKEN)
        if token is not None:
            token_name = str(token.get("name") or "")
            token_id = _recorded_id(token, ((t.id, t.created_at) for t in inventory.tokens if t.name == token_name))
            if token_id:
                add(Deletion(SERVICE_TOKEN, token_name, token_id, source=source, claim=claim.name,
                             since=str(token.get("since") or "") or None))

    # Tunnels of orphaned tunnel claims.
    pointed = {tunnel_of(record.content) for zone_id, records in inventory.records.items() for record in records
               if record.type == "CNAME" and (zone_id, record.id) not in gone_records}
    listed = {tunnel.id: tunnel for tunnel in inventory.tunnels if not tunnel.deleted}
    for claim in tunnel_claims:
        entry = claim.entries.get(TUNNEL) or {}
        tunnel_name = str(entry.get("name") or claim.key.partition("/")[2])
        tunnel_id = _recorded_id(entry, ((t.id, t.created_at) for t in listed.values() if t.name == tunnel_name))
        if not tunnel_id or tunnel_id not in listed:
            continue  # nothing (left) to delete: the claim may go
        live = listed[tunnel_id]
        if live.name != tunnel_name:
            keep(claim, f"tunnel {tunnel_id} of {claim.source}: it is named {live.name!r} now, not {tunnel_name!r}")
        elif live.connected:
            keep(claim, f"tunnel {tunnel_name} of {claim.source}: it has active connections")
        elif tunnel_id in pointed:
            keep(claim, f"tunnel {tunnel_name} of {claim.source}: a DNS record that stays points to it")
        else:
            add(Deletion(TUNNEL, tunnel_name, tunnel_id, source=claim.source, claim=claim.name))

    ordered = [deletion for phase in ORDER[:-1] for deletion in by_phase[phase]]
    allowance = Allowance(cap)
    now: list[Deletion] = []
    later: list[Deletion] = []
    for deletion in ordered:
        (now if allowance.allows(deletion) else later).append(deletion)
    waiting = {deletion.claim for deletion in later if deletion.claim} | blocked
    releases = [Deletion(CLAIM, claim.key, source=claim.source, claim=claim.name)
                for claim in orphans if claim.name not in waiting]
    return Verdict(deletions=(*now, *releases), deferred=tuple(later), kept=tuple(kept))
