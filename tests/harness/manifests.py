"""Our manifests as an API server sees them at admission, offline: each CRD's OpenAPI schema as JSON Schema
(unknown fields refused, as the server would prune them), its defaults and its CEL rules. The CRDs are read, and
their validators and CEL programs built, once per process (the bad-input tests validate hundreds of objects)."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import yaml

from chutes.sandbox.manifests import SAFE_LOADER

REPO = Path(__file__).resolve().parents[2]
KUBE_VERSION = "1.31"
CRD_FILES = sorted((REPO / "crds").glob("*.yaml"))


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.load_all(path.read_text(), Loader=SAFE_LOADER) if doc]


def to_jsonschema(node: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI v3 (Kubernetes flavour) → JSON Schema; unknown fields are errors (the server would prune them)."""
    node = copy.deepcopy(node)
    node.pop("x-kubernetes-validations", None)
    if node.get("x-kubernetes-list-type") == "set":  # the server refuses a duplicate item of a set
        node["uniqueItems"] = True
    if node.pop("x-kubernetes-int-or-string", False):
        node.pop("type", None)
        node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.pop("nullable", False) and "type" in node:
        node["type"] = [node["type"], "null"]
    for key in ("properties", "patternProperties"):
        for name, sub in (node.get(key) or {}).items():
            node[key][name] = to_jsonschema(sub)
    for key in ("items", "additionalProperties", "not"):
        if isinstance(node.get(key), dict):
            node[key] = to_jsonschema(node[key])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in node:
            node[key] = [to_jsonschema(s) for s in node[key]]
    if node.get("type") == "object" and "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields") \
            and "additionalProperties" not in node:
        node["additionalProperties"] = False
    return node


def cel_errors(schema: dict[str, Any], value: Any, path: str = "") -> list[str]:
    """Evaluate every x-kubernetes-validations rule on the value it is attached to."""
    errors: list[str] = []
    if value is None:
        return errors
    for rule in schema.get("x-kubernetes-validations", []):
        if not cel_program(rule["rule"]).evaluate({"self": celpy.json_to_cel(value)}):
            errors.append(f"{path or '<root>'}: {rule.get('message', rule['rule'])}")
    if isinstance(value, dict):
        for name, sub in (schema.get("properties") or {}).items():
            errors += cel_errors(sub, value.get(name), f"{path}.{name}")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            errors += cel_errors(schema["items"], item, f"{path}[{index}]")
    return errors


@functools.cache
def cel_program(rule: str) -> Any:
    """The CEL `rule` compiled (once per process: compiling costs far more than evaluating)."""
    env = celpy.Environment()
    return env.program(env.compile(rule))


@functools.cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """Each CRD version's schema by (apiVersion, kind), read once per process: callers must not change them."""
    schemas = {}
    for path in CRD_FILES:
        for crd in load_all(path):
            for version in crd["spec"]["versions"]:
                key = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
                schemas[key] = version["schema"]["openAPIV3Schema"]
    return schemas


def with_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Apply `default`s the way the API server does before validation."""
    if isinstance(value, dict):
        for name, sub in (schema.get("properties") or {}).items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                value[name] = with_defaults(sub, value[name])
    return value


def validate_custom(doc: dict[str, Any]) -> list[str]:
    schema = crd_schemas()[(doc["apiVersion"], doc["kind"])]
    doc = with_defaults(schema, copy.deepcopy(doc))
    errors = custom_validator(doc["apiVersion"], doc["kind"]).iter_errors(doc)
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors] + cel_errors(schema, doc)


@functools.cache
def custom_validator(api_version: str, kind: str) -> jsonschema.Draft202012Validator:
    """The JSON Schema validator of a kind of ours (once per process)."""
    full = to_jsonschema(crd_schemas()[(api_version, kind)])
    full.setdefault("properties", {}).update(
        apiVersion={"type": "string"}, kind={"type": "string"}, metadata={"type": "object"})
    return jsonschema.Draft202012Validator(full)
