"""The two halves of the RBAC check: the Kubernetes emulator's audit (requests in RBAC terms, by bearer
token) and the authorizer that evaluates rendered rules (tests/harness/chart.py) like kube-apiserver."""

from __future__ import annotations

from typing import Any

import kubernetes
import pytest

from chutes.sandbox.kubernetes import OPERATOR_TOKEN, USER_TOKEN, ApiCall, KubeSandbox
from chutes.sandbox.kubernetes.audit import describe
from chutes.sandbox.kubernetes.paths import parse_path
from harness.chart import Grant, allowing, rule_allows

BEARER = {"Authorization": "Bearer t0k"}


@pytest.mark.parametrize(
    ("method", "url", "query", "expected"),
    [
        ("GET", "/api/v1/namespaces/a/pods", {}, ("list", "", "pods", "", "a", None)),
        ("GET", "/api/v1/pods", {"watch": "true"}, ("watch", "", "pods", "", None, None)),
        ("GET", "/api/v1/namespaces/a/secrets/s", {}, ("get", "", "secrets", "", "a", "s")),
        ("POST", "/apis/apps/v1/namespaces/a/deployments", {}, ("create", "apps", "deployments", "", "a", None)),
        ("PUT", "/api/v1/namespaces/a/configmaps/c", {}, ("update", "", "configmaps", "", "a", "c")),
        ("PATCH", "/apis/x.io/v1/namespaces/a/things/t/status", {}, ("patch", "x.io", "things", "status", "a", "t")),
        ("DELETE", "/apis/x.io/v1/things/t", {}, ("delete", "x.io", "things", "", None, "t")),
        ("DELETE", "/api/v1/namespaces/a/pods", {}, ("deletecollection", "", "pods", "", "a", None)),
        ("GET", "/api/v1/namespaces", {}, ("list", "", "namespaces", "", None, None)),
        ("GET", "/api/v1/namespaces/a", {}, ("get", "", "namespaces", "", None, "a")),
    ],
)
def test_requests_are_described_as_an_authorizer_sees_them(method: str, url: str, query: dict[str, str],
                                                           expected: tuple[Any, ...]) -> None:
    call = describe(method, parse_path(url), url, query, BEARER)
    assert (call.verb, call.group, call.resource, call.subresource, call.namespace, call.name) == expected
    assert call.user == "t0k" and call.url is None


def test_discovery_is_a_non_resource_url_and_a_missing_token_is_empty() -> None:
    call = describe("GET", parse_path("/apis/apps/v1"), "/apis/apps/v1", {}, {})
    assert (call.verb, call.url, call.user, call.resource) == ("get", "/apis/apps/v1", "", "")


def test_the_sandbox_counts_each_clients_calls_under_its_own_token() -> None:
    with KubeSandbox(namespaces=["default"]) as kube:
        for kubeconfig in (kube.kubeconfig, kube.operator_kubeconfig):
            with kubernetes.config.new_client_from_config(config_file=kubeconfig) as api:
                kubernetes.client.CoreV1Api(api).list_namespaced_config_map("default")
        with kubernetes.config.new_client_from_config(config_file=kube.operator_kubeconfig) as api:
            kubernetes.client.CoreV1Api(api).create_namespaced_config_map("default", {"metadata": {"name": "x"}})
        operator = kube.api_calls(OPERATOR_TOKEN)
        user = kube.api_calls(USER_TOKEN)
    list_call = ApiCall(OPERATOR_TOKEN, "list", "", "configmaps", namespace="default")
    assert operator[list_call] == 1
    assert operator[ApiCall(OPERATOR_TOKEN, "create", "", "configmaps", namespace="default")] == 1
    assert user[ApiCall(USER_TOKEN, "list", "", "configmaps", namespace="default")] == 1
    assert not [c for c in user if c.verb == "create"]


# --- the authorizer ------------------------------------------------------------------------------------


def call(verb: str, resource: str, namespace: str | None = None, name: str | None = None, group: str = "",
         subresource: str = "") -> ApiCall:
    return ApiCall("u", verb, group, resource, subresource, namespace, name)


RULE = {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "create"]}


@pytest.mark.parametrize(
    ("rule", "request_", "allowed"),
    [
        (RULE, call("get", "secrets", "a", "s"), True),
        (RULE, call("delete", "secrets", "a", "s"), False),
        (RULE, call("get", "configmaps", "a", "c"), False),
        (RULE, call("get", "secrets", "a", "s", group="apps"), False),
        ({**RULE, "resourceNames": ["s"]}, call("get", "secrets", "a", "s"), True),
        ({**RULE, "resourceNames": ["s"]}, call("get", "secrets", "a", "other"), False),
        ({**RULE, "verbs": ["list"], "resourceNames": ["s"]}, call("list", "secrets", "a"), False),
        ({"apiGroups": ["x.io"], "resources": ["things"], "verbs": ["patch"]},
         call("patch", "things", "a", "t", "x.io", "status"), False),  # a subresource is a resource of its own
        ({"apiGroups": ["x.io"], "resources": ["things/status"], "verbs": ["patch"]},
         call("patch", "things", "a", "t", "x.io", "status"), True),
        ({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}, call("delete", "anything", None, "x", "y"), True),
        ({"nonResourceURLs": ["/metrics"], "verbs": ["get"]}, call("get", "metrics"), False),
    ],
)
def test_rules_match_like_kube_apiserver(rule: dict[str, Any], request_: ApiCall, allowed: bool) -> None:
    assert rule_allows(rule, request_) is allowed


def test_a_role_covers_its_own_namespace_only_and_discovery_is_for_everyone() -> None:
    granted = [Grant("a", "Role/r@a", 0, RULE)]
    assert allowing(granted, call("get", "secrets", "a", "s"))
    assert not allowing(granted, call("get", "secrets", "b", "s"))
    assert not allowing(granted, call("get", "secrets", None, "s"))  # cluster-scope needs a ClusterRole
    assert allowing([Grant(None, "ClusterRole/c", 0, RULE)], call("get", "secrets", "b", "s"))
    assert allowing([], ApiCall("u", "get", "", "", url="/apis/apps/v1"))
    assert not allowing([], ApiCall("u", "post", "", "", url="/apis"))
