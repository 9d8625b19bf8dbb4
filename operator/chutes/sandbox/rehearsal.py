"""``chutes plan -f <manifests>``: what the operator would change in Cloudflare (and in a router-hosts server)
for these manifests.

Runs the real operator offline, on the emulators (as ``make demo``): the Cloudflare sandbox is seeded
with what the manifests need (:mod:`.prerequisites`) on top of an optional saved state, the manifests are
applied to the Kubernetes emulator, and once every source object has settled and Cloudflare has stopped
changing, the difference between the starting and the final Cloudflare state is the plan
(:mod:`.snapshot_diff`). When the manifests (or the state) involve the router-hosts door, a router-hosts
emulator runs too, the door on (:mod:`.hosts_rehearsal`), and the plan shows its entries' changes as well. Given
the session door's environment (``--sessions-env``), session Pods are planned too (:mod:`.sessions_rehearsal`):
their records and rules are in the Cloudflare plan, their outcomes among the source objects.

A state saved with ``--save-state`` holds the Cloudflare snapshot (no secret: the sandbox never keeps
them), the router-hosts entries, and the source objects as the operator left them (status, the HTTPRoute
door's state ConfigMaps, the routes' host-ids annotations, session Pods and the session door's IngressRoutes; no
Secret). Planning against it first restores them all and lets the operator settle, then applies the manifests as
updates: the given manifests are the whole desired state, so a saved source object that is not among them is
deleted (as a GitOps sync with pruning does).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import yaml
from pydantic import ValidationError

from chutes import kube
from chutes.sandbox import hosts_rehearsal, manifests, sessions_rehearsal
from chutes.sandbox.cloudflare import SandboxThread
from chutes.sandbox.cloudflare.restore import SECTIONS, SnapshotError
from chutes.sandbox.hosts_rehearsal import HostsRehearsal
from chutes.sandbox.kubernetes import KubeSandbox
from chutes.sandbox.outcomes import Source
from chutes.sandbox.prerequisites import seed
from chutes.sandbox.routerhosts import RouterHostsSandbox
from chutes.sandbox.runner import OperatorThread
from chutes.sandbox.sessions_rehearsal import SessionsEnvError, SessionsRehearsal
from chutes.sandbox.snapshot_diff import (
    ROUTER_HOSTS_SCOPE,
    Change,
    diff,
    diff_entries,
    render_text,
    summary,
    summary_line,
)
from chutes.settings import Settings

REPO = Path(__file__).resolve().parents[3]
STATE_FORMAT = "chutes-plan-state/v1"
CHUTES, CFZT, ROUTES = "chutes.troubleshat.com/v1alpha1", "cfzt.cloudflare.com/v1alpha1", "gateway.networking.k8s.io/v1"
TUNNELS, BINDINGS = "networking.cfargotunnel.com/v1alpha2", "networking.cfargotunnel.com/v1alpha1"
SOURCES: tuple[manifests.Kind, ...] = (
    (CHUTES, "ChuteConfig"), (CFZT, "CloudflareZeroTrustTenant"), (CFZT, "CloudflareZeroTrustTemplate"),
    (CHUTES, "ChuteGateway"), (ROUTES, "HTTPRoute"), (TUNNELS, "Tunnel"), (TUNNELS, "ClusterTunnel"),
    (BINDINGS, "TunnelBinding"),
)
NEEDS_READY = frozenset({"ChuteConfig", "ChuteGateway", "CloudflareZeroTrustTenant", "HostMapping"})
TRANSIENT = frozenset({"Progressing", "Pending", "RateLimited", "CloudflareUnavailable", "Deleting",
                       "ConnectorsUnavailable", "TunnelNotReady"})
ROUTE_CONDITIONS = "cfzt.cloudflare.com/conditions"
ROUTE_ENABLED = "cfzt.cloudflare.com/enabled"
STATE_LABEL = "app.kubernetes.io/managed-by=cfzt-operator"
ROUTE_NAME_LABEL = "cfzt.cloudflare.com/httproute-name"
ROUTE_NAMESPACE_LABEL = "cfzt.cloudflare.com/httproute-namespace"
KEPT_METADATA = ("name", "namespace", "labels", "annotations", "finalizers")
QUIET = 1.0  # seconds without any Cloudflare write or source-object change: settled
logger = logging.getLogger(__name__)


class PlanError(Exception):
    """The plan could not be made (unreadable manifests or state, a timeout); the message says why."""


@dataclass
class PlanOptions:
    paths: Sequence[str]
    cloudflare_state: str | None = None
    save_state: str | None = None
    timeout: float = 60.0
    settings: Mapping[str, Any] = field(default_factory=dict)  # extra Settings fields (owner_id, policy...)
    operator_namespace: str | None = None
    crds: Path = REPO / "crds"
    router_hosts: bool | None = None  # plan the router-hosts door; None: when the manifests or the state involve it
    ingress_ip: str = hosts_rehearsal.DEFAULT_INGRESS_IP
    sessions_env: str | None = None  # the session door's KEY=VALUE file: planned (with Pods of its) when given
    sessions_env_vars: Sequence[str] = field(default=(), repr=False)  # KEY=VALUE, over the file's


@dataclass
class Plan:
    changes: list[Change]
    sources: list[Source]
    assumed: list[str]
    host_changes: list[Change] | None = None  # None: the router-hosts door was not planned

    @property
    def has_changes(self) -> bool:
        return bool(self.changes or self.host_changes)

    def as_dict(self) -> dict[str, Any]:
        out = {"changes": [c.as_dict() for c in self.changes], "summary": summary(self.changes),
               "sources": [asdict(s) for s in self.sources], "assumed": self.assumed}
        if self.host_changes is not None:
            out["router_hosts"] = {"changes": [c.as_dict() for c in self.host_changes],
                                   "summary": summary(self.host_changes)}
        return out

    def text(self) -> list[str]:
        lines = render_text(self.changes) or ["No changes: Cloudflare already matches these manifests."]
        lines += ["", summary_line(self.changes)]
        if self.host_changes is not None:
            lines += [""] + (render_text(self.host_changes)
                             or [f"{ROUTER_HOSTS_SCOPE}: no changes: its entries already match these manifests."])
            lines += ["", summary_line(self.host_changes, "Router-hosts plan")]
        if self.sources:
            lines += ["", "Source objects:"]
            for s in self.sources:
                outcome = "Ready" if s.ready else ("no Ready condition" if s.ready is None else "not Ready")
                if s.ready is None and s.detail:
                    outcome = s.detail
                why = f" ({s.reason}: {s.message})" if s.reason and not s.ready else ""
                detail = f" ({s.detail})" if s.ready and s.detail else ""
                lines.append(f"  {s.ref}: {outcome}{why}{detail}")
        if self.assumed:
            lines += ["", "Assumed to exist already (not in the starting state, not planned):"]
            lines += [f"  {note}" for note in self.assumed]
        return lines


# --- manifests and state files ---------------------------------------------------------------------------

def load_manifests(paths: Sequence[str], stdin: TextIO | None = None) -> list[dict[str, Any]]:
    """Every document of the files, of the directories' *.yaml/*.yml (recursively) and of stdin for ``-``."""
    sources: list[tuple[str, str]] = []
    for raw in paths:
        if raw == "-":
            sources.append(("<stdin>", (stdin or sys.stdin).read()))
            continue
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
        elif path.is_file():
            files = [path]
        else:
            raise PlanError(f"{raw}: no such file or directory")
        sources += [(str(f), f.read_text()) for f in files]
    docs: list[dict[str, Any]] = []
    for name, text in sources:
        try:
            found = [doc for doc in yaml.load_all(text, Loader=manifests.SAFE_LOADER) if doc is not None]
        except yaml.YAMLError as exc:
            raise PlanError(f"{name}: not valid YAML: {exc}") from None
        for index, doc in enumerate(found, 1):
            meta = doc.get("metadata") if isinstance(doc, dict) else None
            if not isinstance(doc, dict) or not doc.get("apiVersion") or not doc.get("kind") \
                    or not isinstance(meta, dict) or not meta.get("name"):
                raise PlanError(f"{name}: document {index} is not a Kubernetes object "
                                "(apiVersion, kind and metadata.name are required)")
            docs.append(doc)
    if not docs:
        raise PlanError(f"no manifests found in {', '.join(paths)}")
    return docs


def read_state(path: str) -> tuple[dict[str, Any], dict[str, Any] | None, list[dict[str, Any]]]:
    """(Cloudflare snapshot, Kubernetes part or None, router-hosts entries) of a ``--save-state`` file or of a bare
    Cloudflare snapshot."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise PlanError(f"{path}: cannot read the state: {exc}") from None
    if isinstance(data, dict) and data.get("format") == STATE_FORMAT:
        entries = data.get("router_hosts") or []
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise PlanError(f"{path}: router_hosts must be a list of entries")
        return dict(data.get("cloudflare") or {}), dict(data.get("kubernetes") or {}), entries
    if isinstance(data, dict) and any(key in data for key in SECTIONS):
        return data, None, []
    raise PlanError(f"{path}: neither a `chutes plan --save-state` file nor a Cloudflare sandbox snapshot")


# --- the Kubernetes side ---------------------------------------------------------------------------------

def _key(doc: Mapping[str, Any]) -> tuple[str, str, str, str]:
    meta = doc["metadata"]
    return doc["apiVersion"], doc["kind"], meta.get("namespace") or "", meta["name"]


def _trimmed(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in obj["metadata"].items() if k in KEPT_METADATA and v}
    return {k: v for k, v in obj.items() if k not in ("metadata",)} | {"metadata": meta}


async def save_cluster(api: Any, table: Mapping[manifests.Kind, manifests.Resource],
                       docs: Sequence[Mapping[str, Any]], kinds: Sequence[manifests.Kind] = SOURCES) -> dict[str, Any]:
    objects: list[dict[str, Any]] = []
    for api_version, kind in kinds:
        objects += [_trimmed(o) for o in await manifests.list_all(api, api_version, kind, table)]
    objects += [_trimmed(o) for o in await manifests.list_all(api, "v1", "ConfigMap", table, STATE_LABEL)]
    applied = [{"apiVersion": d["apiVersion"], "kind": d["kind"], "namespace": d["metadata"].get("namespace"),
                "name": d["metadata"]["name"], "annotations": sorted(d["metadata"].get("annotations") or {}),
                "labels": sorted(d["metadata"].get("labels") or {})}
               for d in docs if (d["apiVersion"], d["kind"]) in kinds]
    return {"objects": objects, "applied": applied}


async def _ensure_namespace(api: Any, table: Mapping[manifests.Kind, manifests.Resource], name: str) -> None:
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    if await manifests.get(api, namespace, table) is None:
        await manifests.create(api, namespace, table)


async def restore_cluster(api: Any, table: Mapping[manifests.Kind, manifests.Resource],
                          saved: Mapping[str, Any]) -> None:
    """The saved objects, with their finalizers, annotations and status (observedGeneration as created)."""
    for obj in saved.get("objects") or ():
        if obj["kind"] == "HTTPRoute":  # stale conditions would look settled before the operator saw the route
            obj = copy.deepcopy(obj)
            obj["metadata"].get("annotations", {}).pop(ROUTE_CONDITIONS, None)
        if obj["metadata"].get("namespace"):
            await _ensure_namespace(api, table, obj["metadata"]["namespace"])
        created = await manifests.create(api, {k: v for k, v in obj.items() if k != "status"}, table)
        status = obj.get("status")
        if status:
            generation = created["metadata"].get("generation")
            status = copy.deepcopy(status)
            if "observedGeneration" in status:
                status["observedGeneration"] = generation
            for condition in status.get("conditions") or ():
                if "observedGeneration" in condition:
                    condition["observedGeneration"] = generation
            await manifests.patch_status(api, obj, table, status)


async def apply(api: Any, table: Mapping[manifests.Kind, manifests.Resource], docs: Sequence[Mapping[str, Any]],
                saved: Mapping[str, Any] | None, keep: Sequence[Mapping[str, Any]] = (),
                kinds: Sequence[manifests.Kind] = SOURCES) -> None:
    """Create or update every manifest (annotations and labels the operator added are kept, as ``kubectl
    apply`` keeps them); delete the saved source objects neither ``docs`` nor ``keep`` have."""
    applied = {(a["apiVersion"], a["kind"], a.get("namespace") or "", a["name"]): a
               for a in (saved or {}).get("applied") or ()}
    wanted = {_key(doc) for doc in [*docs, *keep]}
    for doc in docs:
        namespace = doc["metadata"].get("namespace")
        if namespace and doc["kind"] != "Namespace":
            await _ensure_namespace(api, table, namespace)
        live = await manifests.get(api, doc, table)
        if live is None:
            await manifests.create(api, doc, table)
            continue
        if doc["kind"] == "Namespace":
            continue
        before = applied.get(_key(doc)) or {}
        merged = dict(doc) | {"metadata": dict(live["metadata"])}
        for part in ("annotations", "labels"):
            kept = {k: v for k, v in (live["metadata"].get(part) or {}).items()
                    if k not in before.get(part, ()) and k != ROUTE_CONDITIONS}
            merged["metadata"][part] = kept | dict(doc["metadata"].get(part) or {})
        if "status" in live:
            merged["status"] = live["status"]
        await manifests.replace(api, merged, table)
    for obj in (saved or {}).get("objects") or ():
        if (obj["apiVersion"], obj["kind"]) in kinds and _key(obj) not in wanted:
            await manifests.delete(api, obj, table)


def outcome(obj: Mapping[str, Any]) -> Source:
    meta = obj["metadata"]
    kind = obj["kind"]
    base = {"kind": kind, "namespace": meta.get("namespace"), "name": meta["name"]}
    if kind == "HTTPRoute":
        annotations = meta.get("annotations") or {}
        try:
            conditions = json.loads(annotations.get(ROUTE_CONDITIONS) or "[]")
        except ValueError:
            conditions = []
        enabled = str(annotations.get(ROUTE_ENABLED, "")).lower() == "true"
        ready = next((c for c in conditions if c.get("type") == "Ready"), None)
        if ready is None:
            return Source(**base, ready=None, settled=not enabled)
        generation = None
    else:
        ready = next((c for c in (obj.get("status") or {}).get("conditions") or () if c.get("type") == "Ready"), None)
        if ready is None:
            return Source(**base, ready=None, settled=kind not in NEEDS_READY)
        generation = meta.get("generation")
    current = generation is None or ready.get("observedGeneration") in (None, generation)
    settled = current and ready.get("reason") not in TRANSIENT and not meta.get("deletionTimestamp")
    return Source(**base, ready=ready.get("status") == "True", reason=str(ready.get("reason") or ""),
                  message=str(ready.get("message") or ""), settled=settled)


async def sources(api: Any, table: Mapping[manifests.Kind, manifests.Resource],
                  hosts: HostsRehearsal | None = None, sessions: SessionsRehearsal | None = None
                  ) -> tuple[list[Source], str]:
    """The outcome of every source object, and a fingerprint of their versions."""
    found: list[Source] = []
    versions: list[str] = []
    ready_configs: set[str] = set()
    for api_version, kind in (*SOURCES, *(hosts_rehearsal.KINDS if hosts else ())):
        for obj in await manifests.list_all(api, api_version, kind, table):
            versions.append(str(obj["metadata"].get("resourceVersion")))
            if kind in hosts_rehearsal.ROUTE_KINDS:
                continue  # below: routes are judged together with the server
            result = outcome(obj)
            if kind == "ChuteConfig" and result.ready:
                ready_configs.add(result.name)
            if result.reason == "ConfigNotReady" and (obj.get("spec") or {}).get("configRef") in ready_configs:
                result = replace(result, settled=False)  # retried shortly: its ChuteConfig is Ready now
            found.append(result)
    routes = {(s.namespace, s.name) for s in found if s.kind == "HTTPRoute"}
    for state in await manifests.list_all(api, "v1", "ConfigMap", table, STATE_LABEL):
        labels = state["metadata"].get("labels") or {}
        route = (labels.get(ROUTE_NAMESPACE_LABEL), labels.get(ROUTE_NAME_LABEL))
        if route[1] and route not in routes:  # the route is gone: its cleanup has not finished
            found.append(Source("HTTPRoute", route[0], str(route[1]), None, "Deleting", "cleaning up", False))
        versions.append(str(state["metadata"].get("resourceVersion")))
    if hosts is not None:
        found += await hosts.outcomes(api, table)
    if sessions is not None:
        pods, pod_versions = await sessions.outcomes(api, table)
        found += pods
        versions += pod_versions
    return found, ",".join(versions)


async def play_deployment_controller(api: Any, table: Mapping[manifests.Kind, manifests.Resource]) -> None:
    """Report every Deployment's replicas available (the emulator runs no controllers; cloudflared would)."""
    while True:
        for deployment in await manifests.list_all(api, "apps/v1", "Deployment", table):
            replicas = int((deployment.get("spec") or {}).get("replicas", 1))
            if (deployment.get("status") or {}).get("availableReplicas") != replicas:
                await manifests.patch_status(api, deployment, table, {
                    "replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas,
                    "updatedReplicas": replicas})
        await asyncio.sleep(0.1)


async def settle(cf: Any, api: Any, table: Mapping[manifests.Kind, manifests.Resource], deadline: float,
                 what: str, kinds: set[str] | None = None, hosts: HostsRehearsal | None = None,
                 sessions: SessionsRehearsal | None = None) -> list[Source]:
    """Wait until the source objects (of ``kinds``: only until those have settled) have settled and neither
    they nor Cloudflare (nor the router-hosts server) changed for QUIET seconds."""
    last: tuple[int, str] | None = None
    since = time.monotonic()
    while True:
        found, versions = await sources(api, table, hosts, sessions if kinds is None else None)
        if kinds is not None:
            if all(s.settled for s in found if s.kind in kinds):
                return found
            found = [s for s in found if s.kind in kinds]
        writes = sum(1 for r in cf.requests if r.method != "GET") + (hosts.writes() if hosts else 0)
        now = time.monotonic()
        if (writes, versions) != last:
            last, since = (writes, versions), now
        elif all(s.settled for s in found) and now - since >= QUIET:
            return found
        if now > deadline:
            waiting = [f"{s.ref} ({s.reason or 'not reconciled yet'})" for s in found if not s.settled]
            detail = f"; still waiting for: {', '.join(waiting)}" if waiting else "; the emulators kept changing"
            raise PlanError(f"timed out {what}{detail}")
        await asyncio.sleep(0.1)


# --- the run ---------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    previous = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in previous.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def make_plan(options: PlanOptions, stdin: TextIO | None = None) -> Plan:
    docs = load_manifests(options.paths, stdin)
    start, saved_cluster, saved_entries = (read_state(options.cloudflare_state) if options.cloudflare_state
                                           else ({}, None, []))
    crd_paths = sorted(options.crds.glob("*.yaml"))
    crds = manifests.load(crd_paths)
    table = manifests.resource_table(crds)
    for doc in docs:
        try:
            manifests.paths(doc, table)
        except ValueError as exc:
            raise PlanError(f"{doc['kind']} {doc['metadata']['name']}: {exc}") from None
    sessions = _sessions(options, docs, saved_cluster, start)
    try:
        needed = seed(docs, start, sessions.config if sessions else None)
    except (ValueError, KeyError, TypeError) as exc:
        raise PlanError(f"cannot prepare the Cloudflare sandbox: {exc}") from None
    tenants = [d for d in docs if d["kind"] == "CloudflareZeroTrustTenant"]
    operator_namespace = (options.operator_namespace or os.environ.get("OPERATOR_NAMESPACE")
                          or (tenants[0]["metadata"].get("namespace") if tenants else None) or "default")
    with_hosts = (options.router_hosts if options.router_hosts is not None
                  else hosts_rehearsal.planned(docs, saved_entries, saved_cluster))
    deadline = time.monotonic() + options.timeout
    with contextlib.ExitStack() as stack:
        cf = stack.enter_context(SandboxThread(needed.config))
        cluster = stack.enter_context(KubeSandbox(crd_paths=crd_paths, namespaces=["default"]))
        hosts = HostsRehearsal(stack.enter_context(RouterHostsSandbox()), options.ingress_ip) if with_hosts else None
        try:
            for snapshot in (start, needed.assumed):
                if snapshot:
                    cf.restore(snapshot)
            if hosts is not None:
                hosts.server.restore(saved_entries)
        except SnapshotError as exc:
            raise PlanError(f"{options.cloudflare_state}: {exc}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise PlanError(f"{options.cloudflare_state}: a router-hosts entry is malformed: {exc!r}") from None
        baseline = cf.snapshot()
        entries_before = hosts.server.snapshot() if hosts is not None else []
        settings = Settings(**({"standalone": True, "sessions": False, "resync_interval": 3600.0,
                                "sweep_interval": 3600.0} | dict(options.settings)
                               | {"cloudflare_base_url": cf.base_url} | (hosts.settings() if hosts else {})
                               | ({"sessions": True} if sessions else {})))
        environ = {"OPERATOR_NAMESPACE": operator_namespace} | (sessions.operator_environ() if sessions else {})
        with _environ(KUBECONFIG=cluster.kubeconfig):
            final, entries_after, found, cluster_state = asyncio.run(_drive(
                cf, hosts, table, docs, saved_cluster, settings, environ, deadline, sessions))
    if options.save_state:
        state = {"format": STATE_FORMAT, "cloudflare": final, "kubernetes": cluster_state,
                 "router_hosts": entries_after if hosts is not None else saved_entries}
        Path(options.save_state).write_text(json.dumps(state, indent=1, sort_keys=True) + "\n")
    host_changes = diff_entries(entries_before, entries_after) if hosts is not None else None
    return Plan(diff(baseline, final), found, needed.notes, host_changes)


def _sessions(options: PlanOptions, docs: Sequence[Mapping[str, Any]], saved: Mapping[str, Any] | None,
              start: Mapping[str, Any]) -> SessionsRehearsal | None:
    """The session door's side of the plan, when its environment is given and the manifests or the state involve
    it."""
    if options.sessions_env is None and not options.sessions_env_vars:
        return None
    owner_id = str(options.settings.get("owner_id") or "default")
    try:
        environ = sessions_rehearsal.read_env(options.sessions_env, options.sessions_env_vars)
        config = sessions_rehearsal.configure(environ, owner_id)
    except SessionsEnvError as exc:
        raise PlanError(str(exc)) from None
    if not sessions_rehearsal.planned(config, docs, saved, start, owner_id):
        logger.warning("The session door is not planned: no Pod of the manifests (nor of the state) carries the "
                       "label %s, and the state holds no DNS record of the door", config.session_hash_label)
        return None
    return SessionsRehearsal(config, environ)


async def _drive(cf: Any, hosts: HostsRehearsal | None, table: Mapping[manifests.Kind, manifests.Resource],
                 docs: Sequence[Mapping[str, Any]], saved: dict[str, Any] | None, settings: Settings,
                 environ: Mapping[str, str], deadline: float, sessions: SessionsRehearsal | None = None
                 ) -> tuple[dict[str, Any], list[dict[str, Any]], list[Source], dict[str, Any]]:
    kinds = (*SOURCES, *(hosts_rehearsal.KINDS if hosts else ()), *((sessions_rehearsal.POD,) if sessions else ()))
    api = await kube.connect()
    try:
        # Namespaces, Secrets, Services... first: the restored source objects find them as before.
        others = [d for d in docs if (d["apiVersion"], d["kind"]) not in kinds]
        await apply(api, table, others, None)
        for namespace in sessions.namespaces() if sessions else ():
            await _ensure_namespace(api, table, namespace)
        if saved:
            await restore_cluster(api, table, {"objects": [*(saved.get("objects") or ()),
                                                           *((saved.get("session_routes") or ()) if sessions else ())]})
        with OperatorThread(settings, environ, name="chutes-plan-operator") as running:
            if sessions:
                sessions.operator = running
            controller = asyncio.create_task(play_deployment_controller(api, table))
            try:
                if saved:
                    await settle(cf, api, table, deadline, "restoring the saved state", hosts=hosts,
                                 sessions=sessions)
                # ChuteConfigs first: a gateway applied with them waits CONFIG_RETRY for its config to be Ready.
                gateways = [d for d in docs if d["kind"] == "ChuteGateway"]
                rest = [d for d in docs if d["kind"] != "ChuteGateway" and (d["apiVersion"], d["kind"]) in kinds]
                await apply(api, table, rest, saved, keep=gateways, kinds=kinds)
                if gateways:
                    await settle(cf, api, table, deadline, "waiting for the ChuteConfigs", kinds={"ChuteConfig"},
                                 hosts=hosts)
                    await apply(api, table, gateways, saved, keep=docs, kinds=kinds)
                found = await settle(cf, api, table, deadline, "waiting for the operator to settle", hosts=hosts,
                                     sessions=sessions)
                final = cf.snapshot()
                entries = hosts.server.snapshot() if hosts is not None else []
                cluster_state = await save_cluster(api, table, docs, kinds)
                if sessions:  # the door's IngressRoutes apart: made by it, never pruned as a missing manifest would be
                    made = [_trimmed(route) for route in await sessions.routes(api, table)]
                    cluster_state["objects"] = [o for o in cluster_state["objects"] if o not in made]
                    cluster_state["session_routes"] = made
            finally:
                controller.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await controller
        return final, entries, found, cluster_state
    finally:
        await api.close()


def command(args: Any) -> int:
    """``chutes plan``: 0, or 2 with ``--detailed-exitcode`` when there are changes; 1 on an error."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("kopf._core.reactor.running").setLevel(logging.ERROR)  # "OS signals are ignored" (a thread)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings = {name: getattr(args, name) for name in ("owner_id", "policy", "hostname_rules", "allow_adoption",
                                                       "chutes", "httproutes", "tunnels")
                if getattr(args, name, None) is not None}
    options = PlanOptions(paths=args.filenames, cloudflare_state=args.cloudflare_state, save_state=args.save_state,
                          timeout=args.timeout, settings=settings, operator_namespace=args.operator_namespace,
                          router_hosts=args.router_hosts, ingress_ip=args.ingress_ip,
                          sessions_env=args.sessions_env, sessions_env_vars=args.sessions_env_vars or ())
    try:
        plan = make_plan(options)
    except (PlanError, ValidationError) as exc:
        print(f"chutes plan: {exc}", file=sys.stderr)
        return 1
    if args.output == "json":
        print(json.dumps(plan.as_dict(), indent=2, sort_keys=True))
    else:
        print("\n".join(plan.text()))
    return 2 if args.detailed_exitcode and plan.has_changes else 0
