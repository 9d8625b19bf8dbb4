"""The bad-input corpus's files (tests/data/bad-inputs/README.md): what the user must see, and the objects."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from chutes.sandbox.kubernetes.kubeconfig import OPERATOR_TOKEN
from harness.manifests import SAFE_LOADER

CORPUS = Path(__file__).resolve().parents[1] / "data" / "bad-inputs"
MAX_WARNINGS_PER_OBJECT = 3  # one per distinct problem: a bad object has one


@dataclass
class Entry:
    """One corpus file: what the user must see, and the objects (the first one is the subject)."""

    path: Path
    expect: dict[str, Any]
    objects: list[dict[str, Any]]
    before: list[dict[str, Any]] = field(default_factory=list)
    cloudflare: dict[str, Any] = field(default_factory=dict)
    bypass: dict[str, Any] = field(default_factory=dict)
    note: str = ""  # said after the file's name in failures
    raw: dict[str, Any] = field(default_factory=dict)  # the whole file (keys of one door's own, e.g. `entries`)

    @property
    def name(self) -> str:
        return str(self.path.relative_to(CORPUS)) + self.note

    @property
    def subject(self) -> dict[str, Any]:
        return self.objects[0]

    @property
    def via(self) -> str:
        return str(self.expect["via"])

    def bypassed(self) -> Entry:
        """What the operator must say when admission is bypassed (a CRD installed without its schema)."""
        return Entry(self.path, {"via": "condition", **self.bypass}, self.objects[:1], note=" (admission bypassed)")


def load(path: Path, values: dict[str, str]) -> Entry:
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"\$\{REPEAT:(.):(\d+)\}", lambda m: m.group(1) * int(m.group(2)), text)
    text = re.sub(r"\$\{([A-Z_]+)\}", lambda m: values.get(m.group(1), m.group(0)), text)
    doc = yaml.load(text, Loader=SAFE_LOADER)
    return Entry(path, doc["expect"], doc["objects"], doc.get("before") or [], doc.get("cloudflare") or {},
                 doc.get("bypass") or {}, raw=doc)


def play_deployment_controller(apps: Any) -> None:
    """cloudflared Deployments of the operator become available (no controller runs in the emulator)."""
    for deployment in apps.list_deployment_for_all_namespaces(
            label_selector="app.kubernetes.io/managed-by=chutes-operator").items:
        replicas = deployment.spec.replicas or 0
        if deployment.status is None or (deployment.status.available_replicas or 0) != replicas:
            apps.patch_namespaced_deployment_status(
                deployment.metadata.name, deployment.metadata.namespace,
                {"status": {"replicas": replicas, "availableReplicas": replicas, "readyReplicas": replicas}})


def operator_writes(kube: Any) -> Counter[str]:
    """The operator's Kubernetes writes so far, by verb and resource (the emulator's record of its token's calls)."""
    calls = kube.api_calls(OPERATOR_TOKEN)
    return Counter({f"{c.verb} {c.resource}{'/' + c.subresource if c.subresource else ''}": n
                    for c, n in calls.items() if c.verb in ("create", "update", "patch", "delete")})


def apply_manifest(world: Any, obj: dict[str, Any], kinds: dict[str, tuple[str, str, str, bool]]) -> None:
    """Create `obj` as a user would (its namespace first): a custom object of `kinds` (kind -> group, version,
    plural, namespaced; the version is the manifest's own), a Secret, Service, Pod or Deployment."""
    kind, namespace = obj["kind"], obj["metadata"].get("namespace")
    if namespace:
        world.namespace(namespace)
    if kind in kinds:
        group, _, plural, namespaced = kinds[kind]
        version = obj["apiVersion"].rpartition("/")[2]
        if namespaced:
            world.custom.create_namespaced_custom_object(group, version, namespace, plural, obj)
        else:
            world.custom.create_cluster_custom_object(group, version, plural, obj)
    elif kind in ("Secret", "Service", "Pod"):
        getattr(world.core, f"create_namespaced_{kind.lower()}")(namespace, obj)
    elif kind == "Deployment":
        world.apps.create_namespaced_deployment(namespace, obj)
    else:
        raise AssertionError(f"no way to apply a {kind}")
