"""`make demo` (`python -m chutes.sandbox.demo`), run as a user runs it: a process of its own, no cluster, no token.

Act one publishes examples/chute-gateway through Cloudflare and removes it; act two registers examples/hosts in the
router-hosts emulator over mutual TLS, shows what the server holds, deletes a HostMapping and shows its entry gone.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ULID = r"[0-9A-HJKMNP-TV-Z]{26}"
ROUTE_TAGS = "kubernetes,traefik,ingress"


@pytest.fixture(scope="module")
def demo() -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDFLARE_", "CHUTES_", "CF_", "KUBECONFIG"))}
    env["PYTHONPATH"] = str(REPO / "operator")
    done = subprocess.run([sys.executable, "-m", "chutes.sandbox.demo"], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def entry_rows(block: str) -> dict[str, list[str]]:
    """hostname -> [id, ip, aliases, tags, comment] of an entries table in `block`."""
    rows = {}
    for line in block.splitlines():
        cells = line.split()
        if len(cells) == 6 and re.fullmatch(ULID, cells[0]):
            rows[cells[1]] = [cells[0], *cells[2:]]
    return rows


def test_act_one_publishes_the_gateway_and_removes_it(demo: str) -> None:
    act_one = demo.split("=== Act two")[0]
    assert "=== Act one" in act_one
    assert "dns (example.com)  CNAME blog.example.com → " in act_one
    assert "chutegateway/blog deleted" in act_one
    after = act_one.split("Cloudflare after the delete")[1]
    assert "blog.example.com" not in after and "One-time PIN" in after


def test_act_two_registers_the_hosts_examples_then_removes_a_deleted_mapping(demo: str) -> None:
    act_two = demo.split("=== Act two")[1]
    assert re.search(r'\{"address": "127\.0\.0\.1:\d+", "ca": "[^"]+", "cert": "[^"]+", "key": "[^"]+"\}', act_two)
    assert re.search(r"home\s+nas\s+192\.168\.1\.10\s+nas\.lan\s+Synced", act_two)
    assert re.search(r"home\s+printer\s+fd00::20\s+printer\.lan\s+Synced", act_two)
    held, after = act_two.split("The router-hosts server now holds:")[1].split("$ kubectl delete hostmapping printer")
    rows = entry_rows(held)
    assert {name: row[1:] for name, row in rows.items()} == {
        "nas.lan": ["192.168.1.10", "files.lan,backup.lan", "storage", "k8s:home/nas"],
        "printer.lan": ["fd00::20", "-", "-", "k8s:home/printer"],
        **{name: ["192.0.2.10", "-", ROUTE_TAGS, "k8s-ingress:home/media"]
           for name in ("jellyfin.lan", "media.lan", "dlna.lan")},
    }
    # the routes' annotations name the very entries the server holds
    assert f'ingressroute/media  {{"jellyfin.lan":"{rows["jellyfin.lan"][0]}","media.lan":"{rows["media.lan"][0]}"}}' \
        in act_two
    assert f'ingressroutetcp/media  {{"dlna.lan":"{rows["dlna.lan"][0]}"}}' in act_two
    assert "ingressroute/internal-only  (none: nothing registered)" in act_two
    assert "hostmapping/printer deleted" in after
    remaining = entry_rows(after.split("The router-hosts server after the delete:")[1])
    assert remaining == {name: row for name, row in rows.items() if name != "printer.lan"}  # same ids, untouched
    calls = re.search(r"router-hosts calls: \d+ \((.*)\)", after)
    assert calls is not None and "AddHost 5" in calls.group(1) and "DeleteHost 1" in calls.group(1)


def test_the_demo_stays_short(demo: str) -> None:
    took = re.search(r"Done in ([0-9.]+) s\.", demo)
    assert took is not None
    assert float(took.group(1)) < 60  # about 9 s alone on two cores; the bound leaves room for a loaded test run
