"""Every CRD is a valid Kubernetes manifest, and every example validates against the built-in schemas
and our CRDs (OpenAPI schema and CEL rules), as an API server would check them at admission."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from harness.manifests import (
    CRD_FILES,
    KUBE_VERSION,
    REPO,
    crd_schemas,
    load_all,
    validate_custom,
    with_defaults,
)

EXAMPLE_FILES = sorted((REPO / "examples").rglob("*.yaml"))
# Third-party kinds whose CRDs we do not ship: only their shape is checked.
FOREIGN_KINDS = {("gateway.networking.k8s.io/v1", "HTTPRoute"), ("traefik.io/v1alpha1", "IngressRoute"),
                 ("traefik.io/v1alpha1", "IngressRouteTCP")}


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
