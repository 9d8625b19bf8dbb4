"""The ledger of claims: which source object holds a hostname or a tunnel, and what this installation
created in Cloudflare for it. Ownership is recorded here, never inferred from names or status.

One ConfigMap per claim in the *ledger namespace* (only the operator writes there; tenants cannot),
named ``chutes-claim-<sha256(owner|kind|key)[:20]>``: the name is derived from what is claimed, so the
first source whose ``create`` succeeds holds it (Kubernetes answers AlreadyExists to every later one).
Its data: ``kind``, ``key`` (a hostname, or ``<account>/<tunnel name>``), ``source``
(``Kind/namespace/name``), ``claimed_at``, and one JSON entry per recorded Cloudflare object
(``tunnel``, ``access_app``, ``access_policy``, ``service_token``, ``tunnel_rule``, ``dns``): its intent
(``since``, written before the create) and its ``id`` (written after it).

Entries are merge patches of one data key carrying the claim's uid, so a write never lands in a claim
that was released and taken by someone else meanwhile (:class:`ClaimLost`).

Under dry-run the doors use :class:`DryRunClaims` (:func:`claims_for`): the ledger is read, never written.
"""

from __future__ import annotations

import builtins
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from chutes import kube
from chutes.claim import CLAIM_KINDS as CLAIM_KINDS
from chutes.claim import NAME_PREFIX as NAME_PREFIX
from chutes.claim import OBJECTS as OBJECTS
from chutes.claim import RESERVED as RESERVED
from chutes.claim import Claim as Claim
from chutes.claim import ClaimChanged as ClaimChanged
from chutes.claim import ClaimKind as ClaimKind
from chutes.claim import HeldElsewhere as HeldElsewhere
from chutes.claim import claim_name as claim_name
from chutes.claim import normalize_key as normalize_key
from chutes.claim import source_hash as source_hash
from chutes.claim import split_source as split_source

logger = logging.getLogger(__name__)


MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "chutes-operator"
LABEL_OWNER = "chutes.troubleshat.com/claim-owner"
LABEL_KIND = "chutes.troubleshat.com/claim-kind"
LABEL_SOURCE_KIND = "chutes.troubleshat.com/source-kind"
LABEL_SOURCE_NAMESPACE = "chutes.troubleshat.com/source-namespace"
LABEL_SOURCE_HASH = "chutes.troubleshat.com/source-hash"

SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
_ENTRY_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")  # what a ConfigMap data key may be
CREATE_ATTEMPTS = 5  # a claim that comes and goes between our read and our create is retried this often


def operator_namespace(environ: Mapping[str, str]) -> str:
    """``OPERATOR_NAMESPACE``, else the namespace this Pod runs in, else ``default``."""
    if environ.get("OPERATOR_NAMESPACE"):
        return environ["OPERATOR_NAMESPACE"]
    try:
        with open(SERVICE_ACCOUNT_NAMESPACE) as handle:
            return handle.read().strip() or "default"
    except OSError:
        return "default"


def ledger_namespace(configured: str | None, environ: Mapping[str, str]) -> str:
    """Where claims and tunnel leases live: the setting (``CHUTES_LEDGER_NAMESPACE``), else the operator's
    namespace (:func:`operator_namespace`)."""
    return configured or operator_namespace(environ)


def utc_now() -> str:
    """ISO 8601 UTC, seconds precision (what ``since`` and ``claimed_at`` hold)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")



class LedgerMissing(Exception):
    """The ledger namespace does not exist: nothing can be claimed, so nothing is published."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        super().__init__(f"the ledger namespace {namespace!r} does not exist: create it, or point "
                         "CHUTES_LEDGER_NAMESPACE (chart value ledgerNamespace) at an existing one")


class ClaimLost(Exception):
    """The claim's ConfigMap is gone, or the name now holds another claim: its holder holds nothing. The
    caller stops what it was about to do; its next reconcile acquires again."""


class ClaimStore:
    """The claims of one installation (``owner_id``) in one namespace, through the Kubernetes API."""

    def __init__(self, api: client.ApiClient, namespace: str, owner_id: str) -> None:
        self.api = api
        self.namespace = namespace
        self.owner_id = owner_id
        self._selector = f"{MANAGED_BY}={MANAGER},{LABEL_OWNER}={owner_id}"

    def __repr__(self) -> str:
        return f"ClaimStore(namespace={self.namespace!r}, owner_id={self.owner_id!r})"

    async def acquire(self, kind: ClaimKind, key: str, source: str) -> Claim:
        """The claim on ``key`` for ``source``: created (``fresh``) when nobody holds it, the existing one
        when ``source`` holds it already; :class:`HeldElsewhere` when another source does."""
        key = normalize_key(kind, key)
        body = self._manifest(kind, key, source)
        name = body["metadata"]["name"]
        for _attempt in range(CREATE_ATTEMPTS):
            # read first: held already is the common case (every resync of every source acquires again)
            found = await self.get(kind, key)
            if found is not None:
                if found.source != source:
                    raise HeldElsewhere(found)
                return found
            try:
                created = await kube.create_configmap(self.api, self.namespace, body)
            except ApiException as exc:
                if exc.status == 404:
                    raise LedgerMissing(self.namespace) from None
                raise
            if created is not None:
                logger.info("Claimed %s %s for %s (%s/%s)", kind, key, source, self.namespace, name)
                return replace(self._parse(created), fresh=True)
            # created by someone else between our read and our create: read it again
        raise ClaimLost(f"{kind} {key}: its claim {self.namespace}/{name} keeps coming and going")

    async def get(self, kind: ClaimKind, key: str) -> Claim | None:
        found = await kube.read_configmap(self.api, self.namespace, claim_name(self.owner_id, kind, key))
        return None if found is None else self._parse(found)

    async def intend(self, claim: Claim, obj: str, **fields: Any) -> Claim:
        """Record, before creating it, that ``obj`` is about to be created for the claim's source: its entry
        becomes ``{"since": now, **fields}``. Returns the updated claim."""
        return await self._write(claim, obj, {"since": utc_now(), **fields})

    async def complete(self, claim: Claim, obj: str, id: str, **fields: Any) -> Claim:
        """Record the id of ``obj`` once created (its ``since`` and other fields are kept)."""
        return await self._write(claim, obj, {**(claim.entry(obj) or {}), **fields, "id": id})

    async def forget(self, claim: Claim, obj: str) -> Claim:
        """Remove the entry of ``obj`` (it was deleted, or never created)."""
        return await self._write(claim, obj, None)

    async def release(self, claim: Claim, *, unchanged: bool = False) -> None:
        """Delete the claim (only that very ConfigMap: a uid precondition). Already gone: fine. `unchanged`: only
        as it was read (its resourceVersion, a precondition), else :class:`ClaimChanged` (the orphan sweep: what it
        judged from that reading must not drop what was recorded since)."""
        uid = claim.uid
        if not uid:
            current = await self.get(claim.kind, claim.key)
            if current is None or current.source != claim.source:
                return
            uid = current.uid
        name = claim.name or claim_name(self.owner_id, claim.kind, claim.key)
        if unchanged and not claim.version:
            raise ValueError(f"claim {name}: a conditional release needs the claim as read from the ledger")
        try:
            deleted = await kube.delete_configmap(self.api, self.namespace, name, uid=uid,
                                                  resource_version=claim.version if unchanged else None)
        except kube.StaleObject:
            if unchanged and (current := await self.get(claim.kind, claim.key)) is not None and current.uid == uid:
                raise ClaimChanged(f"{claim.kind} {claim.key} of {claim.source}: written since it was read") from None
            logger.info("Claim %s/%s of %s was replaced already: nothing to release", self.namespace, name,
                        claim.source)
            return
        if deleted:
            logger.info("Released %s %s of %s", claim.kind, claim.key, claim.source)

    async def list(self, *, kind: ClaimKind | None = None, source: str | None = None,
                   source_kind: str | None = None) -> builtins.list[Claim]:
        """This installation's claims, filtered by the server on labels (and on the exact source here)."""
        selector = self._selector
        if kind is not None:
            selector += f",{LABEL_KIND}={normalize_kind(kind)}"
        if source is not None:
            selector += f",{LABEL_SOURCE_HASH}={source_hash(source)}"
        if source_kind is not None:
            selector += f",{LABEL_SOURCE_KIND}={source_kind}"
        claims = []
        for found in await kube.list_configmaps(self.api, self.namespace, selector):
            try:
                claim = self._parse(found)
            except ValueError as exc:
                logger.warning("Ignoring malformed claim %s/%s: %s", self.namespace,
                               (found.get("metadata") or {}).get("name"), exc)
                continue
            if source is None or claim.source == source:
                claims.append(claim)
        return sorted(claims, key=lambda c: (c.kind, c.key))

    # --- internals --------------------------------------------------------------------------------

    def _manifest(self, kind: ClaimKind, key: str, source: str) -> dict[str, Any]:
        source_kind, source_namespace, _name = split_source(source)
        labels = {MANAGED_BY: MANAGER, LABEL_OWNER: self.owner_id, LABEL_KIND: kind,
                  LABEL_SOURCE_KIND: source_kind, LABEL_SOURCE_NAMESPACE: source_namespace,
                  LABEL_SOURCE_HASH: source_hash(source)}
        return {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": claim_name(self.owner_id, kind, key), "namespace": self.namespace,
                             "labels": labels},
                "data": {"kind": kind, "key": key, "source": source, "claimed_at": utc_now()}}

    async def _write(self, claim: Claim, obj: str, entry: Mapping[str, Any] | None) -> Claim:
        if obj in RESERVED or not _ENTRY_KEY.match(obj):
            raise ValueError(f"{obj!r} cannot name a claim entry")
        name = claim.name or claim_name(self.owner_id, claim.kind, claim.key)
        gone = ClaimLost(f"{claim.kind} {claim.key}: the claim of {claim.source} ({self.namespace}/{name}) is gone")
        uid = claim.uid
        if not uid:  # a claim not read from the ledger: guard the patch with the current holder's uid
            current = await self.get(claim.kind, claim.key)
            if current is None or current.source != claim.source:
                raise gone
            uid = current.uid
        value = None if entry is None else json.dumps(dict(entry), sort_keys=True, separators=(",", ":"))
        try:
            patched = await kube.patch_configmap(self.api, self.namespace, name,
                                                 {"metadata": {"uid": uid}, "data": {obj: value}})
        except kube.StaleObject:
            patched = None
        if patched is None:
            raise gone
        return self._parse(patched)

    def _parse(self, found: Mapping[str, Any]) -> Claim:
        meta = found.get("metadata") or {}
        data: Mapping[str, Any] = found.get("data") or {}
        kind = normalize_kind(str(data.get("kind") or ""))
        entries: dict[str, Mapping[str, Any]] = {}
        for obj, raw in data.items():
            if obj in RESERVED:
                continue
            try:
                value = json.loads(raw)
            except (TypeError, ValueError):
                value = None
            if isinstance(value, dict):
                entries[obj] = value
            else:
                logger.warning("Claim %s/%s: entry %s is not a JSON object; ignored", self.namespace,
                               meta.get("name"), obj)
        return Claim(kind=kind, key=str(data.get("key") or ""), source=str(data.get("source") or ""),
                     entries=entries, claimed_at=str(data.get("claimed_at") or ""),
                     name=str(meta.get("name") or ""), uid=str(meta.get("uid") or ""),
                     version=str(meta.get("resourceVersion") or ""))


class DryRunClaims(ClaimStore):
    """The ledger under dry-run: read as it is, never written. Each write behaves as if it succeeded, in memory
    only, for the reconcile that makes it: what would be recorded lives in the claims returned (a claim that
    would be created comes back ``fresh``, with no ConfigMap behind it), so a dry-run source never holds a
    hostname or a tunnel, and leaves nothing behind to release when it goes."""

    def __init__(self, real: ClaimStore) -> None:
        super().__init__(real.api, real.namespace, real.owner_id)

    def __repr__(self) -> str:
        return f"DryRunClaims(namespace={self.namespace!r}, owner_id={self.owner_id!r})"

    async def acquire(self, kind: ClaimKind, key: str, source: str) -> Claim:
        found = await self.get(kind, key)
        if found is None:
            return Claim(kind=kind, key=normalize_key(kind, key), source=source, entries={}, claimed_at=utc_now(),
                         fresh=True)
        if found.source != source:
            raise HeldElsewhere(found)
        return found

    async def intend(self, claim: Claim, obj: str, **fields: Any) -> Claim:
        return self._with(claim, obj, {"since": utc_now(), **fields})

    async def complete(self, claim: Claim, obj: str, id: str, **fields: Any) -> Claim:
        return self._with(claim, obj, {**(claim.entry(obj) or {}), **fields, "id": id})

    async def forget(self, claim: Claim, obj: str) -> Claim:
        return self._with(claim, obj, None)

    async def release(self, claim: Claim, *, unchanged: bool = False) -> None:
        return None

    @staticmethod
    def _with(claim: Claim, obj: str, entry: Mapping[str, Any] | None) -> Claim:
        if obj in RESERVED or not _ENTRY_KEY.match(obj):
            raise ValueError(f"{obj!r} cannot name a claim entry")
        entries = {key: value for key, value in claim.entries.items() if key != obj}
        if entry is not None:
            entries[obj] = dict(entry)
        return replace(claim, entries=entries)


def claims_for(claims: ClaimStore, *, dry_run: bool) -> ClaimStore:
    """The ledger as a core may use it: read-only (:class:`DryRunClaims`) when the core is dry-run."""
    if dry_run and not isinstance(claims, DryRunClaims):
        return DryRunClaims(claims)
    return claims


def normalize_kind(kind: str) -> ClaimKind:
    """``kind`` as a :data:`ClaimKind`; :class:`ValueError` for anything else."""
    if kind not in CLAIM_KINDS:
        raise ValueError(f"unknown claim kind {kind!r}: expected one of {', '.join(CLAIM_KINDS)}")
    return kind
