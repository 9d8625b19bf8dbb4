"""Access service tokens: find-or-create, rotation and delete, answered from the account's `TokenView`
(:mod:`.token_view`: one listing of every token, listed again when older than the resync interval, coalesced,
updated by our own writes), not by one query per token.

A token is ours only when this installation's ledger records it (`Recorded`: its id, or the intent to create it
and a creation time after it); a token found under our name that the record does not cover is someone else's
and is never changed, rotated nor deleted. Unlike an Access application's domain, a token's name is not unique
at Cloudflare: a second token of a name is created without a word. So nothing but our own decision keeps a
create from making a duplicate, and the trade-offs differ from :mod:`.access`'s:

- `ensure_service_token` answers from the view when it holds the recorded token under its name: no call in the
  steady state (a resync, a restart's second pass). A token deleted behind our back is seen, and created again,
  once the view is listed again: at the first resync after its listing is older than the resync interval, so
  within two intervals (it was the next resync when each token was read by name).
- A create is only decided on a listing begun during the call (the view's `refresh`, coalesced: every route
  deciding at the same moment shares it), never on an old copy: a token of ours made by another process, or a
  create whose answer was lost, or a foreign token that took the name meanwhile, is always seen first. So a
  stale view never makes a duplicate; a publish of N tokens costs the N creates and the listings their
  decisions share (one when they come together, up to N when they come one by one: what one query each cost).
- A refusal (tokens under our name, none of them the recorded one) is only decided on a listing made during the
  call too, so a foreign token that has gone since the view's copy does not block ours; and so is the resolution
  of an intent whose id was never recorded (a crash between the create and the record): two tokens made after
  it cannot be told apart, and the view may show only one of them.
- `delete_service_token` must not delete a token someone re-purposed (renamed) under an id the ledger still
  records: its name is checked first. The view's copy stands in for that read only when the view is fresh (its
  listing is younger than the resync interval) AND the copy was learned (listed, or answered to our own create)
  at or after the time the ledger recorded the proof (`since`): a copy older than the proof says
  nothing about the object the proof is about, and without `since` the token is read. A renaming made after
  the copy was learned is not seen: a window of at most one resync interval instead of the instant between a
  read and the delete, accepted to spare one read per delete (as for Access applications). A token no longer
  there answers the delete 404: gone, fine. A token the view does not hold is read (another process may have
  made it), unless we deleted it lately (nothing is deleted twice).
- `rotate_service_token` is only asked for a token `ensure_service_token` has just proven ours; when the write
  policy or dry-run skips it, the token as it is comes from a recent copy in the view (else one read).

Every change goes through the client's `ChangeGate`: a skipped rotation returns the token as it is, a skipped
delete returns; under dry-run a create raises `DryRunStop` (its id and secret are needed).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from .client import CloudflareClient, to_wire
from .errors import Conflict, NotFound, RateLimited, TransientError
from .models import Recorded, ServiceToken
from .proofs import covered, require_intent, unrecorded
from .token_view import TokenView

__all__ = [
    "delete_service_token",
    "ensure_service_token",
    "find_service_token",
    "get_service_token",
    "listed_service_tokens",
    "rotate_service_token",
    "token_from_wire",
]

log = logging.getLogger(__name__)


def token_from_wire(data: Mapping[str, Any], *, with_secret: bool) -> ServiceToken:
    return ServiceToken(
        id=str(data.get("id") or ""),
        name=str(data.get("name") or ""),
        client_id=str(data.get("client_id") or ""),
        client_secret=(data.get("client_secret") or None) if with_secret else None,
        expires_at=data.get("expires_at"),
        created_at=str(data["created_at"]) if data.get("created_at") else None,
    )


def _identity(data: Mapping[str, Any]) -> tuple[str, str | None]:
    return str(data.get("id") or ""), str(data["created_at"]) if data.get("created_at") else None


def _recorded_token(view: TokenView, name: str, recorded: Recorded) -> dict[str, Any] | None:
    """The token named `name` in the view that `recorded` proves ours, or None when the view holds no token of that
    name. Tokens so named that the record does not cover are someone else's: Conflict when none is covered."""
    named = view.named(name)
    mine = covered(named, recorded, _identity, f"service token {name}")
    if mine is None and named:
        ids = ", ".join(sorted(str(token.get("id")) for token in named))
        raise unrecorded(f"service token(s) {name} ({ids})", recorded)
    return mine


async def _our_token(view: TokenView, name: str, recorded: Recorded) -> dict[str, Any] | None:
    """`_recorded_token` on the fresh view; a refusal, an absence (a create follows) and the resolution of an
    intent (no id recorded yet: a second token made after it would make it ambiguous) only on a listing begun
    during this call."""
    began = view.clock()
    await view.current()
    while True:
        try:
            mine = _recorded_token(view, name, recorded)
        except Conflict:
            if view.listed_since(began):
                raise
            await view.refresh()
            continue
        if (mine is not None and recorded.id) or view.listed_since(began):
            return mine
        await view.refresh()


async def ensure_service_token(
    client: CloudflareClient,
    view: TokenView,
    name: str,
    duration: str,
    recorded: Recorded,
) -> ServiceToken:
    """The service token named `name`: an existing one comes back WITHOUT its secret (Cloudflare shows it only
    once); a new one comes back with it. Store the secret at once.

    An existing token must be the one `recorded` proves ours (else Conflict); a create needs `recorded.since`.
    Found in the account's view (no call while it holds the token); a create or a refusal is only decided on a
    listing begun during this call (see the module docstring)."""
    found = await _our_token(view, name, recorded)
    if found is not None:
        return token_from_wire(found, with_secret=False)
    require_intent(recorded, f"service token {name}")
    client.gate.allows("create", "service_token", name, needed=True)
    tokens = client.sdk.zero_trust.access.service_tokens
    sent = datetime.now(UTC)
    try:
        created = to_wire(await client.call(
            "service_tokens.create", tokens.create, account_id=view.account_id, name=name, duration=duration
        ))
    except TransientError as error:
        if isinstance(error, RateLimited):
            raise
        # The create may have happened with its answer lost: resolved by the proof on a new listing, and given a
        # fresh secret.
        await view.refresh()
        lost = _recorded_token(view, name, recorded)
        if lost is None:
            raise
        rotated = await _rotate(client, view, str(lost["id"]))
        log.info("Adopted service token %s after a lost create answer; rotated its secret", name)
        return rotated
    view.put(created, sent)
    log.info("Created service token %s", name)
    return token_from_wire(created, with_secret=True)


async def get_service_token(client: CloudflareClient, account_id: str, token_id: str) -> ServiceToken | None:
    """The token with id `token_id` as Cloudflare has it now (never with its secret), or None when it has none."""
    found = await client.get("service_tokens.get", client.sdk.zero_trust.access.service_tokens.get, token_id,
                             account_id=account_id)
    return token_from_wire(found, with_secret=False) if found is not None else None


async def delete_service_token(client: CloudflareClient, view: TokenView, token_id: str, name: str,
                               since: str | None = None) -> None:
    """Delete token `token_id`; a missing one is fine. One named otherwise than the `name` this installation
    recorded for it is a Conflict, left in place (an id is a hint, never proof). `since`: when the ledger
    recorded it (the view's copy stands in for a read only when learned since; see the module docstring)."""
    current = await view.before_delete(token_id, since, lambda data: token_from_wire(data, with_secret=False),
                                       lambda: get_service_token(client, view.account_id, token_id))
    if current is None:
        return
    if current.name != name:
        raise Conflict(f"service token {current.name!r} ({token_id}) is not the token {name!r} "
                       "this installation recorded: left untouched")
    if not client.gate.allows("delete", "service_token", token_id):
        return
    with contextlib.suppress(NotFound):  # gone since the copy was learned: fine
        await client.call("service_tokens.delete", client.sdk.zero_trust.access.service_tokens.delete, token_id,
                          account_id=view.account_id)
    view.drop(token_id)


async def find_service_token(view: TokenView, name: str) -> ServiceToken | None:
    """The service token named `name` (never with its secret), or None: from the view, listed again on a miss
    unless a listing was made during this call."""
    began = view.clock()
    await view.current()
    while True:
        found = next(iter(view.named(name)), None)
        if found is not None:
            return token_from_wire(found, with_secret=False)
        if view.listed_since(began):
            return None
        await view.refresh()


async def rotate_service_token(client: CloudflareClient, view: TokenView, token_id: str) -> ServiceToken:
    """A new secret for the token (the old one stops working); the only other way to learn a secret.
    When the write policy or dry-run skips the rotation: the token as it is, without a secret."""
    if not client.gate.allows("update", "service_token", f"{token_id} (a new secret)"):
        entry = view.recent(token_id)
        if entry is not None:
            return token_from_wire(entry.data, with_secret=False)
        current = await client.call("service_tokens.get", client.sdk.zero_trust.access.service_tokens.get, token_id,
                                    account_id=view.account_id)
        return token_from_wire(to_wire(current), with_secret=False)
    return await _rotate(client, view, token_id)


async def _rotate(client: CloudflareClient, view: TokenView, token_id: str) -> ServiceToken:
    """A new secret: nothing the view holds changes (id, name, client id and creation time stay)."""
    rotated = await client.call("service_tokens.rotate", client.sdk.zero_trust.access.service_tokens.rotate,
                                token_id, account_id=view.account_id)
    return token_from_wire(to_wire(rotated), with_secret=True)


async def listed_service_tokens(view: TokenView) -> list[ServiceToken]:
    """Every service token of the account, ours or not (never with a secret): one listing begun after the call
    (it refreshes the view)."""
    await view.refresh()
    return [token_from_wire(token, with_secret=False) for token in view.tokens()]
