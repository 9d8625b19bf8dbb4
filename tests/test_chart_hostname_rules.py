"""The chart's ``hostnameRules``: rendered into a ConfigMap the operator reads (mounted read-only, named by
CHUTES_HOSTNAME_RULES), a checksum on the pod template so a change rolls the Deployment, nothing at all when
empty, and a schema that refuses malformed rules the way the operator does."""

from __future__ import annotations

import re
from typing import Any

import helm_python as helm
import pytest
import yaml

from chutes.authorization import HostnameRules, HostnameRulesError
from chutes.settings import load_settings
from harness.chart import CHART, KUBE_VERSION, NAMESPACE, container_env, deployment, of_kind, render, validate

RULES = [{"namespaces": ["team-a", "team-*"], "hostnames": ["*.{namespace}.example.com", "app.example.com"]},
         {"namespaces": ["*"], "hostnames": ["status.example.com"]}]
MOUNT = "/etc/chutes/hostname-rules"


def pod_template(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(deployment(docs)["spec"]["template"])


def test_no_rules_render_nothing_and_the_operator_allows_everything() -> None:
    docs = render()
    assert [d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("hostname-rules")] == []
    assert "CHUTES_HOSTNAME_RULES" not in container_env(docs)
    template = pod_template(docs)
    assert "annotations" not in template["metadata"]
    assert [v["name"] for v in template["spec"]["volumes"]] == ["tmp"]
    assert load_settings({k: v for k, v in container_env(docs).items() if isinstance(v, str)}).hostname_rules is None


def test_rules_are_mounted_read_only_and_named_by_the_setting() -> None:
    values = {"hostnameRules": RULES, "podAnnotations": {"team": "platform"}}
    report = helm.lint(str(CHART), values, strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_VERSION}.0")
    assert report["errors"] == [], report
    docs = render(values)
    for doc in docs:
        validate(doc)

    name = "rel-chutes-operator-hostname-rules"
    [config_map] = [d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"] == name]
    assert config_map["metadata"]["namespace"] == NAMESPACE
    assert set(config_map["data"]) == {"rules.yaml"}
    rules = HostnameRules.from_data(yaml.safe_load(config_map["data"]["rules.yaml"]))  # what the operator reads
    assert rules.allows("team-b", "x.team-b.example.com") and rules.allows("default", "status.example.com")
    assert not rules.allows("default", "app.example.com")

    env = container_env(docs)
    settings = load_settings({k: v for k, v in env.items() if isinstance(v, str)})
    assert settings.hostname_rules == f"{MOUNT}/rules.yaml"
    template = pod_template(docs)
    [container] = template["spec"]["containers"]
    assert {"name": "hostname-rules", "mountPath": MOUNT, "readOnly": True} in container["volumeMounts"]
    assert {"name": "hostname-rules", "configMap": {"name": name}} in template["spec"]["volumes"]
    annotations = template["metadata"]["annotations"]
    assert annotations["team"] == "platform"  # podAnnotations are kept
    assert re.fullmatch(r"[0-9a-f]{64}", annotations["checksum/hostname-rules"])


def test_a_change_of_the_rules_rolls_the_deployment() -> None:
    def checksum(rules: list[dict[str, Any]]) -> str:
        return str(pod_template(render({"hostnameRules": rules}))["metadata"]["annotations"]["checksum/hostname-rules"])

    changed = [dict(RULES[0], hostnames=["*.{namespace}.example.com"]), RULES[1]]
    assert checksum(RULES) == checksum([dict(rule) for rule in RULES])  # stable
    assert checksum(RULES) != checksum(changed)


@pytest.mark.parametrize(
    ("rules", "complaint"),
    [
        ({"namespaces": ["a"]}, "/hostnameRules/0"),
        ({"hostnames": ["a.example.com"]}, "/hostnameRules/0"),
        ({"namespaces": [], "hostnames": ["a.example.com"]}, "/hostnameRules/0/namespaces"),
        ({"namespaces": ["a"], "hostnames": []}, "/hostnameRules/0/hostnames"),
        ({"namespaces": ["Team A"], "hostnames": ["a.example.com"]}, "/hostnameRules/0/namespaces/0"),
        ({"namespaces": ["a"], "hostnames": ["app.*.example.com"]}, "/hostnameRules/0/hostnames/0"),
        ({"namespaces": ["a"], "hostnames": ["a.example.com"], "ports": [80]}, "additional properties 'ports'"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_malformed_rules_are_refused_by_the_schema(rules: dict[str, Any], complaint: str) -> None:
    chart = helm.Chart.load(str(CHART))
    try:
        with pytest.raises(helm.HelmValuesError, match=re.escape(complaint)):
            chart.validate_schema({"hostnameRules": [rules]})
    finally:
        chart.close()


@pytest.mark.parametrize("pattern", [
    "*", "*.example.com", "*.{namespace}.example.com", "{namespace}.example.com", "app.example.com",
    "App.Example.com.", "app.*.example.com", "app*.example.com", "*.", "localhost", "{name}.example.com",
    "a..example.com", "a b.example.com", "*.*.example.com",
])
def test_the_schema_and_the_operator_agree_on_hostname_patterns(pattern: str) -> None:
    rule = {"namespaces": ["a"], "hostnames": [pattern]}
    try:
        HostnameRules.from_data({"rules": [rule]})
        operator_accepts = True
    except HostnameRulesError:
        operator_accepts = False
    chart = helm.Chart.load(str(CHART))
    try:
        chart.validate_schema({"hostnameRules": [rule]})
        chart_accepts = True
    except helm.HelmValuesError:
        chart_accepts = False
    finally:
        chart.close()
    assert chart_accepts == operator_accepts
