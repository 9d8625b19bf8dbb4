"""The Cloudflare sandbox as a program (one JSON line, clean SIGTERM), from a thread (sync SDK,
faults set from the test's thread), with a seed file, and its HTTP inspection routes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import cloudflare
import pytest

from chutes.sandbox.cloudflare import SandboxConfig, SandboxThread

OPERATOR_ROOT = Path(__file__).resolve().parents[1] / "operator"


@pytest.fixture(autouse=True)
def _token_auth_only(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CLOUDFLARE_EMAIL", "CLOUDFLARE_API_KEY", "CLOUDFLARE_API_TOKEN", "CLOUDFLARE_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


def http(method: str, url: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


SEED = """
accounts:
  - name: Team Account
    tunnels:
      - name: legacy
        config_src: cloudflare
        config: {ingress: [{hostname: old.team.dev, service: "http://old:80"}, {service: "http_status:404"}]}
zones:
  - name: team.dev
    plan: business
    records:
      - {name: www.team.dev, type: A, content: 192.0.2.10, proxied: true, comment: hand-made}
tokens:
  - {name: ci, value: ci-token}
rate_limit: {requests: 50, period: 10}
"""


def test_cli_prints_one_ready_line_and_exits_cleanly_on_sigterm(tmp_path: Path) -> None:
    seed = tmp_path / "seed.yaml"
    seed.write_text(SEED)
    env = {**os.environ, "PYTHONPATH": str(OPERATOR_ROOT)}
    command = [sys.executable, "-m", "chutes.sandbox.cloudflare", "--port", "0", "--config", str(seed)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        ready = json.loads(process.stdout.readline())
        assert set(ready) == {"base_url", "token", "accounts", "zones"} and ready["token"] == "ci-token"
        assert not ready["base_url"].endswith(":0/client/v4")
        [account] = ready["accounts"]
        assert account["name"] == "Team Account" and len(account["id"]) == 32
        assert ready["zones"] == [
            {"id": ready["zones"][0]["id"], "name": "team.dev", "account_id": account["id"], "plan": "business"}
        ]
        status, body = http(
            "GET", ready["base_url"] + f"/zones/{ready['zones'][0]['id']}/dns_records", token="ci-token"
        )
        assert status == 200 and [r["comment"] for r in body["result"]] == ["hand-made"]
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert out == "" and "Traceback" not in err


def test_default_seed_is_deterministic_but_tokens_are_not() -> None:
    first, second = SandboxConfig.default(), SandboxConfig.default()
    assert [z.id for z in first.zones] == [z.id for z in second.zones]
    assert [(z.name, z.plan) for z in first.zones] == [("example.com", "free"), ("example.net", "pro")]
    assert first.accounts == second.accounts and len(first.accounts) == 1
    assert all(len(z.id) == 32 and int(z.id, 16) >= 0 for z in first.zones)
    assert first.tokens[0].value != second.tokens[0].value
    with pytest.raises(ValueError, match="plan"):
        SandboxConfig.from_dict({"zones": [{"name": "a.org", "plan": "platinum"}]})


def test_seeded_objects_and_a_sync_client_in_another_thread(tmp_path: Path) -> None:
    seed = tmp_path / "seed.yaml"
    seed.write_text(SEED)
    with SandboxThread(SandboxConfig.from_yaml(seed)) as sb:
        client = cloudflare.Cloudflare(api_token=sb.token, base_url=sb.base_url, max_retries=0)
        [legacy] = list(client.zero_trust.tunnels.cloudflared.list(account_id=sb.account_id, name="legacy"))
        config = client.zero_trust.tunnels.cloudflared.configurations.get(legacy.id or "", account_id=sb.account_id)
        assert config is not None and config.version == 1 and config.config is not None
        sb.faults.fail(op="zones.list", status=503, count=1)
        with pytest.raises(cloudflare.InternalServerError):
            client.zones.list()
        assert [z.name for z in client.zones.list()] == ["team.dev"]
        assert [r.status for r in sb.calls(op="zones.list")] == [503, 200, 200]  # iteration asks page 2
        client.close()


def test_http_inspection_routes(tmp_path: Path) -> None:
    with SandboxThread() as sb:
        root = sb.root_url
        status, faults = http("POST", root + "/__sandbox/faults", {"rate_limit": {"count": 1, "retry_after": 120}})
        assert status == 200 and faults["rate_limit"] == [120]
        assert http("GET", sb.base_url + "/zones", token=sb.token)[0] == 429
        assert http("GET", sb.base_url + "/zones", token=sb.token)[0] == 200
        http("POST", root + "/__sandbox/faults", {"limits": {"requests": 1, "period": 30}})
        assert http("GET", sb.base_url + "/zones", token=sb.token)[0] == 200
        assert http("GET", sb.base_url + "/zones", token=sb.token)[0] == 429
        status, requests = http("GET", root + "/__sandbox/requests")
        assert [(r["op"], r["status"]) for r in requests["requests"]] == [
            ("zones.list", s) for s in (429, 200, 200, 429)
        ]
        assert sb.token not in json.dumps(requests)
        assert http("GET", root + "/__sandbox/counters")[1] == {"counters": {"zones.list": 4}}
        status, state = http("GET", root + "/__sandbox/state")
        assert status == 200 and {z["name"] for z in state["zones"]} == {"example.com", "example.net"}
        assert http("POST", root + "/__sandbox/reset-log", {})[0] == 200
        assert sb.requests == [] and not sb.counters
        assert http("POST", root + "/__sandbox/faults", {"clear": True, "fail": {"op": "x", "status": 200}})[0] == 400
