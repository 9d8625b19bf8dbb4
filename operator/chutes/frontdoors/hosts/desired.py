"""What a source object wants in the router-hosts server, read from its body (pure).

A *source* is what one provenance comment names (the upstream operator's format, kept byte for byte so either
operator can take over from the other): a HostMapping (``k8s:<ns>/<name>``), or the Traefik routes of one
namespace/name (``k8s-ingress:<ns>/<name>``), an IngressRoute and an IngressRouteTCP of that name together (the
comment does not say which kind made an entry, so the two want the union of their hostnames, and neither ever
removes what the other wants).

Each wanted entry is a :class:`~chutes.hosts_core.models.HostSpec`, keyed by its hostname. A spec the server
would refuse is never wanted: it is a problem reported on the object (a HostMapping's, and a route's malformed
``spec.routes``, stop the whole source: nothing is changed for it; an invalid route hostname is skipped, the
others go on, as upstream).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from chutes import conditions as c
from chutes.hosts_core.models import HostSpec, hostname_problem, spec_problems

__all__ = [
    "FINALIZER",
    "GROUP",
    "HOST_IDS_ANNOTATION",
    "IGNORE_LABEL",
    "ROUTE_FINALIZER",
    "ROUTE_TAGS",
    "Source",
    "Wants",
    "hostnames_from_routes",
    "parse_host_ids",
    "render_host_ids",
    "wants_of_mapping",
    "wants_of_routes",
]

GROUP, VERSION, PLURAL = "router-hosts.fzymgc.house", "v1alpha1", "hostmappings"
TRAEFIK_GROUP, TRAEFIK_VERSION = "traefik.io", "v1alpha1"
ROUTE_PLURALS: dict[str, str] = {"IngressRoute": "ingressroutes", "IngressRouteTCP": "ingressroutetcps"}

FINALIZER = f"{GROUP}/host-cleanup"  # HostMappings (ours, as upstream's)
ROUTE_FINALIZER = f"{GROUP}/ingressroute-cleanup"  # upstream's on routes: never added, removed once not needed
HOST_IDS_ANNOTATION = f"{GROUP}/host-ids"
IGNORE_LABEL = f"{GROUP}/ignore"
ROUTE_TAGS = ("kubernetes", "traefik", "ingress")  # in upstream's order
ROUTE_PROOF_TAGS = frozenset({"traefik", "ingress"})  # what an entry of a route must carry besides the comment

Family = Literal["HostMapping", "routes"]

_HOST = re.compile(r"Host\(([^)]*)\)")
_HOST_SNI = re.compile(r"HostSNI\(([^)]*)\)")
_QUOTED = re.compile(r"`([^`]*)`")
CATCH_ALL = "*"  # HostSNI(`*`): every TCP connection, no name to register


@dataclass(frozen=True, order=True)
class Source:
    """The object(s) one provenance comment names."""

    family: Family
    namespace: str
    name: str

    @property
    def comment(self) -> str:
        prefix = "k8s" if self.family == "HostMapping" else "k8s-ingress"
        return f"{prefix}:{self.namespace}/{self.name}"

    @property
    def label(self) -> str:
        """For logs and metrics: ``HostMapping/ns/name`` or ``IngressRoute(TCP)/ns/name``."""
        kind = "HostMapping" if self.family == "HostMapping" else "IngressRoute(TCP)"
        return f"{kind}/{self.namespace}/{self.name}"

    def owns(self, comment: str | None, tags: Iterable[str]) -> bool:
        """Whether an entry with `comment` and `tags` is proven this source's: its comment is exactly ours (and,
        for routes, it carries the ``traefik`` and ``ingress`` tags, as upstream requires before adopting)."""
        if comment != self.comment:
            return False
        return self.family == "HostMapping" or set(tags) >= ROUTE_PROOF_TAGS


def source_of_comment(comment: str | None) -> Source | None:
    """The source a provenance comment names, if it is one of ours (``k8s:`` or ``k8s-ingress:``)."""
    prefix, colon, rest = (comment or "").partition(":")
    namespace, slash, name = rest.partition("/")
    if not colon or not slash or not namespace or not name or "/" in name:
        return None
    if prefix == "k8s":
        return Source("HostMapping", namespace, name)
    if prefix == "k8s-ingress":
        return Source("routes", namespace, name)
    return None


@dataclass(frozen=True)
class Wants:
    """What a source wants: `specs` by hostname (none when it is gone, being deleted or opted out), the
    problems found reading it (reason, message), whether they `block` every change for the source, and the
    `hints`: entry ids by hostname that the objects recorded (status.hostId, the host-ids annotation), to be
    verified before use."""

    specs: Mapping[str, HostSpec] = field(default_factory=dict)
    problems: tuple[tuple[str, str], ...] = ()
    block: bool = False
    hints: Mapping[str, str] = field(default_factory=dict)


def _ignored(body: Mapping[str, Any]) -> bool:
    labels = (body.get("metadata") or {}).get("labels") or {}
    return str(labels.get(IGNORE_LABEL, "")).strip().lower() == "true"


def _deleting(body: Mapping[str, Any]) -> bool:
    return bool((body.get("metadata") or {}).get("deletionTimestamp"))


def _strings(value: Any) -> tuple[tuple[str, ...], bool]:
    """A list of strings from a spec field (absent: empty); False when it is not one."""
    if value is None:
        return (), True
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        return (), False
    return tuple(value), True


def wants_of_mapping(body: Mapping[str, Any] | None) -> Wants:
    """What a HostMapping wants: its entry, unless it is gone, being deleted or opted out. A spec the server
    would refuse is an ``InvalidSpec`` problem that blocks every change (what exists stays as it is)."""
    hints: dict[str, str] = {}
    if body is not None:
        status = body.get("status") or {}
        host_id, hostname = status.get("hostId"), (body.get("spec") or {}).get("hostname")
        if isinstance(host_id, str) and host_id and isinstance(hostname, str):
            hints[hostname] = host_id
    if body is None or _deleting(body) or _ignored(body):
        return Wants(hints=hints)
    spec = body.get("spec") or {}
    ip, hostname = spec.get("ip"), spec.get("hostname")
    aliases, aliases_ok = _strings(spec.get("aliases"))
    tags, tags_ok = _strings(spec.get("tags"))
    problems: list[str] = []
    if not isinstance(ip, str) or not isinstance(hostname, str):
        problems.append("spec.ip and spec.hostname must be strings")
    if not aliases_ok:
        problems.append("spec.aliases must be a list of strings")
    if not tags_ok:
        problems.append("spec.tags must be a list of strings")
    if problems or not isinstance(ip, str) or not isinstance(hostname, str):
        return Wants(problems=tuple((c.INVALID_SPEC, p) for p in problems), block=True, hints=hints)
    comment = mapping_source(body.get("metadata") or {}).comment
    wanted = HostSpec(ip=ip, hostname=hostname, comment=comment, aliases=aliases, tags=tags)
    refused = spec_problems(wanted)
    if refused:
        return Wants(problems=((c.INVALID_SPEC, "; ".join(refused)),), block=True, hints=hints)
    return Wants(specs={hostname: wanted}, hints=hints)


def mapping_source(meta: Mapping[str, Any]) -> Source:
    return Source("HostMapping", str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def hostnames_from_routes(routes: Any) -> tuple[list[str], list[str], str | None]:
    """The hostnames of ``spec.routes``: every name in ``Host(...)`` and ``HostSNI(...)`` of each route's
    ``match``, also the multi-argument form ``Host(`a`, `b`)``, trimmed, de-duplicated (first seen kept, case
    ignored) and in order. Returns (valid names, invalid ones with why, a problem when `routes` is malformed).
    ``HostRegexp`` names no host; ``HostSNI(`*`)`` (any connection) is skipped silently."""
    if routes is None:
        return [], [], None
    if not isinstance(routes, list):
        return [], [], "spec.routes must be a list"
    names: list[str] = []
    invalid: list[str] = []
    seen: set[str] = set()
    for index, route in enumerate(routes):
        if not isinstance(route, Mapping):
            return [], [], f"spec.routes[{index}] must be an object"
        match = route.get("match")
        if match is None:
            continue
        if not isinstance(match, str):
            return [], [], f"spec.routes[{index}].match must be a string"
        for pattern in (_HOST, _HOST_SNI):
            for arguments in pattern.findall(match):
                for raw in _QUOTED.findall(arguments):
                    name = raw.strip()
                    if not name or name == CATCH_ALL or name.lower() in seen:
                        continue
                    seen.add(name.lower())
                    problem = hostname_problem(name)
                    if problem:
                        invalid.append(f"{name!r}: {problem}")
                    else:
                        names.append(name)
    return names, invalid, None


def parse_host_ids(value: Any) -> tuple[dict[str, str], str | None]:
    """The host-ids annotation (hostname -> entry id); an absent or empty one is {}; anything but a JSON object
    of strings is a problem (the map is then rebuilt from the server, never trusted in part)."""
    if value is None or value == "":
        return {}, None
    try:
        parsed = json.loads(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in parsed.items()):
        return {}, f"annotation {HOST_IDS_ANNOTATION} is not a JSON object of hostnames to ids: rebuilt"
    return dict(parsed), None


def render_host_ids(ids: Mapping[str, str]) -> str | None:
    """The annotation's value for `ids`, byte-compatible with upstream (sorted compact JSON); None (the
    annotation removed) when empty."""
    if not ids:
        return None
    return json.dumps(dict(ids), sort_keys=True, separators=(",", ":"))


def route_hostnames(body: Mapping[str, Any]) -> list[str]:
    """The hostnames one route object asks for: none when it is being deleted, opts out or is malformed."""
    if _deleting(body) or _ignored(body):
        return []
    names, _, malformed = hostnames_from_routes((body.get("spec") or {}).get("routes"))
    return [] if malformed else names


def wants_of_routes(bodies: Sequence[Mapping[str, Any]], namespace: str, name: str, ingress_ip: str) -> Wants:
    """What the IngressRoute and/or IngressRouteTCP named namespace/name (`bodies`: those that exist) want
    together: their live, not opted-out hostnames, at `ingress_ip` with upstream's tags. A malformed
    ``spec.routes`` blocks every change for the source; without an ingress IP nothing can be registered (a
    blocking problem too, unless nothing is wanted: then what exists is removed)."""
    source = Source("routes", namespace, name)
    problems: list[tuple[str, str]] = []
    hints: dict[str, str] = {}
    hostnames: list[str] = []
    block = False
    for body in bodies:
        kind = str(body.get("kind") or "IngressRoute")
        ids, corrupt = parse_host_ids(((body.get("metadata") or {}).get("annotations") or {}).get(HOST_IDS_ANNOTATION))
        hints.update(ids)
        if corrupt:
            problems.append((c.INVALID_ANNOTATION, f"{kind}: {corrupt}"))
        if _deleting(body) or _ignored(body):
            continue
        names, invalid, malformed = hostnames_from_routes((body.get("spec") or {}).get("routes"))
        if malformed:
            problems.append((c.INVALID_SPEC, f"{kind}: {malformed}"))
            block = True
        problems.extend((c.INVALID_HOSTNAME, f"{kind}: hostname {bad} (skipped)") for bad in invalid)
        hostnames.extend(n for n in names if n.lower() not in {h.lower() for h in hostnames})
    if hostnames and not ingress_ip:
        problems.append((c.INGRESS_IP_MISSING, "no default ingress IP is configured (CHUTES_DEFAULT_INGRESS_IP): "
                                               f"{', '.join(hostnames)} not registered"))
        return Wants(problems=tuple(problems), block=True, hints=hints)
    specs = {h: HostSpec(ip=ingress_ip, hostname=h, comment=source.comment, tags=ROUTE_TAGS) for h in hostnames}
    return Wants(specs=specs, problems=tuple(problems), block=block, hints=hints)
