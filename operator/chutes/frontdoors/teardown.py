"""The deletes that take down what a source's claims record (pure): shared by the *decide* steps of a deletion or a
withdrawal (the ChuteGateway door's, the HTTPRoute door's).

Per hostname claim (:func:`hostname`), in the order the safety rules need: its tunnel rule (when recorded), then the
source's DNS records at the name (always: they are proven the source's by their marker, recorded or not), then its
Access application (when recorded; its app-scoped policies go with it), then its service token (when recorded). Per
tunnel claim (:func:`tunnel`): its tunnel, after what the caller names. Each change carries the claim as read and
the entry it removes; a claim's last change says so: it is released after it when nothing it records is left.

These are plain deletes: :func:`chutes.frontdoors.changes.admit` holds every one of them under a write policy that
never deletes and under dry-run (the objects stay, and so does their proof in the claims). The executor
(:class:`chutes.frontdoors.claiming.Withdrawer`) proves each object ours through the core before it goes; what is not
ours stays, and so do the Access application and token of a hostname where records not the source's remain.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from chutes.claim import ACCESS_APP, DNS, SERVICE_TOKEN, TUNNEL, TUNNEL_RULE, Claim
from chutes.frontdoors.changes import Change

__all__ = ["KINDS", "Out", "hostname", "tunnel"]

KINDS = {TUNNEL_RULE: "tunnel_rule", DNS: "dns_record", ACCESS_APP: "access_app", SERVICE_TOKEN: "service_token",
         TUNNEL: "tunnel"}  # a claim's entry -> the kind of its change


@dataclass(frozen=True)
class Out:
    """What the executor needs for one delete: the claim (as read) and the entry to remove (`obj`), and whether it
    is the claim's `last` change. None for a change of no claim (a door's Kubernetes objects)."""

    claim: Claim | None = None
    obj: str = ""
    last: bool = False


def _delete(claim: Claim, obj: str, name: str, detail: str, needs: tuple[str, ...] = ()) -> Change[Out]:
    return Change("delete", KINDS[obj], name, Out(claim, obj), detail, key=f"{KINDS[obj]}/{claim.key}", needs=needs)


def hostname(claim: Claim, needs: tuple[str, ...] = ()) -> list[Change[Out]]:
    """The deletes of one hostname claim, in order (see the module); each needs `needs` and the ones before it that
    route to the hostname."""
    key = claim.key
    rule, app, token = claim.entry(TUNNEL_RULE), claim.entry(ACCESS_APP), claim.entry(SERVICE_TOKEN)
    out: list[Change[Out]] = []
    if rule is not None:
        out.append(_delete(claim, TUNNEL_RULE, key, f"(tunnel {rule.get('tunnel') or '?'})", needs))
    routing = (*needs, *(change.key for change in out))
    out.append(_delete(claim, DNS, key, f"(the records of {claim.source} at the name)", routing))
    routing = (*routing, out[-1].key)
    if app is not None:
        out.append(_delete(claim, ACCESS_APP, key, f"({app.get('name') or app.get('id') or 'as recorded'})",
                           routing))
    if token is not None:
        out.append(_delete(claim, SERVICE_TOKEN, key, f"({token.get('name') or token.get('id') or 'as recorded'})",
                           routing))
    last = out[-1]
    out[-1] = dataclasses.replace(last, payload=dataclasses.replace(last.payload, last=True))
    return out


def tunnel(claim: Claim, needs: tuple[str, ...] = ()) -> Change[Out]:
    """The delete of the tunnel a tunnel claim records (``<account>/<name>``), after `needs`; its claim goes with it."""
    entry = claim.entry(TUNNEL) or {}
    change = _delete(claim, TUNNEL, str(entry.get("name") or claim.key.partition("/")[2]),
                     str(entry.get("id") or "(as recorded)"), needs)
    return dataclasses.replace(change, payload=Out(claim, TUNNEL, last=True))
