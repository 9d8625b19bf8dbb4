"""A locally configured ``existingTunnel`` (its configuration is a file, not Cloudflare's: adyanth's ConfigMap
mode). It is never converted to remote management (Cloudflare cannot turn it back): no configuration is ever PUT
to Cloudflare for it. The documents themselves are :mod:`config_file`'s; this module reads and writes them.

- **The ConfigMap** ``<tunnel>`` (key ``config.yaml``, in the tunnel's namespace; a ClusterTunnel's in the cluster
  resource namespace), labelled as ours (adyanth's own ConfigMap for the same CR, whose controller ownerReference
  is the CR, is taken over by its reconcile). The (Cluster)Tunnel's reconcile writes it whole when absent;
  afterwards only ``tunnel`` and ``ingress`` are the door's, every other key (edited by hand, or one adyanth does
  not know) is kept.
- **The ingress** is regenerated from the ledger: the rules the hostname claims record in this ConfigMap (their
  ``tunnel_rule`` entry names the (Cluster)Tunnel, so bindings are scoped by its kind and namespace, unlike
  adyanth's merge by name), then the catch-all ``fallbackTarget``. A rule written into the ingress by hand is
  replaced, as adyanth does. Regenerations of one ConfigMap coalesce (one write for the subjects of a binding
  published at once). A rule is recorded (intent) before the write and completed after it; it leaves the
  ConfigMap before its DNS record and Access application go (:func:`drop_rules`, then the claim's teardown).
- **The checksum**: the md5 of ``config.yaml`` goes to the cloudflared pod template's ``cfargotunnel.com/checksum``
  annotation, so every route change restarts cloudflared: the documented cost of local mode.
- **Credentials**: ``credentials.json`` (Secret ``<tunnel>-tunnel-credentials``) from the API Secret's
  ``CLOUDFLARE_TUNNEL_CREDENTIAL_FILE`` (copied verbatim) or ``CLOUDFLARE_TUNNEL_CREDENTIAL_SECRET`` (adyanth's
  ``AccountTag``/``TunnelID``/``TunnelName``/``TunnelSecret``), key names renamed by ``spec.cloudflare``.

The write policy governs Cloudflare objects only: the ConfigMap follows the ledger under every policy (its rule
changes are ``governed=False`` in the change set, :mod:`decide`). Under dry-run nothing is written (the ledger is
not either).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio import client

from chutes import conditions as c
from chutes import kube
from chutes.claims import Claim, ClaimLost, ClaimStore, DryRunClaims
from chutes.cloudflare_core import IngressRule, Tunnel
from chutes.cloudflare_core.coalescing import CoalescingWriter, Request
from chutes.frontdoors import claiming
from chutes.frontdoors.problems import Problem, refused
from chutes.frontdoors.retries import CONFIG_RETRY, CONFLICT_RETRY, MISSING_RETRY
from chutes.frontdoors.tunnels import config_file as cf
from chutes.frontdoors.tunnels import model as m

ENTRY_TUNNEL, ENTRY_CONFIG = cf.ENTRY_TUNNEL, cf.ENTRY_CONFIG
NOT_WRITTEN = "TunnelNotReady"  # the reason tunnels.TUNNEL_NOT_READY
WRITE_ATTEMPTS = 3  # a ConfigMap changed between our read and our write: read and merge again

# --- where the rules go --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One (Cluster)Tunnel's ConfigMap: where it is, whose it is, the tunnel in it. `fallback`: the catch-all's
    service (None: keep the one there); `initial`: the whole document when it is absent (None: not created here,
    the (Cluster)Tunnel's reconcile creates it), with `owner` its ownerReference."""

    api: client.ApiClient = field(repr=False, compare=False)
    namespace: str
    name: str
    tunnel_source: str
    owned_by: Mapping[str, str]
    tunnel_id: str
    deployment: str
    fallback: str | None = None
    initial: Mapping[str, Any] | None = None
    owner: Mapping[str, Any] | None = None
    dry_run: bool = False

    @property
    def where(self) -> str:
        return f"{self.namespace}/{self.name}"


def target_for(api: client.ApiClient, spec: m.TunnelSpec, tunnel_id: str, *, dry_run: bool,
               owner: Mapping[str, Any] | None = None) -> Target:
    """The ConfigMap of `spec`'s tunnel; with `owner` (the (Cluster)Tunnel's reconcile), created when absent."""
    initial = cf.initial_config(tunnel_id, spec.fallback, m.tunnel_origin_request(spec)) if owner is not None else None
    return Target(api=api, namespace=spec.namespace, name=spec.config_name, tunnel_source=spec.source,
                  owned_by=spec.owned_by, tunnel_id=tunnel_id, deployment=spec.deployment_name,
                  fallback=spec.fallback, initial=initial, owner=owner, dry_run=dry_run)


def _target_of(api: client.ApiClient, entry: Mapping[str, Any], owner_id: str, dry_run: bool) -> Target | None:
    """The ConfigMap a claim's local entry names (to take its rule out), None for a remote rule."""
    source, where = str(entry.get(ENTRY_TUNNEL) or ""), str(entry.get(ENTRY_CONFIG) or "")
    kind, name = source.split("/", 1)[0], source.rsplit("/", 1)[-1]
    namespace, _, config = where.partition("/")
    if not source or not namespace or not config or not name:
        return None
    return Target(api=api, namespace=namespace, name=config, tunnel_source=source,
                  owned_by=m.owned_by(kind, name, owner_id), tunnel_id=str(entry.get("tunnel") or ""),
                  deployment=f"{m.base_name(kind, name)}-cloudflared", dry_run=dry_run)


def is_local(claim: Claim) -> bool:
    return bool((claim.entry(claiming.TUNNEL_RULE) or {}).get(ENTRY_TUNNEL))


# --- the writer ----------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Regenerate(Request):
    target: Target = field(kw_only=True)
    claims: ClaimStore = field(kw_only=True)
    without: frozenset[str] = field(kw_only=True, default=frozenset())


class ConfigWriter(CoalescingWriter[_Regenerate]):
    """The single writer of one ConfigMap in this process: regenerations queued while one runs are answered by the
    next one (one read of the ledger, one write)."""

    label = "tunnel ConfigMap writer"

    async def regenerate(self, target: Target, claims: ClaimStore, without: frozenset[str] = frozenset()
                         ) -> str | None:
        result: str | None = await self._submit(_Regenerate(target=target, claims=claims, without=without))
        return result

    async def _flush(self, requests: list[_Regenerate]) -> None:
        # The (Cluster)Tunnel's own request knows the most (the catch-all, the document to create).
        target = next((r.target for r in reversed(requests) if r.target.initial is not None),
                      next((r.target for r in reversed(requests) if r.target.fallback is not None),
                           requests[-1].target))
        without = frozenset().union(*(r.without for r in requests))
        result = await _write(target, requests[-1].claims, without)
        for request in requests:
            request.resolve(result)


_WRITERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str], ConfigWriter]] = \
    weakref.WeakKeyDictionary()


def writer(target: Target) -> ConfigWriter:
    """The writer of `target`'s ConfigMap in this process (per event loop)."""
    writers = _WRITERS.setdefault(asyncio.get_running_loop(), {})
    return writers.setdefault((target.namespace, target.name), ConfigWriter())


async def _rules(claims: ClaimStore, target: Target, without: frozenset[str]) -> list[dict[str, Any]]:
    """The rules the ledger records in `target`'s ConfigMap (intended or written), but those of `without`."""
    rules = []
    for kind in (m.BINDING_KIND, "Service"):
        for claim in await claims.list(kind="hostname", source_kind=kind):
            entry = claim.entry(claiming.TUNNEL_RULE) or {}
            if entry.get(ENTRY_TUNNEL) == target.tunnel_source and claim.key not in without and entry.get("service"):
                rules.append(cf.entry_rule(claim.key, entry))
    return rules


def _controller(metadata: Mapping[str, Any]) -> str | None:
    return next((str(ref.get("uid")) for ref in metadata.get("ownerReferences") or [] if ref.get("controller")),
                None)


def _ours(target: Target, metadata: Mapping[str, Any]) -> bool:
    """Ours: our labels for this (Cluster)Tunnel, or adyanth's ConfigMap for the very CR (its controller)."""
    labels = metadata.get("labels") or {}
    if all(labels.get(key) == value for key, value in target.owned_by.items()):
        return True
    owner_uid = str((target.owner or {}).get("uid") or "")
    return bool(owner_uid) and _controller(metadata) == owner_uid


async def _write(target: Target, claims: ClaimStore, without: frozenset[str]) -> str | None:
    """Regenerate `target`'s ingress and write it (when it changed), then stamp cloudflared's checksum; the
    checksum of ``config.yaml``, None when there is no ConfigMap and `target` does not create one."""
    rules = await _rules(claims, target, without)
    for _ in range(WRITE_ATTEMPTS):
        current = await kube.read_configmap(target.api, target.namespace, target.name)
        if current is None:
            if target.initial is None:
                return None
            text = cf.render(cf.regenerated(target.initial, target.tunnel_id, rules, target.fallback))
            body = {"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": target.name, "namespace": target.namespace,
                                 "labels": dict(target.owned_by),
                                 **({"ownerReferences": [dict(target.owner)]} if target.owner else {})},
                    "data": {cf.CONFIG_KEY: text}}
            if not target.dry_run and await kube.create_configmap(target.api, target.namespace, body) is None:
                continue  # created meanwhile: merge into it
        else:
            meta = current.get("metadata") or {}
            if not _ours(target, meta):
                raise Problem(c.OBJECT_NOT_OURS, str(kube.NotOurs("ConfigMap", target.namespace, target.name,
                                                                   target.owned_by)), CONFLICT_RETRY)
            text = str((current.get("data") or {}).get(cf.CONFIG_KEY) or "")
            try:
                document = cf.parse_config(text)
            except ValueError as exc:
                raise Problem(c.INVALID_SPEC, f"ConfigMap {target.where}: {cf.CONFIG_KEY} is {exc}: fix it, or delete "
                              "the ConfigMap to have it written afresh", CONFIG_RETRY) from None
            wanted = cf.regenerated(document, target.tunnel_id, rules, target.fallback)
            labels = {**(meta.get("labels") or {}), **target.owned_by}
            if wanted != document or labels != (meta.get("labels") or {}):
                text = cf.render(wanted) if wanted != document else text
                body = {**current, "metadata": {**meta, "labels": labels},
                        "data": {**(current.get("data") or {}), cf.CONFIG_KEY: text}}
                if not target.dry_run and not await kube.replace_configmap(target.api, target.namespace,
                                                                           target.name, body):
                    continue  # changed (or deleted) since it was read
        digest = cf.checksum(text)
        if not target.dry_run:
            try:
                await kube.annotate_pod_template(target.api, target.namespace, target.deployment, cf.CHECKSUM, digest,
                                                 target.owned_by)
            except kube.NotOurs as exc:
                raise Problem(c.OBJECT_NOT_OURS, str(exc), CONFLICT_RETRY) from None
        return digest
    raise Problem(c.CONFIG_NOT_READY, f"ConfigMap {target.where} keeps changing under us", CONFIG_RETRY)


async def regenerate(target: Target, claims: ClaimStore, without: frozenset[str] = frozenset()) -> str | None:
    """Regenerate `target`'s ingress from the ledger (coalesced): the checksum of ``config.yaml`` (None: no
    ConfigMap, and `target` does not create one)."""
    return await writer(target).regenerate(target, claims, without)


# --- a hostname's rule ------------------------------------------------------------------------------------------


async def write_rule(target: Target, claims: ClaimStore, claim: Claim, account_id: str,
                     rule: IngressRule) -> Claim:
    """Put the claim's rule into `target`'s ConfigMap: recorded in its ``tunnel_rule`` entry (an intent first,
    completed once the ConfigMap holds it), then the ingress regenerated. TunnelNotReady while the ConfigMap is
    not written (the (Cluster)Tunnel's reconcile writes it)."""
    fields = {"tunnel": target.tunnel_id, "account": account_id, ENTRY_TUNNEL: target.tunnel_source,
              ENTRY_CONFIG: target.where, **cf.rule_fields(rule)}
    entry = claim.entry(claiming.TUNNEL_RULE) or {}
    same = {key: value for key, value in entry.items() if key not in ("since", "id")} == fields
    if not same:
        claim = await claims.intend(claim, claiming.TUNNEL_RULE, **fields)
    if await regenerate(target, claims) is None:
        raise Problem(NOT_WRITTEN, f"ConfigMap {target.where} of the locally configured tunnel is not written "
                      "yet", MISSING_RETRY)
    if same and entry.get("id") == target.tunnel_id:
        return claim
    claim = await claims.complete(claim, claiming.TUNNEL_RULE, target.tunnel_id, **fields)
    before = _target_of(target.api, entry, claims.owner_id, target.dry_run)
    if before is not None and (before.where, before.tunnel_source) != (target.where, target.tunnel_source):
        await regenerate(before, claims)  # the binding moved to another tunnel: out of the one it was in
    return claim


async def drop_rules(claims: ClaimStore, gone: list[Claim]) -> list[Claim]:
    """Take the local rules of the `gone` claims out of their ConfigMaps (regenerated without them), then forget
    those entries; the claims as updated. Remote rules are left to :func:`claiming.tear_down_hostname`."""
    dry_run = isinstance(claims, DryRunClaims)
    targets: dict[tuple[str, str], tuple[Target, set[str]]] = {}
    for claim in gone:
        target = _target_of(claims.api, claim.entry(claiming.TUNNEL_RULE) or {}, claims.owner_id, dry_run)
        if target is not None:
            targets.setdefault((target.where, target.tunnel_source), (target, set()))[1].add(claim.key)
    if not targets:
        return gone
    await asyncio.gather(*(regenerate(target, claims, frozenset(keys)) for target, keys in targets.values()))
    updated = []
    for claim in gone:
        if is_local(claim):
            try:
                claim = await claims.forget(claim, claiming.TUNNEL_RULE)
            except ClaimLost:
                continue  # released meanwhile: nothing left to tear down
        updated.append(claim)
    return updated


def credentials_manifest(spec: m.TunnelSpec, credentials: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": spec.credentials_secret_name, "namespace": spec.namespace,
                         "labels": spec.object_labels},
            "type": "Opaque", "stringData": {cf.CREDENTIALS_KEY: credentials}}


async def read_credentials(api: client.ApiClient, spec: m.TunnelSpec, account_id: str, tunnel: Tunnel) -> str:
    """``credentials.json`` for `tunnel` from the API Secret (see :func:`credentials_json`), or the Problem."""
    keys = spec.credentials
    where = f"Secret {keys.namespace}/{keys.secret}"

    async def value(key: str) -> str | None:
        try:
            return await kube.read_secret_value(api, keys.namespace, keys.secret, key)
        except KeyError:
            return ""

    file, secret = await value(keys.credential_file_key), await value(keys.credential_secret_key)
    if file is None or secret is None:
        raise Problem(c.SECRET_NOT_FOUND, f"{where} does not exist", MISSING_RETRY)
    with refused(MISSING_RETRY):  # the Secret's content: fixed there
        return cf.credentials_json(account_id, tunnel, file, secret, where,
                                   (keys.credential_file_key, keys.credential_secret_key))


async def delete_config(api: client.ApiClient, spec_namespace: str, name: str, owned_by: Mapping[str, str],
                        owner_uid: str | None) -> bool:
    """Delete the (Cluster)Tunnel's ConfigMap when ours (our labels, or adyanth's for the very CR); False when it
    is gone or not ours (left in place)."""
    found = await kube.read_configmap(api, spec_namespace, name)
    if found is None:
        return False
    probe = Target(api=api, namespace=spec_namespace, name=name, tunnel_source="", owned_by=owned_by, tunnel_id="",
                   deployment="", owner={"uid": owner_uid} if owner_uid else None)
    meta = found.get("metadata") or {}
    if not _ours(probe, meta):
        return False
    try:
        return await kube.delete_configmap(api, spec_namespace, name, uid=str(meta.get("uid") or "") or None)
    except kube.StaleObject:
        return False
