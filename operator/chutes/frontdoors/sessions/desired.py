"""What session Pods should publish: hostnames, DNS records, tunnel rules and Traefik IngressRoutes,
and how to recognise what this front door published earlier. Pure functions; no I/O.

Everything is keyed on the session hash (the Pod's ``SESSION_HASH_LABEL``), never on the Pod name, so two
replicas compute the same objects, markers and names (the seed's naming, v1):

- hostname ``<hash><ROUTE_SUFFIX>.<DOMAIN>``; its first label is ``<hash><ROUTE_SUFFIX>``;
- proxied CNAME → ``<CF_TUNNEL_ID>.cfargotunnel.com`` whose ownership marker names
  ``Session/<WATCH_NAMESPACE>/<hash>``;
- tunnel rule hostname → ``ROUTER_SERVICE_URL``, ours only while its hostname holds such a record (the
  record is the proof, created before the rule and deleted after it);
- IngressRoutes ``opencode-session-<first label>-signin`` and ``-app`` in ``INGRESSROUTE_NAMESPACE``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from chutes import conditions
from chutes.authorization import HostnameRules
from chutes.cloudflare_core.models import DesiredRecord, DnsRecord, IngressRule
from chutes.cloudflare_core.ownership import marks
from chutes.frontdoors import adoption, annotation_keys
from chutes.frontdoors.sessions.config import SessionConfig

TRAEFIK_GROUP = "traefik.io"
TRAEFIK_VERSION = "v1alpha1"
INGRESSROUTE_PLURAL = "ingressroutes"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "opencode-cloudflare-operator"
ROUTE_PREFIX = "opencode-session-"
ROUTE_KINDS = ("signin", "app")
SIGNIN_SERVICE = {"name": "oauth2-proxy-users", "namespace": "oauth2-proxy", "port": 80}
SOURCE_KIND = "Session"
MAX_LABEL = 63

_HASH = re.compile(r"^[a-z0-9]+$")


@dataclass(frozen=True)
class PodRef:
    """Enough of a Pod to post an Event on it (and to serve the oldest first)."""

    namespace: str
    name: str
    uid: str
    created: str = ""  # metadata.creationTimestamp (RFC 3339: sorts as text)

    def body(self) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"namespace": self.namespace, "name": self.name, "uid": self.uid}}

    @classmethod
    def of(cls, pod: Mapping[str, Any]) -> PodRef:
        meta = pod.get("metadata") or {}
        return cls(str(meta.get("namespace") or ""), str(meta.get("name") or ""), str(meta.get("uid") or ""),
                   str(meta.get("creationTimestamp") or ""))


@dataclass(frozen=True)
class Session:
    hash: str
    first_label: str
    hostname: str
    pods: tuple[PodRef, ...] = ()
    adopt: bool = False  # take over a record without our marker (asked, and permitted: see permit_adoption)
    asked_adoption: bool = False  # one of its Pods asks for it (see frontdoors.adoption)


@dataclass(frozen=True)
class Refusal:
    """A Pod that asks for a session it cannot have (bad hash, or a hostname outside the operator's hostname
    rules): a Warning Event, nothing published."""

    pod: PodRef
    reason: str
    message: str
    session_hash: str = ""  # set when the hash itself is valid


INVALID_HASH = conditions.INVALID_SESSION_HASH
INVALID_SPEC = conditions.INVALID_SPEC
POD_ANNOTATIONS = annotation_keys.own_keys(())  # kopf keeps no progress on Pods (event handlers only)
HOSTNAME_NOT_AUTHORIZED = conditions.HOSTNAME_NOT_AUTHORIZED


def first_label(config: SessionConfig, session_hash: str) -> str:
    return f"{session_hash}{config.route_suffix}"


def hostname(config: SessionConfig, session_hash: str) -> str:
    return f"{first_label(config, session_hash)}.{config.domain}"


def hash_problem(config: SessionConfig, value: str) -> str | None:
    """Why ``value`` cannot be a session hash, or None when it can."""
    if not _HASH.match(value):
        return f"session hash {value!r} must be lower-case letters and digits only"
    label = first_label(config, value)
    if len(label) > MAX_LABEL:
        return f"hostname label {label!r} is {len(label)} characters long, over the DNS limit of {MAX_LABEL}"
    if len(hostname(config, value)) > 253:
        return f"hostname {hostname(config, value)!r} is over 253 characters"
    return None


def annotation_problems(pod: Mapping[str, Any]) -> list[str]:
    """One message per ``chutes.troubleshat.com/`` key on a session Pod that is not one the operator knows (a
    typo of ``adopt``)."""
    annotations = (pod.get("metadata") or {}).get("annotations")
    return annotation_keys.problems(annotations, (annotation_keys.PREFIX,), POD_ANNOTATIONS,
                                    annotation_keys.INPUT_KEYS)


def wants_session(config: SessionConfig, pod: Mapping[str, Any]) -> bool:
    """Whether the Pod is a session Pod this front door watches (namespace and selector)."""
    meta = pod.get("metadata") or {}
    return meta.get("namespace") == config.watch_namespace and config.pod_selector.matches(meta.get("labels"))


def session_hash(config: SessionConfig, pod: Mapping[str, Any]) -> str | None:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    value = labels.get(config.session_hash_label)
    return str(value) if value else None


def sessions_from_pods(
    config: SessionConfig, pods: Iterable[Mapping[str, Any]]
) -> tuple[dict[str, Session], list[Refusal]]:
    """The sessions the live Pods want (by hash, the longest-waiting first), and the Pods refused. Pods
    outside the watched namespace or selector, or without the hash label, are ignored."""
    wanted: dict[str, list[PodRef]] = {}
    adopting: set[str] = set()
    refused: list[Refusal] = []
    for pod in pods:
        if not wants_session(config, pod):
            continue
        value = session_hash(config, pod)
        if value is None:
            continue
        problem = hash_problem(config, value)
        if problem is not None:
            refused.append(Refusal(PodRef.of(pod), INVALID_HASH, f"{problem}: nothing is published"))
            continue
        typos = annotation_problems(pod)
        if typos:  # what its session published stays (the watch reports the Pod alive: protected)
            refused.append(Refusal(PodRef.of(pod), INVALID_SPEC, f"{'; '.join(typos)}: nothing is published "
                                   "for this Pod", value))
            continue
        wanted.setdefault(value, []).append(PodRef.of(pod))
        if adoption.source_requests(pod):
            adopting.add(value)
    oldest_first = sorted(wanted.items(), key=lambda item: (min(ref.created for ref in item[1]), item[0]))
    sessions = {
        key: Session(key, first_label(config, key), hostname(config, key), tuple(refs), adopt=key in adopting,
                     asked_adoption=key in adopting)
        for key, refs in oldest_first
    }
    return sessions, refused


def authorized_sessions(
    config: SessionConfig, sessions: Mapping[str, Session], rules: HostnameRules
) -> tuple[dict[str, Session], list[Refusal]]:
    """The sessions whose hostname the watched namespace may publish (hostname rules), in their order, and a
    refusal for every Pod of the others: their hostnames are not published (and unpublished if they were)."""
    namespace = config.watch_namespace
    allowed: dict[str, Session] = {}
    refused: list[Refusal] = []
    for key, session in sessions.items():
        if rules.allows(namespace, session.hostname):
            allowed[key] = session
            continue
        message = f"{rules.explain(namespace, session.hostname)}: nothing is published"
        refused += [Refusal(pod, HOSTNAME_NOT_AUTHORIZED, message, session.hash) for pod in session.pods]
    return allowed, refused


def permit_adoption(
    config: SessionConfig, sessions: Mapping[str, Session], rules: HostnameRules, allow_all: bool
) -> dict[str, Session]:
    """The sessions, each asking for adoption only where the operator permits it (``allow_all``, or a hostname
    rule with ``adopt: true``): a Pod's annotation alone never takes over a record someone else made."""
    namespace = config.watch_namespace
    return {
        key: replace(session, adopt=adoption.permitted(session.asked_adoption, namespace, session.hostname, rules,
                                                       allow_all))
        for key, session in sessions.items()
    }


# --- Cloudflare -------------------------------------------------------------------------------


def source(config: SessionConfig, session_hash: str) -> str:
    return f"{SOURCE_KIND}/{config.watch_namespace}/{session_hash}"


def dns_record(config: SessionConfig, session: Session) -> DesiredRecord:
    return DesiredRecord(session.hostname, "CNAME", config.tunnel_target, proxied=True,
                         source=source(config, session.hash), adopt=session.adopt)


def tunnel_rule(config: SessionConfig, session: Session) -> IngressRule:
    return IngressRule(session.hostname, config.router_service_url)


@functools.cache
def _hostname_pattern(suffix: str, domain: str) -> re.Pattern[str]:
    return re.compile(rf"^([a-z0-9]+){re.escape(suffix)}\.{re.escape(domain)}$")


def hash_of(config: SessionConfig, name: str) -> str | None:
    """The session hash a hostname was made from (``<hash><ROUTE_SUFFIX>.<DOMAIN>``), else None."""
    found = _hostname_pattern(config.route_suffix, config.domain).match(name)
    return found.group(1) if found else None


def owns_record(config: SessionConfig, record: DnsRecord, owner_id: str) -> bool:
    """Whether `record` is this front door's for this watch namespace: its name is a session hostname
    and its marker names `owner_id` and the session of that hostname (``Session/<ns>/<hash>``). Proven by
    the whole marker, never by its prefix (a long marker's source is hashed)."""
    value = hash_of(config, record.name)
    return value is not None and marks(record.comment, owner_id, source(config, value))


def proven_hostnames(config: SessionConfig, records: Iterable[DnsRecord], owner_id: str) -> frozenset[str]:
    """The names among `records` whose record is proven this front door's (:func:`owns_record`)."""
    return frozenset(record.name for record in records if owns_record(config, record, owner_id))


def owns_rule(rule: Mapping[str, Any], proven: Container[str]) -> bool:
    """Whether a tunnel rule is this front door's: it has no path and its hostname holds a DNS record proven
    a session's of this watch namespace (`proven`, see :func:`proven_hostnames`). Never by shape: a rule
    at a session-shaped hostname whose record is someone else's, or that has no record (e.g. reached
    through a wildcard record), is not ours, whatever its service."""
    host = str(rule.get("hostname") or "")
    return bool(host) and not rule.get("path") and host in proven


# --- Traefik IngressRoutes ----------------------------------------------------------------------


def route_name(session: Session, kind: str) -> str:
    return f"{ROUTE_PREFIX}{session.first_label}-{kind}"


@functools.cache
def _route_pattern(suffix: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(ROUTE_PREFIX)}[a-z0-9]+{re.escape(suffix)}-(signin|app)$")


def owns_route(config: SessionConfig, route: Mapping[str, Any]) -> bool:
    meta = route.get("metadata") or {}
    return (
        (meta.get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY
        and bool(_route_pattern(config.route_suffix).match(str(meta.get("name") or "")))
    )


def ingress_routes(config: SessionConfig, session: Session) -> list[dict[str, Any]]:
    """The two IngressRoutes of a session, as the seed creates them."""
    namespace = config.ingressroute_namespace
    host = session.hostname
    signin = {
        "entryPoints": ["web"],
        "routes": [
            {
                "match": f"Host(`{host}`) && PathPrefix(`/oauth2/`)",
                "kind": "Rule",
                "services": [dict(SIGNIN_SERVICE)],
            }
        ],
    }
    app = {
        "entryPoints": ["web"],
        "routes": [
            {
                "match": f"Host(`{host}`)",
                "kind": "Rule",
                "middlewares": [{"name": config.oauth2_chain_middleware, "namespace": namespace}],
                "services": [{"name": config.router_service_name, "namespace": namespace, "port": 80}],
                "priority": 1,
            }
        ],
    }
    return [
        _route(route_name(session, "signin"), namespace, signin),
        _route(route_name(session, "app"), namespace, app),
    ]


def _route(name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{TRAEFIK_GROUP}/{TRAEFIK_VERSION}",
        "kind": "IngressRoute",
        "metadata": {"name": name, "namespace": namespace, "labels": {MANAGED_BY_LABEL: MANAGED_BY}},
        "spec": spec,
    }


def route_needs_update(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    labels = (current.get("metadata") or {}).get("labels") or {}
    return current.get("spec") != wanted["spec"] or labels.get(MANAGED_BY_LABEL) != MANAGED_BY


@dataclass(frozen=True)
class RouteChanges:
    create: tuple[dict[str, Any], ...]
    update: tuple[dict[str, Any], ...]
    delete: tuple[str, ...]


def route_changes(
    config: SessionConfig, sessions: Iterable[Session], existing: Iterable[Mapping[str, Any]],
    keep: Iterable[str] = (),
) -> RouteChanges:
    """IngressRoutes to create (in the order of ``sessions``), update (spec drift) and delete (ours, of no
    wanted session, not in ``keep``: names of sessions whose fate is not known yet)."""
    wanted = {route["metadata"]["name"]: route for session in sessions for route in ingress_routes(config, session)}
    current = {str(route["metadata"]["name"]): route for route in existing if owns_route(config, route)}
    kept = set(keep)
    return RouteChanges(
        create=tuple(route for name, route in wanted.items() if name not in current),
        update=tuple(route for name, route in wanted.items()
                     if name in current and route_needs_update(current[name], route)),
        delete=tuple(sorted(name for name in current if name not in wanted and name not in kept)),
    )


def route_names(session: Session) -> tuple[str, ...]:
    return tuple(route_name(session, kind) for kind in ROUTE_KINDS)


# --- replicas: a pass another replica made -------------------------------------------------------------------

NOTE_FRESH_SECONDS = 30.0  # how long a replica's clean pass answers the other replicas' passes for Pod events


def pass_digest(sessions: Iterable[Session], protected: Iterable[str]) -> str:
    """What a pass makes true, as far as its inputs go: the sessions it publishes (hash, hostname, adoption) and
    the hashes it keeps from removal. Two replicas that list the same Pods compute the same digest."""
    wanted = sorted((session.hash, session.hostname, session.adopt) for session in sessions)
    return hashlib.sha256(json.dumps([wanted, sorted(set(protected))]).encode()).hexdigest()[:32]


def pass_note(digest: str, clean: bool, now: float) -> str:
    """The note a pass leaves on the door's Lease: its digest when it ended clean (every session published,
    nothing blocked, refused by Cloudflare or held back), else none; and when (wall-clock seconds)."""
    return json.dumps({"digest": digest if clean else "", "at": round(now, 3)}, separators=(",", ":"))


def answered_by_note(note: str | None, digest: str, now: float) -> bool:
    """Whether a pass for Pod events with `digest` may end at once: the note left on the Lease says a clean pass
    (this replica's or another's) made that very state true less than ``NOTE_FRESH_SECONDS`` ago. Its own drift
    checks are the timed passes' (resync, verification), which never ask."""
    try:
        found = json.loads(note or "")
        at = float(found["at"])
    except (ValueError, TypeError, KeyError):
        return False
    return bool(digest) and found.get("digest") == digest and 0 <= now - at < NOTE_FRESH_SECONDS
