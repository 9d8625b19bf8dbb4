"""Every CRD is a valid Kubernetes manifest, and every example validates against the built-in schemas
and our CRDs (OpenAPI schema and CEL rules), as an API server would check them at admission."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
KUBE_VERSION = "1.31"
CRD_FILES = sorted((REPO / "crds").glob("*.yaml"))
EXAMPLE_FILES = sorted((REPO / "examples").rglob("*.yaml"))
# Third-party kinds whose CRDs we do not ship: only their shape is checked.
FOREIGN_KINDS = {("gateway.networking.k8s.io/v1", "HTTPRoute"), ("traefik.io/v1alpha1", "IngressRoute")}


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def to_jsonschema(node: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI v3 (Kubernetes flavour) → JSON Schema; unknown fields are errors (the server would prune them)."""
    node = copy.deepcopy(node)
    node.pop("x-kubernetes-validations", None)
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
    env = celpy.Environment()
    for rule in schema.get("x-kubernetes-validations", []):
        program = env.program(env.compile(rule["rule"]))
        if not program.evaluate({"self": celpy.json_to_cel(value)}):
            errors.append(f"{path or '<root>'}: {rule.get('message', rule['rule'])}")
    if isinstance(value, dict):
        for name, sub in (schema.get("properties") or {}).items():
            errors += cel_errors(sub, value.get(name), f"{path}.{name}")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            errors += cel_errors(schema["items"], item, f"{path}[{index}]")
    return errors


def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
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
    full = to_jsonschema(schema)
    full.setdefault("properties", {}).update(
        apiVersion={"type": "string"}, kind={"type": "string"}, metadata={"type": "object"})
    validator = jsonschema.Draft202012Validator(full)
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(doc)] + cel_errors(schema, doc)


@pytest.mark.parametrize("path", CRD_FILES, ids=lambda p: p.name)
def test_crd_is_a_valid_kubernetes_manifest(path: Path) -> None:
    for crd in load_all(path):
        kubernetes_validate.validate(crd, KUBE_VERSION, strict=True)
        assert crd["spec"]["names"].get("shortNames"), "every kind has a short name"
        for version in crd["spec"]["versions"]:
            assert version.get("additionalPrinterColumns"), "kubectl get shows more than NAME and AGE"
            assert version.get("subresources", {}).get("status") == {}


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: str(p.relative_to(REPO / "examples")))
def test_example_is_valid(path: Path) -> None:
    schemas = crd_schemas()
    for doc in load_all(path):
        key = (doc["apiVersion"], doc["kind"])
        if key in schemas:
            assert validate_custom(doc) == [], f"{doc['kind']} {doc['metadata']['name']}"
        elif key in FOREIGN_KINDS:
            assert doc["metadata"]["name"] and doc.get("spec")
        else:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


def gateway(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"configRef": "default", "hostname": "app", "service": {"name": "web", "port": 80},
                            "access": {"allowedEmails": ["a@example.org"]}}
    base.update(spec)
    return {"apiVersion": "chutes.troubleshat.com/v1alpha1", "kind": "ChuteGateway",
            "metadata": {"name": "g", "namespace": "n"}, "spec": base}


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"access": {}}, "allowedEmails or allowedDomains"),
        ({"access": {"allowedEmails": []}}, "allowedEmails or allowedDomains"),
        ({"access": {"public": False, "allowedDomains": []}}, "allowedEmails or allowedDomains"),
        ({"hostname": "App.Example.com"}, "does not match"),
        ({"service": {"name": "web", "port": 70000}}, "maximum"),
        ({"service": {"name": "web", "port": 80, "scheme": "ftp"}}, "is not one of"),
        ({"access": {"allowedEmails": ["not-an-email"]}}, "does not match"),
        ({"access": {"allowedEmails": ["a@b.org"], "sessionDuration": "1 day"}}, "does not match"),
        ({"replicas": -1}, "minimum"),
        ({"colour": "red"}, "Additional properties"),
    ],
)
def test_the_gateway_schema_refuses_bad_specs_at_admission(change: dict[str, Any], complaint: str) -> None:
    errors = validate_custom(gateway(**change))
    assert any(complaint in error for error in errors), errors


def test_a_public_gateway_needs_no_allowed_identities() -> None:
    assert validate_custom(gateway(access={"public": True})) == []
    defaulted = with_defaults(crd_schemas()[("chutes.troubleshat.com/v1alpha1", "ChuteGateway")], gateway())
    assert defaulted["spec"]["replicas"] == 2 and defaulted["spec"]["access"]["sessionDuration"] == "24h"
