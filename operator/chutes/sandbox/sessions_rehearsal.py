"""``chutes plan`` for the session-Pod door: its configuration, when it is planned, its Pods' outcomes, and when it
has settled.

The door is configured as its sidecar is, by environment variables (:mod:`chutes.frontdoors.sessions.config`):
``--sessions-env FILE`` (KEY=VALUE lines, as a dotenv file) and ``--sessions-env-var KEY=VALUE`` (repeatable, over
the file's). It is planned when they are given and the manifests hold Pods carrying ``SESSION_HASH_LABEL`` (or the
saved state holds such Pods, or DNS records of the door for this owner id). It runs with ``HEALTH_PORT`` 0 (any free
port: the plan never takes the sidecar's). Its token is accepted by the sandbox (:mod:`.prerequisites`) and never
printed nor saved.

A session Pod has no status: the door's outcome for it is what its last pass made of it (published, blocked, or
refused by the door's own pure checks, with the door's messages). The door has settled when its loop is idle
(:meth:`SessionLoop.idle`, read on the operator's loop) and its Pod watch has listed once; the plan's quiet period,
which Pod changes restart, covers the moment between a Pod's change and the watch seeing it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kopf

from chutes import conditions as c
from chutes.authorization import HostnameRules
from chutes.cloudflare_core.ownership import marks
from chutes.frontdoors.sessions import desired as d
from chutes.frontdoors.sessions.config import SessionConfig, SessionConfigError, load_config, require_marker_fits
from chutes.sandbox import manifests
from chutes.sandbox.outcomes import Source
from chutes.sandbox.runner import OperatorThread

__all__ = ["POD", "DoorState", "SessionsEnvError", "SessionsRehearsal", "configure", "planned", "pod_outcomes",
           "read_door", "read_env"]

POD: manifests.Kind = ("v1", "Pod")
ROUTE: manifests.Kind = (f"{d.TRAEFIK_GROUP}/{d.TRAEFIK_VERSION}", "IngressRoute")
DOOR = "session door"
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SessionsEnvError(ValueError):
    """The session door's environment cannot be read or is invalid; the message never holds a value."""


def _pair(text: str, where: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    key = key.strip()
    key = key[len("export "):].strip() if key.startswith("export ") else key
    if not sep or not _KEY.match(key):
        raise SessionsEnvError(f"{where}: expected KEY=VALUE")
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    return key, value


def read_env(path: str | None, pairs: Sequence[str] = ()) -> dict[str, str]:
    """The variables of a KEY=VALUE file (blank lines and ``#`` comments skipped, an ``export`` prefix and quotes
    around a value allowed), then of ``pairs`` (over the file's). Errors name the line, never its text."""
    environ: dict[str, str] = {}
    if path is not None:
        try:
            lines = Path(path).read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise SessionsEnvError(f"--sessions-env {path}: cannot read it: {type(exc).__name__}") from None
        for number, line in enumerate(lines, 1):
            if line.strip() and not line.strip().startswith("#"):
                key, value = _pair(line, f"--sessions-env {path} line {number}")
                environ[key] = value
    for index, pair in enumerate(pairs, 1):
        key, value = _pair(pair, f"--sessions-env-var number {index}")
        environ[key] = value
    return environ


def configure(environ: Mapping[str, str], owner_id: str) -> SessionConfig:
    """The door's configuration, checked as the door checks it at start."""
    try:
        config = load_config(environ)
        require_marker_fits(config, owner_id)
    except SessionConfigError as exc:
        raise SessionsEnvError(f"the session door's environment: {exc}") from None
    return config


def _hash_label(obj: Mapping[str, Any], config: SessionConfig) -> bool:
    return bool(((obj.get("metadata") or {}).get("labels") or {}).get(config.session_hash_label))


def planned(config: SessionConfig, docs: Sequence[Mapping[str, Any]], saved: Mapping[str, Any] | None,
            start: Mapping[str, Any], owner_id: str) -> bool:
    """Whether the manifests or the saved state involve the door: a Pod with the hash label, or a record of its."""
    pods = [o for o in [*docs, *((saved or {}).get("objects") or ())] if (o.get("apiVersion"), o.get("kind")) == POD]
    if any(_hash_label(pod, config) for pod in pods):
        return True
    for record in (start.get("dns_records") or {}).get(config.zone_id) or ():
        value = d.hash_of(config, str(record.get("name") or ""))
        if value is not None and marks(record.get("comment"), owner_id, d.source(config, value)):
            return True
    return False


@dataclass(frozen=True)
class DoorState:
    """What the door's loop says, read on the operator's loop (`started` False: its startup has not run yet)."""

    started: bool = False
    idle: bool = False
    error: str | None = None
    published: frozenset[str] = frozenset()
    blocked: Mapping[str, str] = field(default_factory=dict)  # hostname -> why (the door's message)
    rules: HostnameRules = field(default_factory=HostnameRules.allow_all)


def read_door(memo: kopf.Memo) -> DoorState:
    """The door's state (call it on the operator's loop: :meth:`OperatorThread.call`)."""
    loop, watch = memo.get("sessions"), memo.get("sessions_watch")
    if loop is None or watch is None:
        return DoorState()
    result = loop.last_result
    return DoorState(True, loop.idle() and watch.listings > 0, loop.last_error,
                     frozenset(result.published if result else ()), dict(result.blocked if result else {}),
                     loop.publisher.rules)


def _refusal_reasons(config: SessionConfig, pods: Sequence[Mapping[str, Any]],
                     rules: HostnameRules) -> tuple[dict[str, d.Session], dict[str, tuple[str, str]]]:
    """The sessions the door publishes and, per refused Pod (namespace/name), its reason and message: the door's own
    pure checks."""
    sessions, refused = d.sessions_from_pods(config, pods)
    sessions, unauthorized = d.authorized_sessions(config, sessions, rules)
    return sessions, {f"{r.pod.namespace}/{r.pod.name}": (r.reason, r.message) for r in [*refused, *unauthorized]}


def pod_outcomes(config: SessionConfig, pods: Sequence[Mapping[str, Any]], door: DoorState) -> list[Source]:
    """The outcome of each Pod with the hash label, as the door's last pass left it."""
    sessions, refused = _refusal_reasons(config, pods, door.rules)
    hostnames = {f"{ref.namespace}/{ref.name}": s.hostname for s in sessions.values() for ref in s.pods}
    found: list[Source] = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        key = f"{namespace}/{name}"
        if not d.wants_session(config, pod):
            found.append(Source("Pod", namespace, name, None, detail=(
                f"not a session Pod of the door: it watches namespace {config.watch_namespace}, Pods matching "
                f"{config.pod_selector.text or 'anything'}")))
        elif key in refused:
            reason, message = refused[key]
            found.append(Source("Pod", namespace, name, False, reason, message))
        elif (host := hostnames.get(key, "")) in door.blocked:
            message = door.blocked[host]
            reason = c.CLOUDFLARE_REJECTED if "Cloudflare refused" in message else c.HOSTNAME_CONFLICT
            found.append(Source("Pod", namespace, name, False, reason, message))
        elif host in door.published:
            session = next(s for s in sessions.values() if s.hostname == host)
            found.append(Source("Pod", namespace, name, True, detail=(
                f"published {host} → {config.router_service_url}; IngressRoutes {', '.join(d.route_names(session))} "
                f"in {config.ingressroute_namespace}")))
        else:
            found.append(Source("Pod", namespace, name, None, detail="not published"))
    return found


@dataclass
class SessionsRehearsal:
    """The session door's side of one plan."""

    config: SessionConfig
    environ: dict[str, str] = field(repr=False)  # as given (the token among them): for the operator only
    operator: OperatorThread | None = None  # attached once it runs

    def operator_environ(self) -> dict[str, str]:
        """The door's variables, with HEALTH_PORT 0: any free port."""
        return self.environ | {"HEALTH_PORT": "0"}

    def namespaces(self) -> list[str]:
        return sorted({self.config.watch_namespace, self.config.ingressroute_namespace})

    async def door(self) -> DoorState:
        if self.operator is None:
            return DoorState()
        return await asyncio.wrap_future(self.operator.call(read_door))

    async def outcomes(self, api: Any, table: Mapping[manifests.Kind, manifests.Resource]
                       ) -> tuple[list[Source], list[str]]:
        """The Pods' outcomes (and, while the door has not settled, a source saying why), and the Pods' versions."""
        pods = [p for p in await manifests.list_all(api, *POD, table) if _hash_label(p, self.config)]
        versions = [str(p["metadata"].get("resourceVersion")) for p in pods]
        door = await self.door()
        found = pod_outcomes(self.config, pods, door)
        if not door.idle:
            why = ("not started yet" if not door.started else f"its last pass failed: {door.error}" if door.error
                   else "a pass is under way or due")
            found.append(Source(DOOR, None, f"of namespace {self.config.watch_namespace}", None, "Progressing", why,
                                settled=False))
        return found, versions

    async def routes(self, api: Any, table: Mapping[manifests.Kind, manifests.Resource]) -> list[dict[str, Any]]:
        """The door's IngressRoutes (saved with the state, as the door left them)."""
        return [r for r in await manifests.list_all(api, *ROUTE, table, f"{d.MANAGED_BY_LABEL}={d.MANAGED_BY}")
                if d.owns_route(self.config, r)]
