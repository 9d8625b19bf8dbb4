"""Load YAML manifests and create or delete them through the Kubernetes API, for the kinds our examples
use: a few built-ins plus every kind defined by the CRD manifests given. (No kubectl on this path.)"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio import client

_OBJECT = {200: "object", 201: "object", 202: "object"}
# libyaml's parser when PyYAML has it (it always has in our image and wheels): the same documents, ~10x faster on
# the CRDs every plan, demo and emulator start reads.
SAFE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
Kind = tuple[str, str]  # (apiVersion, kind)
Resource = tuple[str, bool]  # (plural, namespaced)

BUILTINS: dict[Kind, Resource] = {
    ("v1", "Namespace"): ("namespaces", False),
    ("v1", "Secret"): ("secrets", True),
    ("v1", "Service"): ("services", True),
    ("v1", "ConfigMap"): ("configmaps", True),
    ("v1", "Pod"): ("pods", True),
    ("apps/v1", "Deployment"): ("deployments", True),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): ("httproutes", True),
    ("traefik.io/v1alpha1", "IngressRoute"): ("ingressroutes", True),
    ("traefik.io/v1alpha1", "IngressRouteTCP"): ("ingressroutetcps", True),
}


def load(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Every document of every YAML file (directories: their *.yaml, sorted by name)."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        files.extend(sorted(path.glob("*.yaml")) if path.is_dir() else [path])
    docs: list[dict[str, Any]] = []
    for file in files:
        docs.extend(doc for doc in yaml.load_all(file.read_text(), Loader=SAFE_LOADER) if doc)
    return docs


def resource_table(crds: Iterable[Mapping[str, Any]]) -> dict[Kind, Resource]:
    table = dict(BUILTINS)
    for crd in crds:
        spec = crd["spec"]
        for version in spec["versions"]:
            key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
            table[key] = (spec["names"]["plural"], spec["scope"] == "Namespaced")
    return table


def paths(doc: Mapping[str, Any], table: Mapping[Kind, Resource]) -> tuple[str, str]:
    """(collection path, object path) of a manifest."""
    api_version, kind = doc["apiVersion"], doc["kind"]
    if (api_version, kind) not in table:
        raise ValueError(f"unknown kind {kind} ({api_version})")
    plural, namespaced = table[(api_version, kind)]
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    meta = doc["metadata"]
    if namespaced:
        prefix += f"/namespaces/{meta.get('namespace') or 'default'}"
    return f"{prefix}/{plural}", f"{prefix}/{plural}/{meta['name']}"


async def _call(api: client.ApiClient, method: str, path: str, body: Any = None) -> Any:
    return await api.call_api(
        path, method,
        header_params={"Accept": "application/json", "Content-Type": "application/json"},
        body=body, response_types_map=_OBJECT, auth_settings=["BearerToken"], _return_http_data_only=True,
    )


async def create(api: client.ApiClient, doc: Mapping[str, Any], table: Mapping[Kind, Resource]) -> dict[str, Any]:
    collection, _ = paths(doc, table)
    return dict(await _call(api, "POST", collection, dict(doc)))


async def get(api: client.ApiClient, doc: Mapping[str, Any], table: Mapping[Kind, Resource]) -> dict[str, Any] | None:
    _, item = paths(doc, table)
    try:
        return dict(await _call(api, "GET", item))
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


async def delete(api: client.ApiClient, doc: Mapping[str, Any], table: Mapping[Kind, Resource]) -> None:
    _, item = paths(doc, table)
    try:
        await _call(api, "DELETE", item)
    except client.ApiException as exc:
        if exc.status != 404:
            raise


async def patch_status(api: client.ApiClient, doc: Mapping[str, Any], table: Mapping[Kind, Resource],
                       status: Mapping[str, Any]) -> None:
    _, item = paths(doc, table)
    await api.call_api(
        f"{item}/status", "PATCH",
        header_params={"Accept": "application/json", "Content-Type": "application/merge-patch+json"},
        body={"status": dict(status)}, response_types_map=_OBJECT, auth_settings=["BearerToken"],
        _return_http_data_only=True,
    )


async def replace(api: client.ApiClient, doc: Mapping[str, Any], table: Mapping[Kind, Resource]) -> dict[str, Any]:
    """PUT the whole object (``doc`` carries the live ``metadata.resourceVersion``)."""
    _, item = paths(doc, table)
    return dict(await _call(api, "PUT", item, dict(doc)))


async def list_all(api: client.ApiClient, api_version: str, kind: str, table: Mapping[Kind, Resource],
                   label_selector: str | None = None) -> list[dict[str, Any]]:
    """Every object of a kind, in all namespaces (items carry ``apiVersion`` and ``kind``)."""
    plural, _ = table[(api_version, kind)]
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    query = f"?labelSelector={label_selector}" if label_selector else ""
    found = await _call(api, "GET", f"{prefix}/{plural}{query}")
    return [{"apiVersion": api_version, "kind": kind} | dict(item) for item in found.get("items") or ()]
