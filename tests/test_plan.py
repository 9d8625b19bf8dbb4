"""`chutes plan -f <manifests>`: the real operator run offline on both emulators, in-process through the CLI.

One plan of examples/ (every front door) is saved and reused: re-planning it unchanged plans nothing, and
edited manifests (an allowed email, a hostname, a removed route, a refused gateway) plan the updates and
deletes. No secret of the manifests or of Cloudflare reaches the output or the saved state.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from chutes import cli

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
DEMO_TOKEN = "sandbox-demo-token-replace-me"
TENANT_TUNNEL = "12345678-1234-1234-1234-123456789abc"


def plan(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["plan", *args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_no_secret(text: str) -> None:
    assert DEMO_TOKEN not in text
    assert "eyJhIjoi" not in text  # base64 of '{"a":"': the start of every tunnel token
    assert '"tunnel_secret": "<redacted>"' in text or "tunnel_secret" not in text


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`chutes plan -f examples/ --save-state S --detailed-exitcode`, run once for the module."""
    state = tmp_path_factory.mktemp("plan") / "state.json"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["plan", "-f", str(EXAMPLES), "--save-state", str(state), "--detailed-exitcode"])
    return {"code": code, "out": out.getvalue(), "err": err.getvalue(), "state": state}


def test_the_examples_plan_a_create_for_every_object(first: dict[str, Any]) -> None:
    assert first["code"] == 2, first["err"]
    lines = first["out"].splitlines()
    creates = [line.strip() for line in lines if line.strip().startswith("+ ")
               and not line.strip().startswith("+ host entry ")]  # examples/hosts: tests/test_plan_hosts.py
    expected = [
        "+ identity provider One-time PIN (onetimepin)",
        "+ tunnel chute-blog-blog",
        "+ Access app chute-blog-blog (blog.example.com)  policies=['chute-operator-allow']",
        "+ Access policy chute-operator-allow (app chute-blog-blog)  allow include=[{\"email\": {\"email\": "
        "\"alice@example.org\"}}, {\"email_domain\": {\"domain\": \"example.org\"}}]",
        "+ ingress rule blog.example.com  → http://blog.blog.svc.cluster.local:8080",
        "+ DNS record A nas.example.com  → 192.168.1.50  proxied=False ttl=120",
        *(f"+ Access app cfzt-{h} ({h})  policies=['{p}']" for h, p in [
            ("my-app.example.com", "MyIdentityPolicy"), ("other-app.example.com", "My ADAUTH Policy"),
            ("api.example.com", "MyServiceCredPolicy"), ("other-api.example.com", "My Service Token Policy")]),
        *(f"+ ingress rule {h}  → https://traefik.traefik.svc.cluster.local:443" for h in [
            "my-app.example.com", "other-app.example.com", "api.example.com", "other-api.example.com"]),
        *(f"+ DNS record CNAME {h}  → {TENANT_TUNNEL}.cfargotunnel.com  proxied=True ttl=1" for h in [
            "my-app.example.com", "other-app.example.com", "api.example.com", "other-api.example.com"]),
        "+ tunnel apps-tunnel",  # the Tunnel and TunnelBinding of adyanth's API
        *(f"+ Access app tunnelbinding-{h} ({h})  policies=['chute-operator-allow']" for h in [
            "whoami.example.com", "git.example.com"]),
        "+ ingress rule whoami.example.com  → http://whoami.apps.svc:80",
        "+ ingress rule git.example.com  → ssh://git.apps.svc:22",
    ]
    for line in expected:
        assert line in creates
    # + the CNAMEs of the gateway and the binding (their tunnel ids are random), the bindings' Access policies and
    # the three tunnels' catch-all rules
    for host in ("blog", "whoami", "git"):
        assert sum(line.startswith(f"+ DNS record CNAME {host}.example.com  → ") for line in creates) == 1
    assert sum(line.startswith("+ Access policy chute-operator-allow (app tunnelbinding-") for line in creates) == 2
    assert creates.count("+ ingress rule *  → http_status:404") == 3
    assert len(creates) == len(expected) + 8 == 31
    assert "Plan: 31 to create, 0 to update, 0 to delete." in lines
    assert "Router-hosts plan: 5 to create, 0 to update, 0 to delete." in lines
    # grouped: the tenant's tunnel (assumed, not created) heads its rules; DNS under its zone
    assert f"  tunnel tenant-prod ({TENANT_TUNNEL})" in lines and "zone example.com" in lines
    for source in ("ChuteConfig default", "ChuteGateway blog/blog", "HTTPRoute my-app/my-app",
                   "HTTPRoute internal/internal-service", "CloudflareZeroTrustTenant cloudflare-zero-trust/prod"):
        assert f"  {source}: Ready" in lines
    assert f"  tunnel {TENANT_TUNNEL} (tenant cloudflare-zero-trust/prod)" in lines
    assert_no_secret(first["out"] + first["err"])


def test_the_saved_state_holds_no_secret(first: dict[str, Any]) -> None:
    text = first["state"].read_text()
    assert_no_secret(text)
    saved = json.loads(text)
    assert saved["format"] == "chutes-plan-state/v1"
    assert {o["kind"] for o in saved["kubernetes"]["objects"]} >= {"ChuteGateway", "HTTPRoute", "ConfigMap"}
    assert all(o["kind"] != "Secret" for o in saved["kubernetes"]["objects"])


def test_replanning_the_saved_state_unchanged_plans_nothing(first: dict[str, Any],
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = plan(capsys, "-f", str(EXAMPLES), "--cloudflare-state", str(first["state"]),
                          "--detailed-exitcode")
    assert code == 0, err
    assert "Plan: 0 to create, 0 to update, 0 to delete." in out.splitlines()
    assert "Router-hosts plan: 0 to create, 0 to update, 0 to delete." in out.splitlines()


def test_edited_manifests_plan_updates_and_deletes(first: dict[str, Any], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    gateway_file = tmp_path / "examples" / "chute-gateway" / "04-chutegateway.yaml"
    gateway = yaml.safe_load(gateway_file.read_text())
    gateway["spec"]["access"]["allowedEmails"] = ["bob@example.org"]
    outside = {"apiVersion": gateway["apiVersion"], "kind": "ChuteGateway",
               "metadata": {"name": "outside", "namespace": "blog"},
               "spec": {"configRef": "default", "hostname": "www.example.net",
                        "service": {"name": "blog", "port": 8080}, "access": {"allowedEmails": ["bob@example.org"]}}}
    gateway_file.write_text(yaml.safe_dump_all([gateway, outside]))
    routes_file = tmp_path / "examples" / "httproutes" / "04-httproutes.yaml"
    routes = [doc for doc in yaml.safe_load_all(routes_file.read_text()) if doc]
    routes = [r for r in routes if r["metadata"]["name"] != "internal-service"]  # removed from Git
    my_app = next(r for r in routes if r["metadata"]["name"] == "my-app")
    my_app["metadata"]["annotations"]["cfzt.cloudflare.com/hostname"] = "my-app2.example.com"
    my_app["spec"]["hostnames"] = ["my-app2.example.com"]
    routes_file.write_text(yaml.safe_dump_all(routes))

    code, out, err = plan(capsys, "-f", str(tmp_path / "examples"), "--cloudflare-state", str(first["state"]),
                          "-o", "json", "--detailed-exitcode")
    assert code == 2, err
    result = json.loads(out)
    changes = {(c["action"], c["object"], c["name"]) for c in result["changes"]}
    assert changes == {
        ("update", "access_policy", "chute-operator-allow (app chute-blog-blog)"),
        ("delete", "dns_record", "A nas.example.com"),
        ("delete", "dns_record", "CNAME my-app.example.com"),
        ("create", "dns_record", "CNAME my-app2.example.com"),
        ("delete", "tunnel_rule", "my-app.example.com"),
        ("create", "tunnel_rule", "my-app2.example.com"),
        ("delete", "access_app", "cfzt-my-app.example.com (my-app.example.com)"),
        ("create", "access_app", "cfzt-my-app2.example.com (my-app2.example.com)"),
    }
    (policy,) = [c for c in result["changes"] if c["object"] == "access_policy"]
    assert policy["changes"]["include"] == {
        "before": [{"email": {"email": "alice@example.org"}}, {"email_domain": {"domain": "example.org"}}],
        "after": [{"email": {"email": "bob@example.org"}}, {"email_domain": {"domain": "example.org"}}]}
    assert result["summary"] == {"create": 3, "update": 1, "delete": 4}
    assert result["router_hosts"]["summary"] == {"create": 0, "update": 0, "delete": 0}
    refused = next(s for s in result["sources"] if s["name"] == "outside")
    assert (refused["ready"], refused["reason"]) == (False, "HostnameOutsideZone")
    assert "www.example.net" in refused["message"]
    assert_no_secret(out + err)


@pytest.mark.parametrize(("content", "message"), [
    ("kind: [unclosed\n", "not valid YAML"),
    ("apiVersion: v1\nmetadata: {name: x}\n", "document 1 is not a Kubernetes object"),
    ("apiVersion: example.org/v1\nkind: Widget\nmetadata: {name: x}\n", "unknown kind Widget"),
])
def test_a_bad_manifest_exits_1_with_a_clear_message(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      content: str, message: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(content)
    code, out, err = plan(capsys, "-f", str(bad))
    assert (code, out) == (1, "")
    assert err.startswith("chutes plan: ") and message in err


def test_a_missing_path_or_state_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = plan(capsys, "-f", str(tmp_path / "nope"))
    assert code == 1 and "no such file or directory" in err
    (tmp_path / "state.json").write_text("{\"hello\": 1}")
    code, _, err = plan(capsys, "-f", str(EXAMPLES), "--cloudflare-state", str(tmp_path / "state.json"))
    assert code == 1 and "neither a `chutes plan --save-state` file nor a Cloudflare sandbox snapshot" in err
