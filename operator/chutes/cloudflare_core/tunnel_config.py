"""Co-owned tunnel configuration: a pure ingress merge and a coalescing writer.

Cloudflare stores a tunnel's configuration as one document replaced by PUT, without
If-Match. `merge_ingress` changes only the rules named by the edits (key = hostname + path),
keeps every foreign rule in its order, the existing catch-all and every other top-level key.
`TunnelConfigWriter` turns any number of concurrent edits into one GET and (only if the
document changed) one PUT, and wakes every caller with its own outcome.

Ownership (DESIGN invariant 1): every edit carries `owns`, the caller's proof that a rule already
in the document (wire form) is its own, asked at merge time (after the flush's GET). A `SetRule`
over a rule `owns` rejects is refused, even when identical: its caller gets `Conflict`, the rule
stays byte-identical and the other edits of the flush proceed. A `RemoveRule` leaves such a rule
in place (logged at INFO). A `SyncRules` neither removes nor overwrites one; the wanted keys it
could not write come back in `RuleSync.refused`.

The merge asks the client's `ChangeGate` about each rule it would add, change or remove: under
upsert-only no rule is removed, under create-only no existing rule is changed either (new ones are
still added); under dry-run each change is only logged. When nothing is left, nothing is PUT.

Other writers (DESIGN invariant 2). Each flush is GET (version v) → merge → PUT, whose answer
carries the version it stored; anything but v + 1 means another writer wrote between our GET and
our PUT. What is and is not guaranteed:

* Writers sharing `tunnel_lock` (every process of this installation: the operator's Lease) never
  interleave their flushes, so none of them loses an edit to another.
* The window between our GET and our PUT is one round trip: a PUT that failed (5xx, 429, a lost
  answer) is never re-sent as it was after the pause, which would widen it to seconds; the flush
  reads again and merges again (a write applied all the same is found in place), at most the
  client's `max_attempts` times.
* A foreign PUT landing between our GET and our PUT is overwritten by ours; its content cannot be
  read back (Cloudflare keeps no history), so it is lost. We detect it and say so: a WARNING naming
  the tunnel and `chutes_tunnel_config_races_total{tunnel}`. We then GET again and merge our edits
  again on top of what is there, PUTting again only when that changes something (at most
  `MAX_ROUNDS` rounds): this puts our rules back when a (stale) foreign write also landed after our
  PUT and before that GET, keeping the foreign rules it carries.
* A foreign stale PUT landing after our PUT (with a document read before it) is not seen by this
  flush: a PUT answering v + 1 is the end of it (steady state stays one GET + at most one PUT). It
  may drop our rules; our next flush of that tunnel (the doors re-apply their rules on every
  reconcile and resync) puts them back on top of the foreign document and keeps its rules.
* Never guaranteed: a writer outside the lock (another installation, the dashboard, Terraform)
  and we can each lose a write to the other until each one's next flush. Foreign rules are never
  changed or removed by an edit (only rules `owns` accepts); the only way we drop one is the race
  above, always reported.

Repairs read the document once per pass. A flush whose every edit is a drift repair (queued inside
`drift.repairing`) that sets or syncs rules may be answered from the last document this writer read,
when that read is younger than `snapshot_ttl`, no PUT of ours came after it, and the merge finds
nothing to change and nothing to refuse there. Otherwise (a rule to write, a rule to refuse, a
removal) the flush GETs as above: a PUT is only ever merged onto a document read in its own flush.
A rule changed behind our back within `snapshot_ttl` before a pass is repaired by the next pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

from . import drift
from .client import CloudflareClient, to_wire
from .coalescing import CoalescingWriter, Request
from .errors import Conflict, NotFound, OutcomeUnknown, RateLimited, TransientError
from .gate import Change
from .metrics import TUNNEL_CONFIG_RACES
from .models import IngressRule, normalize_name

__all__ = [
    "CATCH_ALL",
    "MAX_ROUNDS",
    "Edit",
    "EditResult",
    "Permit",
    "RemoveRule",
    "RuleKey",
    "RulePredicate",
    "RuleSync",
    "SetDefaults",
    "SetRule",
    "SyncRules",
    "TunnelConfigWriter",
    "TunnelLock",
    "get_config",
    "merge_counted",
    "merge_ingress",
    "must_precede",
    "put_config",
    "read_config",
]

log = logging.getLogger(__name__)
CATCH_ALL: dict[str, Any] = {"service": "http_status:404"}
MAX_ROUNDS = 3  # GET → merge → PUT rounds of one flush when other writers keep racing it

# "Is this existing rule (wire form) ours": the caller's proof of ownership, asked at merge time.
RulePredicate = Callable[[Mapping[str, Any]], bool]
# Held around each flush of one tunnel's writer: (account id, tunnel id) → an async context manager.
TunnelLock = Callable[[str, str], AbstractAsyncContextManager[Any]]  # what it yields is the lock's own
RuleKey = tuple[str, str | None]  # (hostname, path) of a rule


@dataclass(frozen=True)
class SetRule:
    """Write `rule` at its key (hostname + path). A rule already there that `owns` rejects refuses
    the edit (its caller gets `Conflict`)."""

    rule: IngressRule
    owns: RulePredicate


@dataclass(frozen=True)
class RemoveRule:
    """Remove the rule at (hostname, path) when `owns` accepts it; a rule it rejects stays."""

    hostname: str
    path: str | None
    owns: RulePredicate

    @property
    def key(self) -> RuleKey:
        return (normalize_name(self.hostname), self.path or None)


@dataclass(frozen=True)
class SyncRules:
    """Make the rules a caller owns exactly `rules`: every rule `owns` accepts and whose key
    (hostname + path) is not among `rules` is removed, then each of `rules` is set, except where
    the key holds a rule `owns` rejects (that one is left untouched and its key reported refused).

    `owns` sees each current rule (wire form) at merge time, i.e. after the fresh GET; it is
    never asked about the catch-all.
    """

    rules: tuple[IngressRule, ...]
    owns: RulePredicate


@dataclass(frozen=True)
class SetDefaults:
    """The tunnel-wide settings of a tunnel whose whole configuration is the caller's (one it created and its
    claim proves): the catch-all's service and the top-level ``originRequest`` (empty: none; None: kept as it
    is). A shared tunnel keeps its other keys: only the catch-all its user explicitly asks for is set there
    (``origin_request`` None)."""

    fallback: str
    origin_request: Mapping[str, Any] | None


@dataclass(frozen=True)
class RuleSync:
    """What a `SyncRules` flush did: whether the configuration was written (by this edit or another
    one of the same flush), and the wanted keys left alone because a rule not ours holds them."""

    written: bool
    refused: frozenset[RuleKey] = frozenset()


@dataclass(frozen=True)
class EditResult:
    """What one edit did in a merge: rules it added, changed or removed, and the keys it left alone
    because `owns` rejected the rule there (SetRule: refused; RemoveRule: kept; SyncRules: not written)."""

    changes: int = 0
    refused: frozenset[RuleKey] = frozenset()


Edit = SetRule | RemoveRule | SyncRules | SetDefaults
Key = tuple[str | None, str | None]
# Asked before each rule change of a merge (the removed rule, or the rule as wanted); False: not made.
Permit = Callable[[Change, Mapping[str, Any]], bool]


def _permit_all(change: Change, rule: Mapping[str, Any]) -> bool:
    return True


def _key(rule: Mapping[str, Any]) -> Key:
    hostname = rule.get("hostname")
    return (normalize_name(hostname) if hostname else None, rule.get("path") or None)


def _is_catch_all(rule: Mapping[str, Any]) -> bool:
    return _key(rule) == (None, None)


def _covers(outer: str | None, inner: str | None) -> bool:
    """Whether host pattern `outer` matches everything `inner` matches, and more."""
    if outer == inner:
        return False
    if outer is None:
        return True
    if inner is None:
        return False
    if outer.startswith("*."):
        return inner.endswith(outer[1:])
    return False


def _precedes(new: Key, old: Key) -> bool:
    new_host, new_path = new
    old_host, old_path = old
    if _covers(old_host, new_host):
        return True
    if new_host != old_host or new_path is None:
        return False
    return old_path is None or len(new_path) > len(old_path)


def must_precede(new: Mapping[str, Any], existing: Mapping[str, Any]) -> bool:
    """Whether rule `new` must come before `existing` so that `existing` does not shadow it.

    An exact hostname precedes a wildcard (or host-less rule) matching it; for one hostname a
    longer path precedes a shorter one, and any path precedes none.
    """
    return _precedes(_key(new), _key(existing))


def _meaningful(rule: Mapping[str, Any]) -> dict[str, Any]:
    """A rule without empty values, for "is it already what we want" comparisons."""
    return {key: value for key, value in rule.items() if value not in (None, {}, [], "")}


def _is(wanted: Key) -> Callable[[Key], bool]:
    return lambda key: key == wanted


def _not_in(kept: set[Key]) -> Callable[[Key], bool]:
    return lambda key: key not in kept


def merge_ingress(
    config: Mapping[str, Any] | None, edits: Sequence[Edit], permit: Permit | None = None
) -> dict[str, Any]:
    """The configuration after applying `edits` in order (the input is not modified); each rule
    change is made only when `permit` allows it and only to rules the edit's `owns` accepts.

    When no edit changes anything, the result equals the input (steady state writes nothing).
    """
    return merge_counted(config, edits, permit)[0]


def merge_counted(
    config: Mapping[str, Any] | None, edits: Sequence[Edit], permit: Permit | None = None
) -> tuple[dict[str, Any], list[EditResult]]:
    """`merge_ingress`, and what each edit did (`EditResult`: changes made, keys refused)."""
    allowed = permit or _permit_all
    document: dict[str, Any] = copy.deepcopy(dict(config)) if config else {}
    rules: list[dict[str, Any]] = [dict(rule) for rule in document.get("ingress") or []]
    catch_all = rules.pop() if rules and _is_catch_all(rules[-1]) else None
    keys: list[Key] = [_key(rule) for rule in rules]

    def remove(matches: Callable[[Key], bool], owns: RulePredicate, report: bool) -> EditResult:
        """Drop the rules whose key `matches` and that `owns` accepts; with `report`, the matching
        rules it rejects come back as refused."""
        nonlocal keys, rules
        kept: list[tuple[Key, dict[str, Any]]] = []
        refused: set[RuleKey] = set()
        for key, rule in zip(keys, rules, strict=True):
            if not matches(key):
                kept.append((key, rule))
            elif not owns(rule):
                kept.append((key, rule))
                if report and key[0] is not None:
                    refused.add((key[0], key[1]))
            elif not allowed("delete", rule):
                kept.append((key, rule))
        removed = len(rules) - len(kept)
        if removed:
            keys = [key for key, _ in kept]
            rules = [rule for _, rule in kept]
        return EditResult(removed, frozenset(refused))

    def set_rule(rule: IngressRule, owns: RulePredicate) -> EditResult:
        wanted = rule.to_wire()
        wanted_key: Key = rule.key
        if wanted_key in keys:
            index = keys.index(wanted_key)
            if not owns(rules[index]):
                return EditResult(refused=frozenset({rule.key}))
            if _meaningful(rules[index]) == _meaningful(wanted) or not allowed("update", wanted):
                return EditResult()
            rules[index] = wanted
            return EditResult(1)
        if not allowed("create", wanted):
            return EditResult()
        position = next((i for i, key in enumerate(keys) if _precedes(wanted_key, key)), len(rules))
        rules.insert(position, wanted)
        keys.insert(position, wanted_key)
        return EditResult(1)

    def set_defaults(edit: SetDefaults) -> EditResult:
        nonlocal catch_all
        changes = 0
        wanted = {**(catch_all or {}), "service": edit.fallback}
        label = {"hostname": "*", "service": edit.fallback}
        if catch_all != wanted and allowed("update" if catch_all is not None else "create", label):
            catch_all, changes = wanted, changes + 1
        if edit.origin_request is None:
            return EditResult(changes)
        origin = dict(edit.origin_request)
        if (document.get("originRequest") or {}) != origin and allowed(
                "update", {"hostname": "*", "service": f"originRequest {origin}"}):
            if origin:
                document["originRequest"] = origin
            else:
                document.pop("originRequest", None)
            changes += 1
        return EditResult(changes)

    results: list[EditResult] = []
    for edit in edits:
        if isinstance(edit, SetDefaults):
            results.append(set_defaults(edit))
        elif isinstance(edit, RemoveRule):
            results.append(remove(_is(edit.key), edit.owns, report=True))
        elif isinstance(edit, SyncRules):
            stale = remove(_not_in({rule.key for rule in edit.rules}), edit.owns, report=False)
            sets = [set_rule(rule, edit.owns) for rule in edit.rules]
            results.append(EditResult(
                stale.changes + sum(one.changes for one in sets),
                frozenset().union(*(one.refused for one in sets)),
            ))
        else:
            results.append(set_rule(edit.rule, edit.owns))
    if not any(result.changes for result in results):
        return (copy.deepcopy(dict(config)) if config else {}), results
    document["ingress"] = [*rules, catch_all if catch_all is not None else dict(CATCH_ALL)]
    return document, results


def _with_written(edit: Edit, result: EditResult) -> Edit:
    """`edit` for the next round after a raced write that landed, or a failed one that may have: the rules it has
    just written (not refused)
    are its own from now on, as long as they are still exactly as written; its `owns` judged the configuration
    as it was before that write, and would otherwise take our own rule for someone else's."""
    if isinstance(edit, RemoveRule | SetDefaults):
        return edit
    rules = (edit.rule,) if isinstance(edit, SetRule) else edit.rules
    written = {rule.key: _meaningful(rule.to_wire()) for rule in rules if rule.key not in result.refused}
    if not written:
        return edit
    owns = edit.owns

    def owns_or_wrote(rule: Mapping[str, Any]) -> bool:
        key = _key(rule)
        mine = written.get((key[0], key[1])) if key[0] is not None else None
        return owns(rule) or (mine is not None and _meaningful(rule) == mine)

    return dataclasses.replace(edit, owns=owns_or_wrote)


async def read_config(
    client: CloudflareClient, account_id: str, tunnel_id: str
) -> tuple[dict[str, Any] | None, int | None]:
    """The tunnel's configuration document (None when never set) and its version (None when the
    answer carries none)."""
    result = to_wire(await client.call(
        "tunnels.config.get",
        client.sdk.zero_trust.tunnels.cloudflared.configurations.get,
        tunnel_id,
        account_id=account_id,
    ))
    config = result.get("config")
    return (dict(config) if isinstance(config, Mapping) else None), _version(result)


async def get_config(client: CloudflareClient, account_id: str, tunnel_id: str) -> dict[str, Any] | None:
    """The tunnel's configuration document (`{"ingress": [...], ...}`), None when never set."""
    return (await read_config(client, account_id, tunnel_id))[0]


async def put_config(
    client: CloudflareClient, account_id: str, tunnel_id: str, config: dict[str, Any]
) -> int | None:
    """Replace the tunnel's configuration; the version Cloudflare stored it as (None when not said)."""
    result = await client.call(
        "tunnels.config.put",
        client.sdk.zero_trust.tunnels.cloudflared.configurations.update,
        tunnel_id,
        account_id=account_id,
        extra_body={"config": config},  # already in wire form: skip the SDK's slow re-aliasing
    )
    return _version(to_wire(result))


def _version(result: Mapping[str, Any]) -> int | None:
    version = result.get("version")
    return version if isinstance(version, int) and not isinstance(version, bool) else None


def _label(key: RuleKey) -> str:
    return f"{key[0]}{key[1] or ''}"


@dataclass(eq=False)
class _EditRequest(Request):
    edit: Edit = field(kw_only=True)


class TunnelConfigWriter(CoalescingWriter[_EditRequest]):
    """The single writer of one tunnel's configuration in this process.

    Edits queue up; one drain task flushes them: GET, merge all, PUT once if changed (again when the
    PUT's version shows another writer raced it, see the module). Edits arriving during a flush go
    to the next one. Every caller gets its own outcome. `lock` (when given) is held around each
    flush, so that every writer of this installation sharing it takes its turn.
    """

    label = "tunnel configuration writer"

    def __init__(
        self,
        client: CloudflareClient,
        account_id: str,
        tunnel_id: str,
        lock: TunnelLock | None = None,
        *,
        snapshot_ttl: float = 0.0,
    ) -> None:
        super().__init__()
        self._client = client
        self._lock = lock
        self.account_id = account_id
        self.tunnel_id = tunnel_id
        self._snapshot_ttl = snapshot_ttl
        self._snapshot: tuple[float, dict[str, Any] | None] | None = None  # (read at, document)

    async def set_rule(self, rule: IngressRule, owns: RulePredicate) -> None:
        """Write `rule`; `Conflict` when its key holds a rule `owns` rejects (left untouched)."""
        await self._submit(_EditRequest(edit=SetRule(rule, owns)))

    async def remove_rule(self, hostname: str, path: str | None, owns: RulePredicate) -> bool:
        """Remove the rule at (hostname, path) if `owns` accepts it; True when this flush removed it."""
        return bool(await self._submit(_EditRequest(edit=RemoveRule(hostname, path, owns))))

    async def sync_rules(self, rules: Sequence[IngressRule], owns: RulePredicate) -> RuleSync:
        """Make the rules `owns` accepts exactly `rules` (see `SyncRules`), in one flush."""
        result: RuleSync = await self._submit(_EditRequest(edit=SyncRules(tuple(rules), owns)))
        return result

    async def set_defaults(self, fallback: str, origin_request: Mapping[str, Any] | None) -> None:
        """Set the catch-all and the top-level originRequest (None: kept; see `SetDefaults`)."""
        await self._submit(_EditRequest(edit=SetDefaults(fallback, None if origin_request is None
                                                         else dict(origin_request))))

    async def get_config(self) -> dict[str, Any] | None:
        return await get_config(self._client, self.account_id, self.tunnel_id)

    def forget_snapshot(self) -> None:
        """The next repair flush reads the document afresh."""
        self._snapshot = None

    def _permit(self, change: Change, rule: Mapping[str, Any]) -> bool:
        path = rule.get("path")
        what = f"{rule.get('hostname')}{' path ' + str(path) if path else ''} → {rule.get('service')}"
        return self._client.gate.allows(change, "tunnel_rule", f"{what} (tunnel {self.tunnel_id})")

    async def _flush(self, requests: list[_EditRequest]) -> None:
        if self._answered_by_snapshot(requests):
            return
        if self._lock is None:
            await self._write(requests)
            return
        async with contextlib.AsyncExitStack() as stack:
            try:
                await stack.enter_async_context(self._lock(self.account_id, self.tunnel_id))
            except Exception as error:
                raise TransientError(
                    f"tunnel {self.tunnel_id}: could not take the lock of its configuration: {error}"
                ) from error
            await self._write(requests)

    async def _write(self, requests: list[_EditRequest]) -> None:
        """GET → merge → PUT, again while the PUT's version shows a race (at most `MAX_ROUNDS`). A PUT that failed
        is never re-sent as it was (`client.NO_RETRY_OPS`): after the pause, GET → merge → PUT again (a write that
        was applied all the same is found in place), at most the client's `max_attempts` times."""
        edits = [request.edit for request in requests]
        results: list[EditResult] = []
        removed = [False] * len(requests)
        wrote = False
        rounds = failures = 0
        try:
            current, version = await self._read()
            while True:
                merged, results = merge_counted(current, edits, self._permit)
                if merged == (current or {}):
                    break
                self._snapshot = None  # whatever the outcome, the document may differ from our read now
                try:
                    stored = await put_config(self._client, self.account_id, self.tunnel_id, merged)
                except TransientError as error:
                    failures += 1
                    if failures >= self._client.max_attempts:
                        if isinstance(error, RateLimited):
                            raise  # refused: nothing was applied
                        raise OutcomeUnknown(f"tunnel {self.tunnel_id}: the configuration write may have been "
                                             f"applied: {error.message}", delay=error.delay, status=error.status,
                                             codes=error.codes) from error
                    if not isinstance(error, RateLimited):  # (a 429 blocks the budget: the next read waits it out)
                        await asyncio.sleep(error.delay)
                    # (applied all the same, its answer lost: what it wrote is found in place, and is ours)
                    edits = [_with_written(edit, result) for edit, result in zip(edits, results, strict=True)]
                    current, version = await self._read()
                    continue
                wrote = True
                rounds += 1
                log.debug("Tunnel %s: wrote configuration with %d edits", self.tunnel_id, len(edits))
                for index, (request, result) in enumerate(zip(requests, results, strict=True)):
                    drift.count(request.front_door, "tunnel_rule", result.changes)
                    removed[index] = removed[index] or bool(result.changes)
                if version is None or stored is None or stored == version + 1:
                    break
                self._raced(version, stored, final=rounds == MAX_ROUNDS)
                if rounds == MAX_ROUNDS:
                    break
                edits = [_with_written(edit, result) for edit, result in zip(edits, results, strict=True)]
                current, version = await self._read()
        except NotFound as gone:  # the tunnel is gone: removals are done, additions cannot be
            for request in requests:
                if isinstance(request.edit, RemoveRule):
                    request.resolve(False)
                elif isinstance(request.edit, SyncRules) and not request.edit.rules:
                    request.resolve(RuleSync(False))
                else:
                    request.fail(gone)
            return
        self._answer(requests, results, wrote, removed)

    async def _read(self) -> tuple[dict[str, Any] | None, int | None]:
        current, version = await read_config(self._client, self.account_id, self.tunnel_id)
        self._snapshot = (time.monotonic(), copy.deepcopy(current))
        return current, version

    def _answered_by_snapshot(self, requests: list[_EditRequest]) -> bool:
        """Answer a flush of drift repairs that set or sync rules from the last document read, when that read
        is younger than the snapshot TTL and the merge there changes and refuses nothing; else touch none."""
        snapshot = self._snapshot
        if snapshot is None or time.monotonic() - snapshot[0] >= self._snapshot_ttl:
            return False
        repairs = all(
            request.reuse_listings
            and (isinstance(request.edit, SetRule) or (isinstance(request.edit, SyncRules) and request.edit.rules))
            for request in requests
        )
        if not repairs:
            return False
        document = copy.deepcopy(snapshot[1])
        merged, results = merge_counted(document, [request.edit for request in requests], _permit_all)
        if merged != (snapshot[1] or {}) or any(result.refused or result.changes for result in results):
            return False
        self._answer(requests, results, False, [False] * len(requests))
        return True

    def _raced(self, read: int, stored: int, *, final: bool) -> None:
        TUNNEL_CONFIG_RACES.labels(tunnel=self.tunnel_id).inc()
        then = (
            f"gave up after {MAX_ROUNDS} rounds; the next flush re-applies ours" if final
            else "reading it again to re-apply ours on top of what is there now"
        )
        log.warning(
            "Tunnel %s: another writer changed its configuration between our read (version %d) and our write "
            "(stored as version %d); what it wrote in between was overwritten and cannot be recovered; %s",
            self.tunnel_id, read, stored, then,
        )

    def _answer(
        self, requests: list[_EditRequest], results: list[EditResult], wrote: bool, removed: list[bool]
    ) -> None:
        """Each caller's outcome, from the last merge (the one the configuration now reflects)."""
        for request, result, gone in zip(requests, results, removed, strict=True):
            edit = request.edit
            if isinstance(edit, SetRule):
                if result.refused:
                    request.fail(Conflict(
                        f"{_label(edit.rule.key)} in tunnel {self.tunnel_id}: a rule this installation cannot "
                        "prove its own: left untouched"
                    ))
                else:
                    request.resolve(None)
            elif isinstance(edit, RemoveRule):
                if result.refused:
                    log.info(
                        "Tunnel %s: left the rule of %s in place: this installation cannot prove it its own",
                        self.tunnel_id, _label(edit.key),
                    )
                request.resolve(gone)
            else:
                request.resolve(RuleSync(wrote, result.refused))
