"""Co-owned tunnel configuration: a pure ingress merge and a coalescing writer.

Cloudflare stores a tunnel's configuration as one document replaced by PUT, without
If-Match. `merge_ingress` changes only the rules named by the edits (key = hostname + path),
keeps every foreign rule in its order, the existing catch-all and every other top-level key.
`TunnelConfigWriter` turns any number of concurrent edits into one GET and (only if the
document changed) one PUT, and wakes every caller with its own outcome.

The merge asks the client's `ChangeGate` about each rule it would add, change or remove: under
upsert-only no rule is removed, under create-only no existing rule is changed either (new ones are
still added); under dry-run each change is only logged. When nothing is left, nothing is PUT.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import drift
from .client import CloudflareClient, to_wire
from .coalescing import CoalescingWriter, Request
from .errors import NotFound
from .gate import Change
from .models import IngressRule, normalize_name

__all__ = [
    "CATCH_ALL",
    "Edit",
    "Permit",
    "RemoveRule",
    "SetRule",
    "SyncRules",
    "TunnelConfigWriter",
    "get_config",
    "merge_counted",
    "merge_ingress",
    "must_precede",
]

log = logging.getLogger(__name__)
CATCH_ALL: dict[str, Any] = {"service": "http_status:404"}


@dataclass(frozen=True)
class SetRule:
    rule: IngressRule


@dataclass(frozen=True)
class RemoveRule:
    hostname: str
    path: str | None = None

    @property
    def key(self) -> tuple[str, str | None]:
        return (normalize_name(self.hostname), self.path or None)


@dataclass(frozen=True)
class SyncRules:
    """Make the rules a caller owns exactly `rules`: every rule `owns` accepts and whose key
    (hostname + path) is not among `rules` is removed, then each of `rules` is set.

    `owns` sees each current rule (wire form) at merge time, i.e. after the fresh GET; it is
    never asked about the catch-all.
    """

    rules: tuple[IngressRule, ...]
    owns: Callable[[Mapping[str, Any]], bool]


Edit = SetRule | RemoveRule | SyncRules
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


def _matches_key(removed: Key) -> Callable[[Key, dict[str, Any]], bool]:
    return lambda key, _rule: key == removed


def _owned_but_not(edit: SyncRules) -> Callable[[Key, dict[str, Any]], bool]:
    kept: set[Key] = {rule.key for rule in edit.rules}
    return lambda key, rule: key not in kept and edit.owns(rule)


def merge_ingress(
    config: Mapping[str, Any] | None, edits: Sequence[Edit], permit: Permit | None = None
) -> dict[str, Any]:
    """The configuration after applying `edits` in order (the input is not modified); each rule
    change is made only when `permit` allows it.

    When no edit changes anything, the result equals the input (steady state writes nothing).
    """
    return merge_counted(config, edits, permit)[0]


def merge_counted(
    config: Mapping[str, Any] | None, edits: Sequence[Edit], permit: Permit | None = None
) -> tuple[dict[str, Any], list[int]]:
    """`merge_ingress`, and how many rules each edit added, changed or removed."""
    allowed = permit or _permit_all
    document: dict[str, Any] = copy.deepcopy(dict(config)) if config else {}
    rules: list[dict[str, Any]] = [dict(rule) for rule in document.get("ingress") or []]
    catch_all = rules.pop() if rules and _is_catch_all(rules[-1]) else None
    keys: list[Key] = [_key(rule) for rule in rules]

    def remove(drop: Callable[[Key, dict[str, Any]], bool]) -> int:
        nonlocal keys, rules
        kept = [
            (key, rule)
            for key, rule in zip(keys, rules, strict=True)
            if not (drop(key, rule) and allowed("delete", rule))
        ]
        removed = len(rules) - len(kept)
        if removed:
            keys = [key for key, _ in kept]
            rules = [rule for _, rule in kept]
        return removed

    def set_rule(rule: IngressRule) -> int:
        wanted = rule.to_wire()
        wanted_key: Key = rule.key
        if wanted_key in keys:
            index = keys.index(wanted_key)
            if _meaningful(rules[index]) == _meaningful(wanted) or not allowed("update", wanted):
                return 0
            rules[index] = wanted
            return 1
        if not allowed("create", wanted):
            return 0
        position = next((i for i, key in enumerate(keys) if _precedes(wanted_key, key)), len(rules))
        rules.insert(position, wanted)
        keys.insert(position, wanted_key)
        return 1

    counts: list[int] = []
    for edit in edits:
        if isinstance(edit, RemoveRule):
            counts.append(remove(_matches_key(edit.key)))
        elif isinstance(edit, SyncRules):
            counts.append(remove(_owned_but_not(edit)) + sum(set_rule(rule) for rule in edit.rules))
        else:
            counts.append(set_rule(edit.rule))
    if not any(counts):
        return (copy.deepcopy(dict(config)) if config else {}), counts
    document["ingress"] = [*rules, catch_all if catch_all is not None else dict(CATCH_ALL)]
    return document, counts


async def get_config(client: CloudflareClient, account_id: str, tunnel_id: str) -> dict[str, Any] | None:
    """The tunnel's configuration document (`{"ingress": [...], ...}`), None when never set."""
    result = await client.call(
        "tunnels.config.get",
        client.sdk.zero_trust.tunnels.cloudflared.configurations.get,
        tunnel_id,
        account_id=account_id,
    )
    config = to_wire(result).get("config")
    return dict(config) if isinstance(config, Mapping) else None


async def put_config(client: CloudflareClient, account_id: str, tunnel_id: str, config: dict[str, Any]) -> None:
    await client.call(
        "tunnels.config.put",
        client.sdk.zero_trust.tunnels.cloudflared.configurations.update,
        tunnel_id,
        account_id=account_id,
        extra_body={"config": config},  # already in wire form: skip the SDK's slow re-aliasing
    )


@dataclass(eq=False)
class _EditRequest(Request):
    edit: Edit = field(kw_only=True)


class TunnelConfigWriter(CoalescingWriter[_EditRequest]):
    """The single writer of one tunnel's configuration in this process.

    Edits queue up; one drain task flushes them: GET, merge all, PUT once if changed. Edits
    arriving during a flush go to the next one. Every caller gets its flush's outcome.
    """

    label = "tunnel configuration writer"

    def __init__(self, client: CloudflareClient, account_id: str, tunnel_id: str) -> None:
        super().__init__()
        self._client = client
        self.account_id = account_id
        self.tunnel_id = tunnel_id

    async def set_rule(self, rule: IngressRule) -> None:
        await self._submit(_EditRequest(edit=SetRule(rule)))

    async def remove_rule(self, hostname: str, path: str | None = None) -> None:
        await self._submit(_EditRequest(edit=RemoveRule(hostname, path)))

    async def sync_rules(self, rules: Sequence[IngressRule], owns: Callable[[Mapping[str, Any]], bool]) -> bool:
        """Make the rules `owns` accepts exactly `rules` (see `SyncRules`), in one flush. True when
        that flush wrote the configuration (this edit or another one of the same flush changed it)."""
        return bool(await self._submit(_EditRequest(edit=SyncRules(tuple(rules), owns))))

    async def get_config(self) -> dict[str, Any] | None:
        return await get_config(self._client, self.account_id, self.tunnel_id)

    def _permit(self, change: Change, rule: Mapping[str, Any]) -> bool:
        path = rule.get("path")
        what = f"{rule.get('hostname')}{' path ' + str(path) if path else ''} → {rule.get('service')}"
        return self._client.gate.allows(change, "tunnel_rule", f"{what} (tunnel {self.tunnel_id})")

    async def _flush(self, requests: list[_EditRequest]) -> None:
        edits = [request.edit for request in requests]
        try:
            current = await self.get_config()
        except NotFound as gone:  # the tunnel is gone: removals are done, additions cannot be
            for request in requests:
                if isinstance(request.edit, RemoveRule) or (
                    isinstance(request.edit, SyncRules) and not request.edit.rules
                ):
                    request.resolve(False)
                else:
                    request.fail(gone)
            return
        merged, counts = merge_counted(current, edits, self._permit)
        changed = merged != (current or {})
        if changed:
            await put_config(self._client, self.account_id, self.tunnel_id, merged)
            log.debug("Tunnel %s: wrote configuration with %d edits", self.tunnel_id, len(edits))
            for request, rule_changes in zip(requests, counts, strict=True):
                drift.count(request.front_door, "tunnel_rule", rule_changes)
        for request in requests:
            request.resolve(changed)
