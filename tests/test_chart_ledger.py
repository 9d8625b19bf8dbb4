"""The chart and the ownership ledger: ``ledgerNamespace`` (the release namespace by default) with its RBAC
for every mode and for the session sidecar, ``allowAdoption`` and ``hostnameRules[].adopt`` passed to the
operator and checked by the schema, and NOTES that warn when hostname rules are empty."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from chutes.authorization import HostnameRules
from chutes.sandbox.kubernetes import ApiCall
from chutes.settings import load_settings
from harness.chart import (
    COMBINATIONS,
    NAMESPACE,
    SESSION_VALUES,
    allowing,
    container_env,
    grants,
    notes,
    of_kind,
    refuses,
    render,
    sidecar_snippet,
)

SERVICE_ACCOUNT = "rel-chutes-operator"
LEDGER_CALLS = [("get", "", "configmaps"), ("list", "", "configmaps"), ("create", "", "configmaps"),
                ("patch", "", "configmaps"), ("delete", "", "configmaps"), ("get", "coordination.k8s.io", "leases"),
                ("create", "coordination.k8s.io", "leases"), ("update", "coordination.k8s.io", "leases")]
SIDECAR_CALLS = [("get", "", "configmaps"), ("list", "", "configmaps"), ("get", "coordination.k8s.io", "leases"),
                 ("create", "coordination.k8s.io", "leases"), ("update", "coordination.k8s.io", "leases")]


def call(verb: str, group: str, resource: str, namespace: str) -> ApiCall:
    return ApiCall("operator", verb, group, resource, "", namespace, None if verb == "list" else "chutes-claim-x")


def settings_of(values: dict[str, Any]) -> Any:
    return load_settings({k: v for k, v in container_env(render(values)).items() if isinstance(v, str)})


def test_the_ledger_defaults_to_the_release_namespace_and_adoption_is_off() -> None:
    env = container_env(render())
    assert env["CHUTES_LEDGER_NAMESPACE"] == NAMESPACE and env["CHUTES_ALLOW_ADOPTION"] == "false"
    settings = settings_of({})
    assert settings.ledger_namespace == NAMESPACE and settings.allow_adoption is False


def test_the_settings_follow_the_values() -> None:
    settings = settings_of({"ledgerNamespace": "chutes-ledger", "allowAdoption": True})
    assert settings.ledger_namespace == "chutes-ledger" and settings.allow_adoption is True


@pytest.mark.parametrize("values", [*COMBINATIONS.values(), {"ledgerNamespace": "chutes-ledger"},
                                    {"ledgerNamespace": "team-a", "watchNamespaces": ["team-a"]}],
                         ids=[*COMBINATIONS.keys(), "own-ledger-namespace", "ledger-in-a-watched-namespace"])
def test_every_mode_may_keep_claims_and_leases_in_the_ledger_namespace_only(values: dict[str, Any]) -> None:
    docs = render(values)
    ledger = values.get("ledgerNamespace") or NAMESPACE
    granted = grants(docs, SERVICE_ACCOUNT, NAMESPACE)
    for verb, group, resource in LEDGER_CALLS:
        assert allowing(granted, call(verb, group, resource, ledger)), (verb, resource)
    # Leases, and writes of ConfigMaps by patch, nowhere else.
    for verb, group, resource in [("update", "coordination.k8s.io", "leases"), ("patch", "", "configmaps")]:
        assert not allowing(granted, call(verb, group, resource, "elsewhere")), (verb, resource)
    # Cluster-wide, ConfigMaps only as the tunnel door needs them (a locally configured tunnel's config.yaml, in
    # the tunnel's namespace): never listed nor patched (as claims are), and no Leases.
    wide = {(p[0], p[2]) for g in granted if g.namespace is None for p in g.permissions()
            if p[2] in ("configmaps", "leases")}
    assert wide <= {(verb, "configmaps") for verb in ("get", "create", "update", "delete")}
    tunnels = ((values.get("frontDoors") or {}).get("tunnels") or {}).get("enabled", True)
    assert bool(wide) == (tunnels and not values.get("watchNamespaces"))


def test_the_session_sidecar_reads_claims_and_takes_leases_in_the_ledger_namespace() -> None:
    values = {"frontDoors": {"chutes": {"enabled": False},
                             "sessions": {"enabled": True, **SESSION_VALUES,
                                          "sidecarServiceAccounts": [{"name": "router", "namespace": "opencode"}]}},
              "ledgerNamespace": "chutes-ledger"}
    granted = grants(render(values), "router", "opencode")
    for verb, group, resource in SIDECAR_CALLS:
        assert allowing(granted, call(verb, group, resource, "chutes-ledger")), (verb, resource)
    for verb in ("create", "patch", "delete", "update"):
        assert not allowing(granted, call(verb, "", "configmaps", "chutes-ledger")), verb


def test_the_readmes_sidecar_uses_the_operators_ledger() -> None:
    [container] = sidecar_snippet()
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["CHUTES_LEDGER_NAMESPACE"] == NAMESPACE  # the README's operator is installed in chute-system


def test_rules_may_say_adopt_and_the_operator_reads_it() -> None:
    rules = [{"namespaces": ["platform"], "hostnames": ["www.example.com"], "adopt": True},
             {"namespaces": ["team-*"], "hostnames": ["*.{namespace}.example.com"], "adopt": False}]
    docs = render({"hostnameRules": rules})
    [config_map] = [d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("hostname-rules")]
    parsed = HostnameRules.from_data(yaml.safe_load(config_map["data"]["rules.yaml"]))
    assert parsed.may_adopt("platform", "www.example.com")
    assert not parsed.may_adopt("team-a", "x.team-a.example.com") and parsed.allows("team-a", "x.team-a.example.com")


@pytest.mark.parametrize(("values", "complaint"), [
    ({"hostnameRules": [{"namespaces": ["a"], "hostnames": ["a.example.com"], "adopt": "yes"}]},
     "/hostnameRules/0/adopt"),
    ({"allowAdoption": "yes"}, "/allowAdoption"),
    ({"ledgerNamespace": "Chute_System"}, "/ledgerNamespace"),
], ids=["adopt", "allowAdoption", "ledgerNamespace"])
def test_bad_ledger_and_adoption_values_are_refused(values: dict[str, Any], complaint: str) -> None:
    refuses(values, complaint)


def test_notes_warn_when_hostname_rules_are_empty() -> None:
    text = notes({})
    assert "WARNING: hostnameRules is empty" in text
    assert "any namespace may publish any free hostname" in text
    assert "One hostname still has one holder" in text
    assert "Adoption of unmarked Cloudflare objects is off" in text
    assert f"Claims and tunnel leases: namespace {NAMESPACE}" in text


def test_notes_say_when_adoption_is_allowed_everywhere() -> None:
    text = notes({"allowAdoption": True})
    assert "WARNING: hostnameRules is empty" in text and "allowAdoption is true" in text
    ruled = notes({"hostnameRules": [{"namespaces": ["a"], "hostnames": ["a.example.com"]}]})
    assert "WARNING" not in ruled
    ruled_adopting = notes({"hostnameRules": [{"namespaces": ["a"], "hostnames": ["a.example.com"]}],
                            "allowAdoption": True})
    assert "hostnameRules is empty" not in ruled_adopting and "WARNING: allowAdoption is true" in ruled_adopting
