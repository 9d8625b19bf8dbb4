"""``chutes plan -f <manifests>``: what the operator would change in Cloudflare for these manifests.

Runs the real operator offline, on both emulators (as ``make demo``): the Cloudflare sandbox is seeded
with what the manifests need (:mod:`.prerequisites`) on top of an optional saved state, the manifests are
applied to the Kubernetes emulator, and once every source object has settled and Cloudflare has stopped
changing, the difference between the starting and the final Cloudflare state is the plan
(:mod:`.snapshot_diff`).

A state saved with ``--save-state`` holds the Cloudflare snapshot (no secret: the sandbox never keeps
them) and the source objects as the operator left them (status, the HTTPRoute door's state ConfigMaps;
no Secret). Planning against it first restores both and lets the operator settle, then applies the
manifests as updates: the given manifests are the whole desired state, so a saved source object that
is not among them is deleted (as a GitOps sync with pruning does).
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
from chutes.sandbox import manifests
from chutes.sandbox.cloudflare import SandboxThread
from chutes.sandbox.cloudflare.restore import SECTIONS, SnapshotError
from chutes.sandbox.kubernetes import KubeSandbox
from chutes.sandbox.prerequisites import seed
from chutes.sandbox.runner import OperatorThread
from chutes.sandbox.snapshot_diff import Change, diff, render_text, summary, summary_line
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
NEEDS_READY = frozenset({"ChuteConfig", "ChuteGateway", "CloudflareZeroTrustTenant"})
TRANSIENT = frozenset({"Progressing", "Pending", "RateLimited", "CloudflareUnavailable", "Deleting",
                       "ConnectorsUnavailable", "TunnelNotReady"})
ROUTE_CONDITIONS = "cfzt.cloudflare.com/conditions"
ROUTE_ENABLED = "cfzt.cloudflare.com/enabled"
STATE_LABEL = "app.kubernetes.io/managed-by=cfzt-operator"
ROUTE_NAME_LABEL = "cfzt.cloudflare.com/httproute-name"
ROUTE_NAMESPACE_LABEL = "cfzt.cloudflare.com/httproute-namespace"
KEPT_METADATA = ("name", "namespace", "labels", "annotations", "finalizers")
QUIET = 1.0  # seconds without any Cloudflare write or source-object change: settled


class PlanError(Exception):
    """The plan could not be made (unreadable manifests or state, a timeout); the message says why."""


@dataclass(frozen=True)
class Source:
    """A source object's outcome (a ChuteGateway, an HTTPRoute...)."""

    kind: str
    namespace: str | None
    name: str
    ready: bool | None  # None: no Ready condition (e.g. an HTTPRoute that is not enabled)
    reason: str = ""
    message: str = ""
    settled: bool = True

    @property
    def ref(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"


@dataclass
class PlanOptions:
    paths: Sequence[str]
    cloudflare_state: str | None = None
    save_state: str | None = None
    timeout: float = 60.0
    settings: Mapping[str, Any] = field(default_factory=dict)  # extra Settings fields (owner_id, policy...)
    operator_namespace: str | None = None
    crds: Path = REPO / "crds"


@dataclass
class Plan:
    changes: list[Change]
    sources: list[Source]
    assumed: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"changes": [c.as_dict() for c in self.changes], "summary": summary(self.changes),
                "sources": [asdict(s) for s in self.sources], "assumed": self.assumed}

    def text(self) -> list[str]:
        lines = render_text(self.changes) or ["No changes: Cloudflare already matches these manifests."]
        lines += ["", summary_line(self.changes)]
        if self.sources:
            lines += ["", "Source objects:"]
            for s in self.sources:
                outcome = "Ready" if s.ready else ("no Ready condition" if s.ready is None else "not Ready")
                why = f" ({s.reason}: {s.message})" if s.reason and not s.ready else ""
                lines.append(f"  {s.ref}: {outcome}{why}")
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
            found = [doc for doc in yaml.safe_load_all(text) if doc is not None]
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


def read_state(path: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(Cloudflare snapshot, Kubernetes part or None) of a ``--save-state`` file or of a bare snapshot."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise PlanError(f"{path}: cannot read the state: {exc}") from None
    if isinstance(data, dict) and data.get("format") == STATE_FORMAT:
        return dict(data.get("cloudflare") or {}), dict(data.get("kubernetes") or {})
    if isinstance(data, dict) and any(key in data for key in SECTIONS):
        return data, None
    raise PlanError(f"{path}: neither a `chutes plan --save-state` file nor a Cloudflare sandbox snapshot")


# --- the Kubernetes side ---------------------------------------------------------------------------------

def _key(doc: Mapping[str, Any]) -> tuple[str, str, str, str]:
    meta = doc["metadata"]
    return doc["apiVersion"], doc["kind"], meta.get("namespace") or "", meta["name"]


def _trimmed(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in obj["metadata"].items() if k in KEPT_METADATA and v}
    return {k: v for k, v in obj.items() if k not in ("metadata",)} | {"metadata": meta}


async def save_cluster(api: Any, table: Mapping[manifests.Kind, manifests.Resource],
                       docs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    objects: list[dict[str, Any]] = []
    for api_version, kind in SOURCES:
        objects += [_trimmed(o) for o in await manifests.list_all(api, api_version, kind, table)]
    objects += [_trimmed(o) for o in await manifests.list_all(api, "v1", "ConfigMap", table, STATE_LABEL)]
    applied = [{"apiVersion": d["apiVersion"], "kind": d["kind"], "namespace": d["metadata"].get("namespace"),
                "name": d["metadata"]["name"], "annotations": sorted(d["metadata"].get("annotations") or {}),
                "labels": sorted(d["metadata"].get("labels") or {})}
               for d in docs if (d["apiVersion"], d["kind"]) in SOURCES]
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
                saved: Mapping[str, Any] | None, keep: Sequence[Mapping[str, Any]] = ()) -> None:
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
        if (obj["apiVersion"], obj["kind"]) in SOURCES and _key(obj) not in wanted:
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


async def sources(api: Any, table: Mapping[manifests.Kind, manifests.Resource]) -> tuple[list[Source], str]:
    """The outcome of every source object, and a fingerprint of their versions."""
    found: list[Source] = []
    versions: list[str] = []
    ready_configs: set[str] = set()
    for api_version, kind in SOURCES:
        for obj in await manifests.list_all(api, api_version, kind, table):
            result = outcome(obj)
            if kind == "ChuteConfig" and result.ready:
                ready_configs.add(result.name)
            if result.reason == "ConfigNotReady" and (obj.get("spec") or {}).get("configRef") in ready_configs:
                result = replace(result, settled=False)  # retried shortly: its ChuteConfig is Ready now
            found.append(result)
            versions.append(str(obj["metadata"].get("resourceVersion")))
    routes = {(s.namespace, s.name) for s in found if s.kind == "HTTPRoute"}
    for state in await manifests.list_all(api, "v1", "ConfigMap", table, STATE_LABEL):
        labels = state["metadata"].get("labels") or {}
        route = (labels.get(ROUTE_NAMESPACE_LABEL), labels.get(ROUTE_NAME_LABEL))
        if route[1] and route not in routes:  # the route is gone: its cleanup has not finished
            found.append(Source("HTTPRoute", route[0], str(route[1]), None, "Deleting", "cleaning up", False))
        versions.append(str(state["metadata"].get("resourceVersion")))
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
                 what: str, kinds: set[str] | None = None) -> list[Source]:
    """Wait until the source objects (of ``kinds``: only until those have settled) have settled and neither
    they nor Cloudflare changed for QUIET seconds."""
    last: tuple[int, str] | None = None
    since = time.monotonic()
    while True:
        found, versions = await sources(api, table)
        if kinds is not None:
            if all(s.settled for s in found if s.kind in kinds):
                return found
            found = [s for s in found if s.kind in kinds]
        writes = sum(1 for r in cf.requests if r.method != "GET")
        now = time.monotonic()
        if (writes, versions) != last:
            last, since = (writes, versions), now
        elif all(s.settled for s in found) and now - since >= QUIET:
            return found
        if now > deadline:
            waiting = [f"{s.ref} ({s.reason or 'not reconciled yet'})" for s in found if not s.settled]
            detail = f"; still waiting for: {', '.join(waiting)}" if waiting else "; Cloudflare kept changing"
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
    start, saved_cluster = read_state(options.cloudflare_state) if options.cloudflare_state else ({}, None)
    crd_paths = sorted(options.crds.glob("*.yaml"))
    crds = manifests.load(crd_paths)
    table = manifests.resource_table(crds)
    for doc in docs:
        try:
            manifests.paths(doc, table)
        except ValueError as exc:
            raise PlanError(f"{doc['kind']} {doc['metadata']['name']}: {exc}") from None
    try:
        needed = seed(docs, start)
    except (ValueError, KeyError, TypeError) as exc:
        raise PlanError(f"cannot prepare the Cloudflare sandbox: {exc}") from None
    tenants = [d for d in docs if d["kind"] == "CloudflareZeroTrustTenant"]
    operator_namespace = (options.operator_namespace or os.environ.get("OPERATOR_NAMESPACE")
                          or (tenants[0]["metadata"].get("namespace") if tenants else None) or "default")
    deadline = time.monotonic() + options.timeout
    with SandboxThread(needed.config) as cf, KubeSandbox(crd_paths=crd_paths, namespaces=["default"]) as cluster:
        try:
            for snapshot in (start, needed.assumed):
                if snapshot:
                    cf.restore(snapshot)
        except SnapshotError as exc:
            raise PlanError(f"{options.cloudflare_state}: {exc}") from None
        baseline = cf.snapshot()
        settings = Settings(**({"standalone": True, "sessions": False, "resync_interval": 3600.0,
                                "sweep_interval": 3600.0} | dict(options.settings)
                               | {"cloudflare_base_url": cf.base_url}))
        with _environ(KUBECONFIG=cluster.kubeconfig):
            final, found, cluster_state = asyncio.run(_drive(
                cf, table, docs, saved_cluster, settings, {"OPERATOR_NAMESPACE": operator_namespace}, deadline))
    if options.save_state:
        state = {"format": STATE_FORMAT, "cloudflare": final, "kubernetes": cluster_state}
        Path(options.save_state).write_text(json.dumps(state, indent=1, sort_keys=True) + "\n")
    return Plan(diff(baseline, final), found, needed.notes)


async def _drive(cf: Any, table: Mapping[manifests.Kind, manifests.Resource], docs: Sequence[Mapping[str, Any]],
                 saved: dict[str, Any] | None, settings: Settings, environ: Mapping[str, str],
                 deadline: float) -> tuple[dict[str, Any], list[Source], dict[str, Any]]:
    api = await kube.connect()
    try:
        # Namespaces, Secrets, Services... first: the restored source objects find them as before.
        others = [d for d in docs if (d["apiVersion"], d["kind"]) not in SOURCES]
        await apply(api, table, others, None)
        if saved:
            await restore_cluster(api, table, saved)
        with OperatorThread(settings, environ, name="chutes-plan-operator"):
            controller = asyncio.create_task(play_deployment_controller(api, table))
            try:
                if saved:
                    await settle(cf, api, table, deadline, "restoring the saved state")
                # ChuteConfigs first: a gateway applied with them waits CONFIG_RETRY for its config to be Ready.
                gateways = [d for d in docs if d["kind"] == "ChuteGateway"]
                rest = [d for d in docs if d["kind"] != "ChuteGateway" and (d["apiVersion"], d["kind"]) in SOURCES]
                await apply(api, table, rest, saved, keep=gateways)
                if gateways:
                    await settle(cf, api, table, deadline, "waiting for the ChuteConfigs", kinds={"ChuteConfig"})
                    await apply(api, table, gateways, saved, keep=docs)
                found = await settle(cf, api, table, deadline, "waiting for the operator to settle")
                final = cf.snapshot()
                cluster_state = await save_cluster(api, table, docs)
            finally:
                controller.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await controller
        return final, found, cluster_state
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
                          timeout=args.timeout, settings=settings, operator_namespace=args.operator_namespace)
    try:
        plan = make_plan(options)
    except (PlanError, ValidationError) as exc:
        print(f"chutes plan: {exc}", file=sys.stderr)
        return 1
    if args.output == "json":
        print(json.dumps(plan.as_dict(), indent=2, sort_keys=True))
    else:
        print("\n".join(plan.text()))
    return 2 if args.detailed_exitcode and plan.changes else 0
