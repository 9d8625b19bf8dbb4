"""`chutes plan` and the router-hosts door: HostMappings and Traefik route hosts planned against the router-hosts
emulator (the door on, the default ingress IP of `--ingress-ip`), the entries' changes printed beside Cloudflare's,
and carried in the saved state. Manifests without any router-hosts object plan as before: no router-hosts section.
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
from chutes.hosts_core.models import HostEntry
from chutes.sandbox.hosts_rehearsal import route_outcomes

REPO = Path(__file__).resolve().parents[1]
HOSTS = REPO / "examples" / "hosts"
ROUTE_TAGS = '["kubernetes", "traefik", "ingress"]'


def plan(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["plan", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`chutes plan -f examples/hosts --save-state S --detailed-exitcode`, run once for the module."""
    state = tmp_path_factory.mktemp("plan-hosts") / "state.json"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["plan", "-f", str(HOSTS), "--save-state", str(state), "--detailed-exitcode"])
    return {"code": code, "out": out.getvalue(), "err": err.getvalue(), "state": state}


def test_the_hosts_examples_plan_exactly_the_entries_the_door_creates(first: dict[str, Any]) -> None:
    assert first["code"] == 2, first["err"]
    lines = first["out"].splitlines()
    section = lines[lines.index("router-hosts server"):lines.index("Router-hosts plan: 5 to create, 0 to update, "
                                                                   "0 to delete.")]
    assert [line for line in section if line] == [
        "router-hosts server",
        f'  + host entry dlna.lan  → 192.0.2.10  aliases=[] tags={ROUTE_TAGS} comment="k8s-ingress:home/media"',
        f'  + host entry jellyfin.lan  → 192.0.2.10  aliases=[] tags={ROUTE_TAGS} comment="k8s-ingress:home/media"',
        f'  + host entry media.lan  → 192.0.2.10  aliases=[] tags={ROUTE_TAGS} comment="k8s-ingress:home/media"',
        '  + host entry nas.lan  → 192.168.1.10  aliases=["files.lan", "backup.lan"] tags=["storage"] '
        'comment="k8s:home/nas"',
        '  + host entry printer.lan  → fd00::20  aliases=[] tags=[] comment="k8s:home/printer"',
    ]
    assert "Plan: 0 to create, 0 to update, 0 to delete." in lines  # nothing in Cloudflare
    assert "admin.lan" not in first["out"]  # the opted-out route
    for outcome in ("HostMapping home/nas: Ready", "HostMapping home/printer: Ready",
                    "IngressRoute home/media: Ready (registered at 192.0.2.10: jellyfin.lan, media.lan)",
                    "IngressRouteTCP home/media: Ready (registered at 192.0.2.10: dlna.lan)",
                    "IngressRoute home/internal-only: nothing registered (opts out)"):
        assert f"  {outcome}" in lines
    # what the plan printed is what the door made: the saved server holds those entries, no other
    saved = json.loads(first["state"].read_text())
    assert sorted((e["hostname"], e["ip_address"], e["comment"]) for e in saved["router_hosts"]) == [
        ("dlna.lan", "192.0.2.10", "k8s-ingress:home/media"), ("jellyfin.lan", "192.0.2.10", "k8s-ingress:home/media"),
        ("media.lan", "192.0.2.10", "k8s-ingress:home/media"), ("nas.lan", "192.168.1.10", "k8s:home/nas"),
        ("printer.lan", "fd00::20", "k8s:home/printer")]


def test_a_saved_entry_whose_hostmapping_is_gone_is_planned_deleted(first: dict[str, Any], tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copytree(HOSTS, tmp_path / "hosts")
    mappings = tmp_path / "hosts" / "01-hostmappings.yaml"
    kept = [doc for doc in yaml.safe_load_all(mappings.read_text()) if doc and doc["metadata"]["name"] != "nas"]
    kept[0]["spec"]["aliases"] = ["lp.lan"]  # printer
    mappings.write_text(yaml.safe_dump_all(kept))
    saved = {e["hostname"]: e["id"] for e in json.loads(first["state"].read_text())["router_hosts"]}

    code, out, err = plan(capsys, "-f", str(tmp_path / "hosts"), "--cloudflare-state", str(first["state"]),
                          "--ingress-ip", "10.0.0.7", "-o", "json", "--detailed-exitcode")
    assert code == 2, err
    result = json.loads(out)
    assert result["changes"] == []
    hosts = result["router_hosts"]
    assert hosts["summary"] == {"create": 0, "update": 4, "delete": 1}
    by_name = {c["name"]: c for c in hosts["changes"]}
    assert by_name["nas.lan"] == {
        "action": "delete", "object": "host_entry", "name": "nas.lan", "scope": ["router-hosts server"],
        "id": saved["nas.lan"], "fields": {"hostname": "nas.lan", "ip": "192.168.1.10",
                                           "aliases": ["files.lan", "backup.lan"], "tags": ["storage"],
                                           "comment": "k8s:home/nas"}}
    assert by_name["printer.lan"]["changes"] == {"aliases": {"before": [], "after": ["lp.lan"]}}
    for name in ("dlna.lan", "jellyfin.lan", "media.lan"):  # the installation's ingress IP moved: updated in place
        assert (by_name[name]["action"], by_name[name]["id"]) == ("update", saved[name])
        assert by_name[name]["changes"] == {"ip": {"before": "192.0.2.10", "after": "10.0.0.7"}}
    assert not any(s["name"] == "nas" for s in result["sources"])


def test_without_router_hosts_objects_there_is_no_router_hosts_section(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = plan(capsys, "-f", str(REPO / "examples" / "chute-gateway"))
    assert code == 0, err
    assert "router-hosts" not in out.lower() and "host entry" not in out
    # --no-router-hosts: the door is not planned even for its own examples (no section, nothing to change)
    code, out, err = plan(capsys, "-f", str(HOSTS), "--no-router-hosts", "-o", "json", "--detailed-exitcode")
    assert code == 0, err
    result = json.loads(out)
    assert "router_hosts" not in result and result["changes"] == [] and result["sources"] == []


# --- when routes have settled (pure) -------------------------------------------------------------------------

def route(*hosts: str, host_ids: dict[str, str] | None = None, kind: str = "IngressRoute") -> dict[str, Any]:
    annotations = {"router-hosts.fzymgc.house/host-ids": json.dumps(host_ids)} if host_ids else {}
    return {"apiVersion": "traefik.io/v1alpha1", "kind": kind,
            "metadata": {"name": "web", "namespace": "home", "annotations": annotations},
            "spec": {"routes": [{"match": f"Host(`{h}`)"} for h in hosts]}}


def host(entry_id: str, hostname: str, comment: str = "k8s-ingress:home/web",
         tags: tuple[str, ...] = ("kubernetes", "traefik", "ingress")) -> HostEntry:
    return HostEntry(id=entry_id, ip="192.0.2.10", hostname=hostname, comment=comment, aliases=(), tags=tags,
                     version="1")


def outcome(bodies: list[dict[str, Any]], entries: list[HostEntry]) -> list[tuple[Any, ...]]:
    found = route_outcomes(bodies, "home", "web", entries, "192.0.2.10")
    return [(s.kind, s.ready, s.reason, s.settled) for s in found]


def test_a_route_is_settled_once_its_entries_and_annotation_say_so() -> None:
    assert outcome([route("a.lan", "b.lan")], [host("1", "a.lan")]) == [("IngressRoute", True, "", False)]
    entries = [host("1", "a.lan"), host("2", "b.lan")]
    assert outcome([route("a.lan", "b.lan", host_ids={"a.lan": "1"})], entries)[0][3] is False  # annotation lags
    assert outcome([route("a.lan", "b.lan", host_ids={"a.lan": "1", "b.lan": "2"})], entries) == [
        ("IngressRoute", True, "", True)]
    # a hostname dropped from the route: settled only once its entry is gone
    assert outcome([route("a.lan", host_ids={"a.lan": "1"})], entries)[0][3] is False


def test_a_foreign_entry_settles_a_route_as_a_conflict_and_a_gone_route_waits_for_its_entries() -> None:
    foreign = host("9", "b.lan", comment="set by hand", tags=())
    assert outcome([route("a.lan", "b.lan", host_ids={"a.lan": "1"})], [host("1", "a.lan"), foreign]) == [
        ("IngressRoute", False, "HostnameConflict", True)]
    assert outcome([], [host("1", "a.lan")]) == [("IngressRoute", None, "Deleting", False)]
    assert outcome([], [foreign, host("2", "a.lan", tags=())]) == []  # not provably the route's: not waited for
