"""`CloudflareCore`: the facade the front doors keep in kopf's memo.

One per process and token: one HTTP client and request budget, one coalescing
`TunnelConfigWriter` per tunnel, one coalescing `DnsWriter` per zone, one `AppView` of the Access
applications per account (listed again when older than `resync_interval`), one coalescing
`TunnelLookup` per account (the tunnel lookups before a create or a delete), a zone cache, the
applications and one `TokenView` of the service tokens per account (each listed again when older than
`resync_interval`), a zone cache, the
owner id written into (and required on) every DNS record it touches, and the write policy and
dry-run switch (`gate.ChangeGate`) every change goes through. `tunnel_lock` (optional) is held
around each flush of a tunnel's configuration so that the writers of every process of this
installation take turns (the operator passes a Kubernetes Lease; no Kubernetes code lives here).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

from . import access, adoption, inventory, service_tokens, tunnels
from .access_view import AppView
from .budget import RequestBudget
from .client import CloudflareClient
from .credentials import ApiCredentials
from .dns import Cleared, DnsSync, DnsWriter, list_records
from .errors import Conflict, CredentialsInvalid, InvalidInput, NotFound
from .gate import ChangeGate, WritePolicy
from .models import (
    AccessApp,
    AccessAppSpec,
    AppPolicySpec,
    DesiredRecord,
    DnsRecord,
    IdentityProvider,
    IngressRule,
    Policy,
    Recorded,
    ServiceToken,
    Tunnel,
    Zone,
)
from .ownership import validate_owner_id
from .reusable_policies import POLICY_CACHE_SECONDS, ReusablePolicies
from .token_view import TokenView
from .tunnel_config import RulePredicate, RuleSync, TunnelConfigWriter, TunnelLock
from .tunnel_lookup import TunnelLookup
from .zones import ZoneDirectory

__all__ = ["CloudflareCore"]


class CloudflareCore:
    def __init__(
        self,
        api_token: str | ApiCredentials,
        base_url: str | None = None,
        owner_id: str = "default",
        budget: RequestBudget | None = None,
        *,
        policy: str = "sync",
        dry_run: bool = False,
        max_attempts: int = 3,
        backoff: float = 0.2,
        tunnel_lock: TunnelLock | None = None,
        resync_interval: float = 300.0,
    ) -> None:
        self.owner_id = validate_owner_id(owner_id)
        self.gate = ChangeGate(policy, dry_run)
        self.client = CloudflareClient(
            api_token, base_url, budget=budget, max_attempts=max_attempts, backoff=backoff, gate=self.gate
        )
        self.zones = ZoneDirectory(self.client)
        self.tunnel_lock = tunnel_lock
        self._tunnel_writers: dict[tuple[str, str], TunnelConfigWriter] = {}
        self._dns_writers: dict[str, DnsWriter] = {}
        self.resync_interval = resync_interval
        self._access_views: dict[str, AppView] = {}
        self._tunnel_lookups: dict[str, TunnelLookup] = {}
        self._token_views: dict[str, TokenView] = {}
        self._reusable_policies: dict[str, ReusablePolicies] = {}
        self._otp_idps: dict[str, tuple[IdentityProvider, float]] = {}  # account -> (provider, when found)
        self._otp_locks: dict[str, asyncio.Lock] = {}

    @property
    def snapshot_ttl(self) -> float:
        """How long a repair pass may read a zone's or a tunnel's last listing instead of its own: half the
        resync interval, so one pass reads each once and the next pass reads afresh."""
        return self.resync_interval / 2

    @property
    def budget(self) -> RequestBudget:
        return self.client.budget

    @property
    def policy(self) -> WritePolicy:
        """``sync``, ``upsert-only`` (never deletes) or ``create-only`` (never deletes nor updates)."""
        return self.gate.policy

    @property
    def dry_run(self) -> bool:
        """Whether changes are only logged (no write request reaches Cloudflare)."""
        return self.gate.dry_run

    async def __aenter__(self) -> CloudflareCore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for writer in self._tunnel_writers.values():
            await writer.aclose()
        for dns_writer in self._dns_writers.values():
            await dns_writer.aclose()
        for view in [*self._access_views.values(), *self._token_views.values()]:
            await view.aclose()
        for lookup in self._tunnel_lookups.values():
            await lookup.aclose()
        self._tunnel_writers.clear()
        self._dns_writers.clear()
        self._access_views.clear()
        self._tunnel_lookups.clear()
        self._token_views.clear()
        self._reusable_policies.clear()
        self._otp_idps.clear()
        await self.client.aclose()

    # -- writers ---------------------------------------------------------------------------
    def tunnel_writer(self, account_id: str, tunnel_id: str) -> TunnelConfigWriter:
        key = (account_id, tunnel_id)
        writer = self._tunnel_writers.get(key)
        if writer is None:
            writer = self._tunnel_writers[key] = TunnelConfigWriter(
                self.client, account_id, tunnel_id, self.tunnel_lock, snapshot_ttl=self.snapshot_ttl
            )
        return writer

    def dns_writer(self, zone_id: str) -> DnsWriter:
        writer = self._dns_writers.get(zone_id)
        if writer is None:

            async def batch_limit() -> int:
                return await self.zones.batch_limit(zone_id)

            writer = self._dns_writers[zone_id] = DnsWriter(
                self.client, zone_id, batch_limit, snapshot_ttl=self.snapshot_ttl
            )
        return writer

    def forget_listings(self) -> None:
        """Drop the zones' and tunnels' last listings that repair passes read (as when they are older than
        `snapshot_ttl`): the next reads are fresh."""
        for dns_writer in self._dns_writers.values():
            dns_writer.forget_snapshot()
        for writer in self._tunnel_writers.values():
            writer.forget_snapshot()

    def access_view(self, account_id: str) -> AppView:
        """The account's Access applications as last listed (see :mod:`.access_view`)."""
        view = self._access_views.get(account_id)
        if view is None:
            view = self._access_views[account_id] = AppView(self.client, account_id, self.resync_interval)
        return view

    def tunnel_lookup(self, account_id: str) -> TunnelLookup:
        """The account's coalesced tunnel lookups (see :mod:`.tunnel_lookup`)."""
        lookup = self._tunnel_lookups.get(account_id)
        if lookup is None:
            lookup = self._tunnel_lookups[account_id] = TunnelLookup(self.client, account_id)
        return lookup

    def token_view(self, account_id: str) -> TokenView:
        """The account's service tokens as last listed (see :mod:`.token_view`)."""
        view = self._token_views.get(account_id)
        if view is None:
            view = self._token_views[account_id] = TokenView(self.client, account_id, self.resync_interval)
        return view

    # -- tunnels ---------------------------------------------------------------------------
    async def ensure_tunnel(self, account_id: str, name: str, recorded: Recorded) -> Tunnel:
        """The live tunnel named `name`, created when absent. `recorded`: the ledger's proof (a tunnel
        found under the name that it does not cover is a Conflict; a create needs `recorded.since`). Looked up
        in a listing begun after the call, shared with every lookup of the account asked meanwhile."""
        return await tunnels.ensure_tunnel(self.client, self.tunnel_lookup(account_id), account_id, name, recorded)

    async def find_tunnel(self, account_id: str, name: str) -> Tunnel | None:
        """The live tunnel named exactly `name`, or None (a listing begun after the call, shared)."""
        return await self.tunnel_lookup(account_id).find(name)

    async def get_tunnel(self, account_id: str, tunnel_id: str) -> Tunnel | None:
        return await tunnels.get_tunnel(self.client, account_id, tunnel_id)

    async def get_tunnel_token(self, account_id: str, tunnel_id: str) -> str:
        return await tunnels.get_tunnel_token(self.client, account_id, tunnel_id)

    async def delete_tunnel(self, account_id: str, tunnel_id: str, name: str, *, connected_ok: bool) -> None:
        """Delete tunnel `tunnel_id` after looking it up (a listing begun after the call, shared with every lookup
        of the account asked meanwhile; read by id when it is not listed under `name`): one named otherwise than
        `name` is a Conflict, and so is one with active connections unless `connected_ok` (only then cascaded)."""
        await tunnels.delete_tunnel(self.client, self.tunnel_lookup(account_id), account_id, tunnel_id, name,
                                    connected_ok=connected_ok)
        writer = self._tunnel_writers.pop((account_id, tunnel_id), None)
        if writer is not None:
            await writer.aclose()

    async def list_tunnels(self, account_id: str, prefix: str | None = None) -> list[Tunnel]:
        return await tunnels.list_tunnels(self.client, account_id, prefix)

    async def set_ingress_rule(self, account_id: str, tunnel_id: str, rule: IngressRule, owns: RulePredicate) -> None:
        """Write `rule`; `Conflict` (nothing changed) when its hostname + path hold a rule `owns`
        rejects."""
        await self.tunnel_writer(account_id, tunnel_id).set_rule(rule, owns)

    async def remove_ingress_rule(
        self, account_id: str, tunnel_id: str, hostname: str, path: str | None, owns: RulePredicate
    ) -> bool:
        """Remove the rule at hostname + path when `owns` accepts it; a rule it rejects stays. True when
        it was removed."""
        return await self.tunnel_writer(account_id, tunnel_id).remove_rule(hostname, path, owns)

    async def sync_ingress_rules(
        self, account_id: str, tunnel_id: str, rules: Sequence[IngressRule], owns: RulePredicate
    ) -> RuleSync:
        """Make the rules `owns` claims exactly `rules`; foreign rules and the catch-all stay, and a
        wanted rule whose key holds a rule `owns` rejects is not written (`RuleSync.refused`)."""
        return await self.tunnel_writer(account_id, tunnel_id).sync_rules(rules, owns)

    async def set_tunnel_defaults(self, account_id: str, tunnel_id: str, fallback: str,
                                  origin_request: Mapping[str, Any] | None) -> None:
        """The catch-all service and top-level originRequest of a tunnel whose whole configuration is the caller's
        (one it created, proven by its claim); the rules stay as they are. `origin_request` None: kept (a shared
        tunnel whose user asked for its catch-all only). Coalesced with the tunnel's other edits."""
        await self.tunnel_writer(account_id, tunnel_id).set_defaults(fallback, origin_request)

    async def get_tunnel_config(self, account_id: str, tunnel_id: str) -> dict[str, Any] | None:
        return await self.tunnel_writer(account_id, tunnel_id).get_config()

    # -- DNS -------------------------------------------------------------------------------
    async def ensure_dns_record(self, zone_id: str, desired: DesiredRecord, *,
                                proven_ids: Sequence[str] = ()) -> DnsRecord:
        """The record, created or brought in line. `proven_ids`: records that Kubernetes state proves were
        created for `desired.source` (by an earlier version or the seed, without our marker); when a record not
        yet ours holds the name, those are adopted (:meth:`adopt_dns_record`) and the record ensured again."""
        try:
            return await self.dns_writer(zone_id).ensure_record(desired, self.owner_id)
        except Conflict:
            if not await self._adopt_proven(zone_id, desired.name, desired.source, proven_ids):
                raise
        return await self.dns_writer(zone_id).ensure_record(desired, self.owner_id)

    async def _adopt_proven(self, zone_id: str, name: str, source: str, proven_ids: Sequence[str]) -> bool:
        """Adopt each of `proven_ids` at `name` for `source`; whether any was."""
        adopted = False
        for record_id in proven_ids:
            adopted = await self.adopt_dns_record(zone_id, record_id, name, source) is not None or adopted
        return adopted

    async def delete_dns_record(self, zone_id: str, name: str, type: str, source: str) -> None:
        """Delete the `type` record(s) `name` marked as ours for `source`; absent is fine. A foreign record,
        or one of ours held by another source (`Conflict.holder`), raises Conflict and stays."""
        await self.dns_writer(zone_id).delete_record(name, type, self.owner_id, source)

    async def check_dns_name_available(
        self, zone_id: str, name: str, source: str, type: str = "CNAME", *, adopt: bool = False,
        proven_ids: Sequence[str] = (),
    ) -> None:
        """Fail early (Conflict) when `name` is held by a record that is not ours for `source` (the
        object asking): a foreign one, or one of ours held by another source (`Conflict.holder`). With
        `adopt` (not under create-only), a record that `ensure_dns_record` with adoption would take
        over does not count, nor do records of `proven_ids` (see :meth:`ensure_dns_record`): they are adopted."""
        writer = self.dns_writer(zone_id)
        try:
            try:
                await writer.check_name(name, type, self.owner_id, source, adopt=adopt and self.gate.may_adopt)
            except Conflict:
                if not await self._adopt_proven(zone_id, name, source, proven_ids):
                    raise
                await writer.check_name(name, type, self.owner_id, source, adopt=adopt and self.gate.may_adopt)
        except Conflict as conflict:
            conflict.message = f"{conflict.message} (wanted by {source})"
            conflict.args = (conflict.message,)
            raise

    async def sync_dns_records(
        self,
        zone_id: str,
        desired: Sequence[DesiredRecord],
        owns: Callable[[DnsRecord], bool],
        *,
        defer_deletes: bool = False,
        listed: Sequence[DnsRecord] | None = None,
    ) -> DnsSync:
        """Ensure `desired` and delete our other records that `owns` claims (asked only about records
        carrying our owner id: it must check the marker's source itself): one listing of the zone plus
        batches. Names blocked by a record that is not ours for the desired record's source come back in
        `failed`. With `defer_deletes`, the records to delete come back in `DnsSync.stale` instead (for
        `delete_dns_records` once the tunnel no longer routes them). `listed`: the zone as the caller has just
        listed it (`list_dns_records`) and decided on: no listing of its own (a refused batch lists again)."""
        return await self.dns_writer(zone_id).sync_records(desired, owns, self.owner_id, defer_deletes=defer_deletes,
                                                           listed=listed)

    async def delete_dns_records(self, zone_id: str, records: Sequence[DnsRecord]) -> tuple[str, ...]:
        """Delete exactly `records` (as listed by `sync_dns_records`: `DnsSync.stale`) by id in batches,
        without listing; one gone since is fine. Returns the names dealt with (see `DnsWriter.delete_records`)."""
        return await self.dns_writer(zone_id).delete_records(records, self.owner_id)

    async def clear_dns_name(self, zone_id: str, name: str, source: str) -> Cleared:
        """Delete the A, AAAA and CNAME records `name` marked as ours for `source` (coalesced: one listing and
        one batch for every name asked at once); the other routing records there come back, untouched."""
        return await self.dns_writer(zone_id).clear_name(name, self.owner_id, source)

    async def adopt_dns_record(self, zone_id: str, record_id: str, name: str, source: str) -> DnsRecord | None:
        """Mark record `record_id` (named `name`, unmarked or already ours for `source`) as ours for
        `source`, when Kubernetes state proves it was created for that source; None when not adoptable
        (another owner's, or ours for another source)."""
        try:
            return await adoption.adopt_dns_record(self.client, zone_id, record_id, name, self.owner_id, source)
        finally:
            self.dns_writer(zone_id).forget_snapshot()

    async def list_owned_dns_records(self, zone_id: str) -> list[DnsRecord]:
        return await self.dns_writer(zone_id).list_owned(self.owner_id)

    async def list_dns_records(self, zone_id: str) -> list[DnsRecord]:
        """Every record of the zone, ours or not (one listing of up to 5000 records per page)."""
        return await list_records(self.client, zone_id)

    async def dns_records_named(self, zone_id: str, name: str) -> list[DnsRecord]:
        """Every record named exactly `name`, ours or not (one name-filtered listing)."""
        return await list_records(self.client, zone_id, [name])

    # -- zones -----------------------------------------------------------------------------
    async def get_zone(self, zone_id: str) -> Zone:
        return await self.zones.get_zone(zone_id)

    async def find_zone(self, name: str) -> Zone | None:
        return await self.zones.find_zone(name)

    async def verify_access(self, account_id: str, zone_id: str) -> Zone:
        """Prove the token reaches the account (tunnels) and the zone (returned); else
        CredentialsInvalid."""
        try:
            await self.client.call(
                "tunnels.list",
                self.client.sdk.zero_trust.tunnels.cloudflared.list,
                account_id=account_id,
                is_deleted=False,
                per_page=1,
            )
        except (NotFound, InvalidInput) as error:
            raise CredentialsInvalid(f"the token cannot reach account {account_id}: {error}") from error
        try:
            zone = await self.zones.get_zone(zone_id)
        except (NotFound, InvalidInput) as error:
            raise CredentialsInvalid(f"the token cannot reach zone {zone_id}: {error}") from error
        if zone.account_id and zone.account_id != account_id:
            raise CredentialsInvalid(f"zone {zone.name} belongs to another account than {account_id}")
        return zone

    # -- Access ----------------------------------------------------------------------------
    async def ensure_access_app(self, account_id: str, spec: AccessAppSpec, recorded: Recorded,
                                policy: AppPolicySpec | None = None) -> AccessApp:
        """The app for `spec.domain`. `recorded`: the ledger's proof (the app found must be the recorded
        one; a create needs `recorded.since`). With `spec.adopt` (not under create-only) the one other
        app protecting the domain is taken over, unless it is named like another installation's (an
        ``@owner`` suffix, or the same name without ours); otherwise another app is a Conflict.

        Found in the account's view of its apps (one listing, refreshed after the resync interval: no call
        while fresh); a stale view costs a 409 and a listing, never a duplicate. `policy`: created with the
        app when the app is created (the same call; `AccessApp.app_policies` holds it, with its id); for an
        app that exists, see `ensure_app_policy`. A refused write (400: e.g. an identity provider deleted by hand)
        makes the next `ensure_otp_idp` look the provider up again."""
        try:
            return await access.ensure_access_app(self.client, self.access_view(account_id), spec, recorded, policy)
        except InvalidInput:
            self._otp_idps.pop(account_id, None)
            raise

    async def get_access_app(self, account_id: str, app_id: str) -> AccessApp | None:
        return await access.get_access_app(self.client, account_id, app_id)

    async def delete_access_app(self, account_id: str, app_id: str, domain: str, name: str,
                                since: str | None = None) -> None:
        """Delete app `app_id` (its app-scoped policies go with it) after checking it: one for another `domain`
        or named otherwise than `name` is a Conflict. Checked on the view's copy when the view is fresh and
        the copy was learned at or after `since` (when the ledger recorded the proof), else read (see
        :mod:`.access`); already gone (404) is fine."""
        await access.delete_access_app(self.client, self.access_view(account_id), app_id, domain, name, since)

    async def ensure_app_policy(self, account_id: str, app_id: str, spec: AppPolicySpec) -> Policy:
        """The app-scoped policy `spec.name` on the app, found in the view's copy of the app (no call when it
        is up to date), else in the app's policy listing; created or updated to match."""
        return await access.ensure_app_policy(self.client, self.access_view(account_id), app_id, spec)

    async def delete_app_policy(self, account_id: str, app_id: str, policy_id: str) -> None:
        await access.delete_app_policy(self.client, self.access_view(account_id), app_id, policy_id)

    async def find_reusable_policy(self, account_id: str, name: str) -> Policy | None:
        return await access.find_reusable_policy(self.client, account_id, name)

    async def ensure_otp_idp(self, account_id: str) -> IdentityProvider:
        """The account's one-time-PIN identity provider, found (or created) once and remembered for the resync
        interval: concurrent callers (200 bindings at once) wait for one lookup instead of listing 200 times."""
        lock = self._otp_locks.setdefault(account_id, asyncio.Lock())
        async with lock:
            known = self._otp_idps.get(account_id)
            if known is not None and time.monotonic() - known[1] < self.resync_interval:
                return known[0]
            idp = await access.ensure_otp_idp(self.client, account_id)
            self._otp_idps[account_id] = (idp, time.monotonic())
            return idp

    async def ensure_service_token(
        self, account_id: str, name: str, duration: str, recorded: Recorded
    ) -> ServiceToken:
        """The token named `name`, valid for `duration` (e.g. ``8760h``), with its secret only when created
        now. `recorded`: the ledger's proof (a token named so that it does not cover is a Conflict; a create
        needs `recorded.since`).

        Found in the account's view of its tokens (one listing, refreshed after the resync interval: no call
        while it holds the token); a create or a refusal is decided on a listing begun during the call (shared
        by every caller deciding meanwhile), never on an old copy: Cloudflare would not refuse a duplicate."""
        return await service_tokens.ensure_service_token(self.client, self.token_view(account_id), name, duration,
                                                         recorded)

    async def get_service_token(self, account_id: str, token_id: str) -> ServiceToken | None:
        """The token as Cloudflare has it now (one read), or None."""
        return await service_tokens.get_service_token(self.client, account_id, token_id)

    async def delete_service_token(self, account_id: str, token_id: str, name: str, since: str | None = None) -> None:
        """Delete token `token_id` after checking it: one named otherwise than `name` is a Conflict. Checked on the
        view's copy when the view is fresh and the copy was learned at or after `since` (when the ledger recorded
        the proof), else read (see :mod:`.service_tokens`); already gone (404) is fine."""
        await service_tokens.delete_service_token(self.client, self.token_view(account_id), token_id, name, since)

    # -- lookups by natural key and rotation -------------------------------------------------
    async def find_access_app(self, account_id: str, domain: str, name: str) -> AccessApp | None:
        """The app for `domain` named `name` (ours), or None; apps with other names are ignored. From the
        account's view (listed again on a miss)."""
        return await access.find_access_app(self.access_view(account_id), domain, name)

    async def refresh_access_apps(self, account_id: str) -> None:
        """List the account's Access applications again now (coalesced with every caller waiting)."""
        await self.access_view(account_id).refresh()

    async def find_app_policy(self, account_id: str, app_id: str, name: str) -> Policy | None:
        return await access.find_app_policy(self.client, account_id, app_id, name)

    async def list_reusable_policies(self, account_id: str) -> list[Policy]:
        return await access.list_reusable_policies(self.client, account_id)

    async def reusable_policy_ids(self, account_id: str, names: tuple[str, ...]) -> tuple[tuple[str, ...],
                                                                                      tuple[str, ...]]:
        """(the ids of the reusable policies named `names`, in order; the names not found), from the account's
        last listing of them while younger than 30 s and half the resync interval; a name not there lists
        again (see :mod:`.reusable_policies`)."""
        policies = self._reusable_policies.get(account_id)
        if policies is None:
            ttl = min(POLICY_CACHE_SECONDS, self.resync_interval / 2)
            policies = self._reusable_policies[account_id] = ReusablePolicies(self.client, account_id, ttl)
        return await policies.ids(names)

    async def find_service_token(self, account_id: str, name: str) -> ServiceToken | None:
        """The token named `name`, or None. From the account's view (listed again on a miss)."""
        return await service_tokens.find_service_token(self.token_view(account_id), name)

    async def refresh_service_tokens(self, account_id: str) -> None:
        """List the account's service tokens again now (coalesced with every caller waiting)."""
        await self.token_view(account_id).refresh()

    async def rotate_service_token(self, account_id: str, token_id: str) -> ServiceToken:
        """A new secret for a token proven ours; skipped by the write policy or dry-run, the token as it is."""
        return await service_tokens.rotate_service_token(self.client, self.token_view(account_id), token_id)

    # -- whole-account listings (the orphan sweep) -------------------------------------------
    async def list_access_apps(self, account_id: str) -> list[AccessApp]:
        """Every Access application of the account, ours or not: one listing begun after the call (it refreshes
        the account's view)."""
        view = self.access_view(account_id)
        await view.refresh()
        return [access.app_from_wire(app) for app in view.apps()]

    async def list_service_tokens(self, account_id: str) -> list[ServiceToken]:
        """Every service token of the account, ours or not (never with a secret): one listing begun after the call
        (it refreshes the account's view)."""
        return await service_tokens.listed_service_tokens(self.token_view(account_id))

    async def list_zones(self, account_id: str) -> list[Zone]:
        """The zones of the account the token can read."""
        return await inventory.list_zones(self.client, account_id)
