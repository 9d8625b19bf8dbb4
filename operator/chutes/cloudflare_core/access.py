"""Zero Trust Access: self-hosted apps, policies and the one-time-PIN IdP (service tokens: :mod:`.service_tokens`).

Access applications' `tags` cannot carry an ownership marker. Access tags are account-level objects
(``POST /accounts/{id}/access/tags``, a bare ``name``) that must exist before an app names them, and they
label apps for filtering in the App Launcher: a tag has no per-source value, so it could only say "some
chutes-operator", never for which source; it costs one more object and call per account; and anyone
who may edit the app (dashboard, Terraform) may add or drop it. So tags are not proof: apps, like
tunnels and service tokens, are ours only when this installation's ledger records them (`Recorded`).

Every ensure_* finds its object by natural key first (app: domain; app policy: name within
the app; IdP: type onetimepin). For apps what it finds must be the object the `Recorded` proof
covers, else `Conflict` and nothing changes, and a create needs the recorded intent. App-scoped
policies live inside an app proven ours and are found by name there; the one-time-PIN IdP is found
and used, created when absent, never updated nor deleted.
Creates whose key Cloudflare does not enforce are not replayed by the client after a dropped
connection; on a transient failure they look the object up again and resolve it (by the proof)
instead of making a duplicate.

Apps are found in the account's `AppView` (:mod:`.access_view`: one listing of every app with its policies,
listed again when older than the resync interval, coalesced, updated by our own writes), not by one query
per domain:

- `ensure_access_app` decides on the view when it is fresh (no call in the steady state). A stale view may
  miss an app on the domain: the create then meets Cloudflare's own check (a second self-hosted app on a
  domain is refused, 409) and the view is listed again and the app resolved by the proof as after a lost
  answer, so never a duplicate. A stale view may also show an app that is gone or changed: a refusal
  (Conflict) and an adoption are only decided on a listing made during the call, so a foreign app is never
  taken over on an old copy. An app created here can carry its app-scoped allow policy (`policy`): one call,
  the policy's id in the answer, nothing read back.
- `ensure_app_policy` finds the policy in a recent copy of the app in the view (embedded; the answer to our
  create of the app, with the policy, counts): up to date, no call. Creating one is decided on the app's own
  policy listing, never on the view.
- `delete_access_app` must not delete an app someone re-purposed (renamed, moved to another domain) under
  an id the ledger still records: the app's name and domain are checked first. The view's copy of the app
  stands in for that read only when the view is fresh (its listing is younger than the resync interval)
  AND the copy was learned (listed, or answered to our own create or update) at or after the time the
  ledger recorded the proof (`since`, seconds precision): a copy older than the proof says nothing about the
  object the proof is about, and without `since` the app is read. So a re-purposing is seen when it happened
  before the copy was learned, as it is by a read; one made after it is not seen: a window of at most one
  resync interval (the age the view may have), instead of the instant between a read and the delete,
  accepted to spare one read per delete. An app no longer there answers the delete 404: gone, fine. An app
  the view does not hold is read (it may have been made by another process), unless we deleted it lately
  (nothing is deleted twice). App-scoped policies go with their app (never deleted first).

Every change goes through the client's `ChangeGate`: a skipped update returns the object as it is,
a skipped delete returns; under dry-run a create raises `DryRunStop` (its id or secret is needed).
An app whose spec asks for adoption takes over the one foreign app protecting its domain.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from . import drift
from .access_view import AppView, list_access
from .client import CloudflareClient, to_wire
from .errors import Conflict, NotFound, RateLimited, TransientError
from .models import (
    AccessApp,
    AccessAppSpec,
    AppPolicySpec,
    IdentityProvider,
    Policy,
    Recorded,
)
from .ownership import DEFAULT_OWNER, name_owner
from .proofs import covered, require_intent, unrecorded

__all__ = [
    "delete_access_app",
    "delete_app_policy",
    "ensure_access_app",
    "ensure_app_policy",
    "ensure_otp_idp",
    "find_access_app",
    "find_app_policy",
    "find_reusable_policy",
    "get_access_app",
    "list_reusable_policies",
]

log = logging.getLogger(__name__)
OTP_TYPE = "onetimepin"


def _ids(values: Any) -> tuple[str, ...]:
    found: list[str] = []
    for value in values or []:
        if isinstance(value, Mapping):
            if value.get("id"):
                found.append(str(value["id"]))
        elif value:
            found.append(str(value))
    return tuple(found)


def app_from_wire(data: dict[str, Any]) -> AccessApp:
    policies = sorted(
        (item for item in data.get("policies") or [] if isinstance(item, Mapping)),
        key=lambda item: item.get("precedence") or 0,
    )
    return AccessApp(
        id=str(data.get("id") or ""),
        aud=str(data.get("aud") or ""),
        name=str(data.get("name") or ""),
        domain=str(data.get("domain") or "").lower(),
        type=str(data.get("type") or ""),
        session_duration=data.get("session_duration"),
        allowed_idps=_ids(data.get("allowed_idps")),
        auto_redirect_to_identity=bool(data.get("auto_redirect_to_identity")),
        policies=_ids(policies) + tuple(p for p in data.get("policies") or [] if isinstance(p, str)),
        created_at=_created_at(data),
        app_policies=tuple(policy_from_wire(dict(item)) for item in policies
                           if item.get("id") and item.get("name") and not item.get("reusable")),
    )


def _created_at(data: Mapping[str, Any]) -> str | None:
    return str(data["created_at"]) if data.get("created_at") else None


def policy_from_wire(data: dict[str, Any]) -> Policy:
    return Policy(
        id=str(data.get("id") or ""),
        name=str(data.get("name") or ""),
        decision=str(data.get("decision") or ""),
        include=tuple(data.get("include") or ()),
        exclude=tuple(data.get("exclude") or ()),
        require=tuple(data.get("require") or ()),
        precedence=data.get("precedence"),
        reusable=bool(data.get("reusable")),
    )


def _reusable_ids(data: dict[str, Any]) -> tuple[str, ...]:
    items = [item for item in data.get("policies") or [] if isinstance(item, Mapping) and item.get("reusable")]
    items.sort(key=lambda item: item.get("precedence") or 0)
    return _ids(items)


def _app_body(spec: AccessAppSpec, attached_reusable: tuple[str, ...]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "self_hosted",
        "name": spec.name,
        "domain": spec.domain,
        "session_duration": spec.session_duration,
        "auto_redirect_to_identity": spec.auto_redirect_to_identity,
    }
    if spec.allowed_idps:
        body["allowed_idps"] = list(spec.allowed_idps)
    if spec.policies or attached_reusable:
        body["policies"] = [{"id": pid, "precedence": i} for i, pid in enumerate(spec.policies, start=1)]
    return body


def _app_up_to_date(data: dict[str, Any], spec: AccessAppSpec) -> bool:
    app = app_from_wire(data)
    return (
        app.name == spec.name
        and app.session_duration == spec.session_duration
        and set(app.allowed_idps) == set(spec.allowed_idps)
        and app.auto_redirect_to_identity == spec.auto_redirect_to_identity
        and _reusable_ids(data) == spec.policies
        and all(data.get(key) == value for key, value in spec.extra.items())
    )


def _adoptable(app: Mapping[str, Any], spec: AccessAppSpec) -> bool:
    """Whether adoption may take `app` over: never an app named like one of any chutes-operator
    installation's for this object (same base name) or carrying an owner suffix (``name@owner``)."""
    name = str(app.get("name") or "")
    return name_owner(name) == (name, DEFAULT_OWNER) and name != name_owner(spec.name)[0]


def _app_identity(app: Mapping[str, Any]) -> tuple[str, str | None]:
    return str(app.get("id") or ""), _created_at(app)


def _recorded_app(
    apps: list[dict[str, Any]], spec: AccessAppSpec, recorded: Recorded, *, adopt: bool = False
) -> tuple[dict[str, Any] | None, bool]:
    """(the app protecting the domain that `recorded` proves ours, or the one adoptable app with `adopt`;
    whether it is adopted). An intent (no id yet) is resolved by domain, name and creation time.
    Other apps on the domain, with no proven one: Conflict."""
    candidates = apps if recorded.id else [app for app in apps if app.get("name") == spec.name]
    mine = covered(candidates, recorded, _app_identity, f"Access app {spec.name} for {spec.domain}")
    if mine is not None or not apps:
        return mine, False
    if adopt and len(apps) == 1 and _adoptable(apps[0], spec):
        return apps[0], True
    names = ", ".join(sorted(f"{app.get('name')!r} ({app.get('id')})" for app in apps))
    hint = " (not adopted: adoption takes over exactly one app of no other owner)" if adopt else ""
    raise unrecorded(f"Access app(s) {names} protecting {spec.domain}", recorded, hint=hint)


def _policy_body(spec: AppPolicySpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "decision": spec.decision,
        "include": _rules(spec.include),
        "exclude": _rules(spec.exclude),
        "require": _rules(spec.require),
        "precedence": spec.precedence,
    }


def _decide(view: AppView, spec: AccessAppSpec, recorded: Recorded,
            adopt: bool) -> tuple[dict[str, Any] | None, bool]:
    return _recorded_app(view.on_domain(spec.domain), spec, recorded, adopt=adopt)


async def _our_app(view: AppView, spec: AccessAppSpec, recorded: Recorded,
                   adopt: bool) -> tuple[dict[str, Any] | None, bool]:
    """`_recorded_app` on the fresh view; a refusal, an adoption, or an intent's resolution to an app (no recorded
    id: a crash, or a claim that lost its entry) only on a listing begun during this call. The view may still hold
    an app deleted behind our back since its listing: taken for an intent's, it would be recorded as this source's
    protection, and the CNAME written next would route the hostname with no Access application in front of it."""
    began = view.clock()
    await view.current()
    while True:
        try:
            current, adopting = _decide(view, spec, recorded, adopt)
        except Conflict:
            if view.listed_since(began):
                raise
            await view.refresh()
            continue
        if (adopting or (current is not None and not recorded.id)) and not view.listed_since(began):
            await view.refresh()
            continue
        return current, adopting


async def ensure_access_app(
    client: CloudflareClient, view: AppView, spec: AccessAppSpec, recorded: Recorded,
    policy: AppPolicySpec | None = None,
) -> AccessApp:
    """The self-hosted app for `spec.domain`: created, replaced when different, else as is.

    The app found must be the one `recorded` proves ours (by id, or an intent's name and creation time),
    else Conflict unless `spec.adopt` takes over the one other app; a create needs `recorded.since`.
    `policy`: an app-scoped policy created with the app, in the same call (an app that exists is left to
    `ensure_app_policy`). Found in the account's view (no call while it is fresh); a refusal or an adoption
    is only decided on a listing made during this call."""
    apps = client.sdk.zero_trust.access.applications
    gate = client.gate
    current, adopting = await _our_app(view, spec, recorded, spec.adopt and gate.may_adopt)
    if current is not None:
        if not adopting and _app_up_to_date(current, spec):
            return app_from_wire(current)
        what = f"{spec.name} for {spec.domain}" + (f" (adopting app {current.get('name')!r})" if adopting else "")
        if not gate.allows("update", "access_app", what):
            return app_from_wire(current)
        if adopting:
            log.info("Adopting Access app %r (%s) for %s as %s (adoption requested)",
                     current.get("name"), current.get("id"), spec.domain, spec.name)
        body = _app_body(spec, _reusable_ids(current))
        sent = datetime.now(UTC)
        try:
            updated = to_wire(await client.call(
                "access.apps.update",
                apps.update,
                str(current["id"]),
                account_id=view.account_id,
                extra_body=dict(spec.extra) or None,
                **body,
            ))
        except NotFound:  # gone since the view's copy was learned: decided again on a new listing
            await view.refresh()
            if view.get(str(current["id"])) is not None:
                raise
            return await ensure_access_app(client, view, spec, recorded, policy)
        view.put(updated, sent)
        log.info("Updated Access app %s for %s", spec.name, spec.domain)
        return app_from_wire(updated)
    require_intent(recorded, f"Access app {spec.name} for {spec.domain}")
    gate.allows("create", "access_app", f"{spec.name} for {spec.domain}", needed=True)
    body = _app_body(spec, ())
    if policy is not None:
        gate.allows("create", "access_policy", f"{policy.name} with app {spec.name}", needed=True)
        body["policies"] = [*body.get("policies", ()), _policy_body(policy)]
    sent = datetime.now(UTC)
    try:
        created = to_wire(await client.call(
            "access.apps.create",
            apps.create,
            account_id=view.account_id,
            extra_body=dict(spec.extra) or None,
            **body,
        ))
    except (TransientError, Conflict) as error:
        if isinstance(error, RateLimited):
            raise
        # A 409 (an app on the domain the view did not show) or a lost answer: decided on a new listing.
        await view.refresh()
        current = _decide(view, spec, recorded, False)[0]
        if current is None:
            raise
        return app_from_wire(current)
    view.put(created, sent)
    if policy is not None:
        drift.count(drift.current(), "access_policy")  # created with the app, in its call
    log.info("Created Access app %s for %s", spec.name, spec.domain)
    return app_from_wire(created)


async def get_access_app(client: CloudflareClient, account_id: str, app_id: str) -> AccessApp | None:
    """The app with id `app_id`, or None when Cloudflare has none."""
    found = await client.get("access.apps.get", client.sdk.zero_trust.access.applications.get, app_id,
                             account_id=account_id)
    return app_from_wire(found) if found is not None else None


async def find_access_app(view: AppView, domain: str, name: str) -> AccessApp | None:
    """The app for `domain` named `name`, or None: from the view, listed again on a miss unless a listing
    was made during this call."""
    began = view.clock()
    await view.current()
    while True:
        found = next((app for app in view.on_domain(domain) if app.get("name") == name), None)
        if found is not None:
            return app_from_wire(found)
        if view.listed_since(began):
            return None
        await view.refresh()


async def delete_access_app(client: CloudflareClient, view: AppView, app_id: str, domain: str, name: str,
                            since: str | None = None) -> None:
    """Delete app `app_id`; a missing one is fine. One protecting another domain or named otherwise than the
    `domain` and `name` this installation recorded for it is a Conflict, left in place (an id is a hint, never
    proof). `since`: when the ledger recorded it (the view's copy stands in for a read only when learned since;
    see the module docstring)."""
    current = await view.before_delete(app_id, since, app_from_wire,
                                       lambda: get_access_app(client, view.account_id, app_id))
    if current is None:
        return
    if current.domain != domain.strip().lower() or current.name != name:
        raise Conflict(
            f"Access app {current.name!r} ({app_id}) for {current.domain} is not the app "
            f"{name!r} for {domain} this installation recorded: left untouched"
        )
    if not client.gate.allows("delete", "access_app", app_id):
        return
    with contextlib.suppress(NotFound):  # gone since the copy was learned: fine. Its app-scoped policies go with it
        await client.call("access.apps.delete", client.sdk.zero_trust.access.applications.delete, app_id,
                          account_id=view.account_id)
    view.drop(app_id)


def _rules(rules: Any) -> list[dict[str, Any]]:
    return [dict(rule) for rule in rules or ()]


def _policy_up_to_date(policy: Policy, spec: AppPolicySpec) -> bool:
    return (
        policy.decision == spec.decision
        and _rules(policy.include) == _rules(spec.include)
        and _rules(policy.exclude) == _rules(spec.exclude)
        and _rules(policy.require) == _rules(spec.require)
        and (policy.precedence is None or policy.precedence == spec.precedence)
    )


def _rule_key(rule: Mapping[str, Any]) -> str:
    return json.dumps(rule, sort_keys=True, default=str)


def revocation(current: Policy, spec: AppPolicySpec) -> AppPolicySpec | None:
    """What of the change from `current` to `spec` only revokes access: the allow policy as it is, minus the
    include rules `spec` no longer has (nothing granted, nothing else changed); None when none is dropped (or
    dropping them would leave no rule, or the policy is not an allow policy in both)."""
    if current.decision != "allow" or spec.decision != "allow":
        return None
    wanted = {_rule_key(rule) for rule in spec.include}
    kept = tuple(rule for rule in _rules(current.include) if _rule_key(rule) in wanted)
    if not kept or len(kept) == len(current.include):
        return None
    return AppPolicySpec(name=current.name, decision="allow", include=kept, exclude=tuple(_rules(current.exclude)),
                         require=tuple(_rules(current.require)),
                         precedence=current.precedence if current.precedence is not None else spec.precedence)


async def _find_app_policy(client: CloudflareClient, account_id: str, app_id: str, name: str) -> Policy | None:
    items = await list_access(client, "access.app_policies.list",
                              client.sdk.zero_trust.access.applications.policies.list, account_id, app_id)
    policies = [policy_from_wire(item) for item in items]
    return next((p for p in policies if p.name == name and not p.reusable), None)


def _embedded_policy(view: AppView, app_id: str, name: str) -> Policy | None:
    """The app-scoped policy named `name` as a recent copy of the app in the view embeds it, or None."""
    entry = view.recent(app_id)
    if entry is None:
        return None
    return next((p for p in app_from_wire(entry.data).app_policies if p.name == name), None)


def _in_view(view: AppView, app_id: str, policy: dict[str, Any], precedence: int) -> None:
    """Our write of an app-scoped policy, in the view's copy of its app."""
    shown = dict(policy, reusable=False)
    shown.setdefault("precedence", precedence)
    view.replace_policies(app_id, lambda items: [*(p for p in items if p.get("id") != shown.get("id")), shown])


async def ensure_app_policy(client: CloudflareClient, view: AppView, app_id: str, spec: AppPolicySpec) -> Policy:
    """The app-scoped policy named `spec.name` on the app: created or updated to match.

    Found in a recent copy of the app in the view (its policies embedded): no call when it is up to date. A
    create is decided on the app's own policy listing (never on the view: no duplicate)."""
    resource = client.sdk.zero_trust.access.applications.policies
    account_id = view.account_id
    body = _policy_body(spec)
    current = _embedded_policy(view, app_id, spec.name)
    if current is None:
        current = await _find_app_policy(client, account_id, app_id, spec.name)
    what = f"{spec.name} on app {app_id}"
    if current is not None:
        if _policy_up_to_date(current, spec):
            return current
        # A policy forbidding updates (create-only) still lets access be revoked: the rules `spec` dropped go.
        revoking = revocation(current, spec) if client.gate.forbids("update") else None
        if not client.gate.allows("update", "access_policy", what, revokes=revoking is not None):
            return current
        if revoking is not None:
            log.info("policy %s: revoking access granted by %s (the rules no longer wanted)", client.gate.policy,
                     what)
            body.update(include=_rules(revoking.include), exclude=_rules(revoking.exclude),
                        require=_rules(revoking.require), precedence=revoking.precedence)
        try:
            updated = to_wire(await client.call(
                "access.app_policies.update", resource.update, current.id, app_id=app_id, account_id=account_id,
                **body,
            ))
        except NotFound:  # the view's copy was older than its deletion: decided again on the app's listing
            gone = current.id
            view.replace_policies(app_id, lambda items: [p for p in items if p.get("id") != gone])
            return await ensure_app_policy(client, view, app_id, spec)
        _in_view(view, app_id, updated, body["precedence"])
        return policy_from_wire(updated)
    client.gate.allows("create", "access_policy", what, needed=True)
    try:
        created = to_wire(await client.call(
            "access.app_policies.create", resource.create, app_id, account_id=account_id, **body
        ))
    except TransientError as error:
        if isinstance(error, RateLimited):
            raise
        found = await _find_app_policy(client, account_id, app_id, spec.name)
        if found is None:
            raise
        return found
    _in_view(view, app_id, created, spec.precedence)
    return policy_from_wire(created)


async def delete_app_policy(client: CloudflareClient, view: AppView, app_id: str, policy_id: str) -> None:
    deleted = await client.delete("access.app_policies.delete", "access_policy", f"{policy_id} on app {app_id}",
                                  client.sdk.zero_trust.access.applications.policies.delete, policy_id,
                                  app_id=app_id, account_id=view.account_id)
    if deleted or (not client.gate.forbids("delete") and not client.gate.dry_run):
        view.replace_policies(app_id, lambda items: [p for p in items if p.get("id") != policy_id])


async def find_reusable_policy(client: CloudflareClient, account_id: str, name: str) -> Policy | None:
    """The account-level (reusable) policy named exactly `name`, or None."""
    return next((policy for policy in await list_reusable_policies(client, account_id) if policy.name == name), None)


def _idp_from_wire(data: dict[str, Any]) -> IdentityProvider:
    return IdentityProvider(
        id=str(data.get("id") or ""), name=str(data.get("name") or ""), type=str(data.get("type") or "")
    )


async def _find_otp(client: CloudflareClient, account_id: str) -> IdentityProvider | None:
    items = await list_access(client, "idps.list", client.sdk.zero_trust.identity_providers.list, account_id)
    return next((_idp_from_wire(i) for i in items if i.get("type") == OTP_TYPE), None)


async def ensure_otp_idp(client: CloudflareClient, account_id: str) -> IdentityProvider:
    """The account's one-time-PIN identity provider (there is at most one per account)."""
    found = await _find_otp(client, account_id)
    if found is not None:
        return found
    client.gate.allows("create", "identity_provider", "One-time PIN", needed=True)
    try:
        created = await client.call(
            "idps.create",
            client.sdk.zero_trust.identity_providers.create,
            account_id=account_id,
            name="One-time PIN",
            type=OTP_TYPE,
            config={},
        )
    except Conflict:
        found = await _find_otp(client, account_id)
        if found is None:
            raise
        return found
    log.info("Created the one-time-PIN identity provider")
    return _idp_from_wire(to_wire(created))


# --- lookups used by front doors that find their objects by natural key -----------------------------


async def find_app_policy(client: CloudflareClient, account_id: str, app_id: str, name: str) -> Policy | None:
    """The app-scoped (not reusable) policy named `name` on the app, or None."""
    return await _find_app_policy(client, account_id, app_id, name)


async def list_reusable_policies(client: CloudflareClient, account_id: str) -> list[Policy]:
    """Every account-level (reusable) policy, in one listing."""
    items = await list_access(client, "access.policies.list", client.sdk.zero_trust.access.policies.list, account_id)
    return [dataclasses.replace(policy_from_wire(item), reusable=True) for item in items]
