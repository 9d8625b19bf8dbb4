"""`chutes plan --sessions-env FILE` and the session-Pod door: the real door run offline on the emulators with the
sidecar's environment, its records and rules planned (and compared with what it made in the emulator, and with what
its own pure functions say it makes), carried in the saved state; a Pod removed plans its deletions; the token never
shows; without the flag (or without a labelled Pod) the plan is what it was.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from chutes import cli
from chutes.cloudflare_core.ownership import marks
from chutes.frontdoors.sessions import desired as d
from chutes.frontdoors.sessions.config import load_config
from chutes.sandbox.sessions_rehearsal import configure, planned, read_env

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sessions"
TOKEN = "plan-sessions-token-0123456789abcdefXYZ"  # the sandbox accepts it: for this test only
ZONE_ID = "0123456789abcdef0123456789abcdef"
TUNNEL = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
NAMESPACE = "sessions"
ENV = {"CF_API_TOKEN": TOKEN, "CF_ZONE_ID": ZONE_ID, "CF_TUNNEL_ID": TUNNEL, "DOMAIN": "example.org",
       "ROUTE_SUFFIX": "-oc", "ROUTER_SERVICE_URL": "http://opencode-router.sessions.svc:80",
       "WATCH_NAMESPACE": NAMESPACE, "HEALTH_PORT": "8080"}
CONFIG = load_config(ENV)
HASHES = ("8b6cc2aa9a45", "cccc55556666")
NOTHING = "No changes: Cloudflare already matches these manifests.\n\nPlan: 0 to create, 0 to update, 0 to delete.\n"


def pod(name: str, session_hash: str | None, namespace: str = NAMESPACE) -> dict[str, Any]:
    labels = {"app.kubernetes.io/managed-by": "opencode-router"}
    if session_hash:
        labels[CONFIG.session_hash_label] = session_hash
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"containers": [{"name": "opencode", "image": "opencode:latest"}]}}


PODS = [pod("alice", HASHES[0]), pod("bob", HASHES[1]), pod("unlabelled", None), pod("elsewhere", "dddd77778888",
                                                                                      namespace="default")]


def write(path: Path, docs: list[dict[str, Any]]) -> str:
    path.write_text(yaml.safe_dump_all([{"apiVersion": "v1", "kind": "Namespace",
                                         "metadata": {"name": NAMESPACE}}, *docs]))
    return str(path)


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["plan", *args])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The sidecar's environment file (the token in it) and the manifests: two session Pods, an unlabelled one and a
    labelled one outside WATCH_NAMESPACE."""
    folder = tmp_path_factory.mktemp("plan-sessions")
    env = folder / "sessions.env"
    env.write_text("# as the sidecar's Deployment has it\n" + "".join(
        f"export {k}={v}\n" if k == "CF_ZONE_ID" else f'{k}="{v}"\n' if k == "CF_API_TOKEN" else f"{k}={v}\n"
        for k, v in ENV.items()))
    return {"folder": folder, "env": str(env), "pods": write(folder / "pods.yaml", PODS)}


@pytest.fixture(scope="module")
def first(world: dict[str, Any]) -> dict[str, Any]:
    """`chutes plan -f pods.yaml --sessions-env FILE --save-state S -o json --detailed-exitcode`, once."""
    state = world["folder"] / "state.json"
    code, out, err = run("-f", world["pods"], "--sessions-env", world["env"], "--save-state", str(state),
                         "-o", "json", "--detailed-exitcode")
    return {"code": code, "out": out, "err": err, "state": state}


def made(state: Path) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """What the door made in the emulators, as saved: the zone's records and the tunnel's rules by hostname, and
    its IngressRoutes."""
    saved = json.loads(state.read_text())
    records = {r["name"]: r for r in saved["cloudflare"]["dns_records"][ZONE_ID]}
    rules = {r.get("hostname", "*"): r for r in saved["cloudflare"]["tunnel_configs"][TUNNEL]["config"]["ingress"]}
    return records, rules, saved["kubernetes"]["session_routes"]


def test_labelled_pods_plan_exactly_the_records_and_rules_the_door_makes(first: dict[str, Any]) -> None:
    assert first["code"] == 2, first["err"]
    plan = json.loads(first["out"])
    sessions = {h: d.Session(h, d.first_label(CONFIG, h), d.hostname(CONFIG, h)) for h in HASHES}
    records, rules, routes = made(first["state"])
    # the door made a proxied CNAME to the tunnel, marked as the session's, and a rule, per labelled Pod; no more
    assert sorted(records) == sorted(s.hostname for s in sessions.values())
    for session in sessions.values():
        wanted, record = d.dns_record(CONFIG, session), records[session.hostname]
        assert (record["type"], record["content"], record["proxied"]) == (wanted.type, wanted.content, True)
        assert marks(record["comment"], "default", d.source(CONFIG, session.hash))
        assert rules[session.hostname] == d.tunnel_rule(CONFIG, session).to_wire()
    assert sorted(rules) == sorted([*records, "*"])  # and the catch-all of the (assumed, unconfigured) tunnel
    assert sorted(r["metadata"]["name"] for r in routes) == sorted(n for s in sessions.values()
                                                                   for n in d.route_names(s))
    # ... and the plan is exactly that
    assert {(c["action"], c["object"], c["name"]) for c in plan["changes"]} == {
        *(("create", "dns_record", f"CNAME {name}") for name in records),
        *(("create", "tunnel_rule", name) for name in rules)}
    for change in plan["changes"]:
        if change["object"] == "dns_record":
            assert change["fields"]["content"] == records[change["name"].split()[1]]["content"]
            assert change["fields"]["comment"] == records[change["name"].split()[1]]["comment"]
        else:
            assert change["fields"]["service"] == rules[change["name"]]["service"]
    assert plan["assumed"] == [f"zone example.org ({ZONE_ID}) (the session door's CF_ZONE_ID)",
                               f"tunnel {TUNNEL} (the session door's CF_TUNNEL_ID)"]
    outcomes = {(s["namespace"], s["name"]): s for s in plan["sources"]}
    assert set(outcomes) == {(NAMESPACE, "alice"), (NAMESPACE, "bob"), ("default", "elsewhere")}
    for name, session_hash in (("alice", HASHES[0]), ("bob", HASHES[1])):
        assert outcomes[(NAMESPACE, name)]["ready"] is True
        assert outcomes[(NAMESPACE, name)]["detail"].startswith(f"published {d.hostname(CONFIG, session_hash)} → ")
    elsewhere = outcomes[("default", "elsewhere")]
    assert elsewhere["ready"] is None and f"it watches namespace {NAMESPACE}" in elsewhere["detail"]


def test_the_token_is_never_printed_nor_saved(world: dict[str, Any], first: dict[str, Any]) -> None:
    text = first["out"] + first["err"] + first["state"].read_text()
    assert TOKEN not in text
    code, out, err = run("-f", world["pods"], "--sessions-env", world["env"], "--sessions-env-var", "CF_ZONE_ID=nope")
    assert code == 1 and out == "" and "CF_ZONE_ID: expected a 32-character hex zone id, got 'nope'" in err
    bad = world["folder"] / "bad.env"
    bad.write_text(f"CF_API_TOKEN {TOKEN}\n")
    code, out, err = run("-f", world["pods"], "--sessions-env", str(bad))
    assert code == 1 and err == f"chutes plan: --sessions-env {bad} line 1: expected KEY=VALUE\n"
    code, out, err = run("-f", world["pods"], "--sessions-env-var", "CF_API_TOKEN=two words")
    assert code == 1 and "CF_API_TOKEN: the API token holds a character other than" in err and "words" not in err


def test_a_saved_state_replanned_unchanged_plans_nothing(world: dict[str, Any], first: dict[str, Any]) -> None:
    code, out, err = run("-f", world["pods"], "--sessions-env", world["env"], "--cloudflare-state",
                         str(first["state"]), "--detailed-exitcode")
    assert code == 0, err
    assert out.startswith(NOTHING) and "Assumed to exist" not in out  # the zone and the tunnel are in the state
    assert f"  Pod {NAMESPACE}/alice: Ready (published {d.hostname(CONFIG, HASHES[0])} → " in out
    assert TOKEN not in out + err


def test_a_removed_pod_plans_the_deletion_of_its_record_and_rule(world: dict[str, Any], first: dict[str, Any]) -> None:
    fewer = write(world["folder"] / "fewer.yaml", [p for p in PODS if p["metadata"]["name"] != "bob"])
    after = world["folder"] / "after.json"
    code, out, err = run("-f", fewer, "--sessions-env", world["env"], "--cloudflare-state", str(first["state"]),
                         "--save-state", str(after), "-o", "json", "--detailed-exitcode")
    assert code == 2, err
    plan = json.loads(out)
    records, rules, _ = made(first["state"])
    gone = d.hostname(CONFIG, HASHES[1])
    assert [(c["action"], c["object"], c["name"], c["id"]) for c in plan["changes"]] == [
        ("delete", "tunnel_rule", gone, None), ("delete", "dns_record", f"CNAME {gone}", records[gone]["id"])]
    assert plan["summary"] == {"create": 0, "update": 0, "delete": 2}
    records_after, rules_after, routes_after = made(after)
    assert set(records_after) == set(records) - {gone} and set(rules_after) == set(rules) - {gone}
    assert all(gone not in json.dumps(route) for route in routes_after)  # its IngressRoutes went too
    assert not any(s["name"] == "bob" for s in plan["sources"])
    assert TOKEN not in out + err + after.read_text()


def test_an_unlabelled_pod_plans_nothing_and_without_the_door_the_plan_is_as_before(
        world: dict[str, Any]) -> None:
    unlabelled = write(world["folder"] / "unlabelled.yaml", [pod("unlabelled", None)])
    code, out, err = run("-f", unlabelled, "--sessions-env", world["env"], "--detailed-exitcode")
    assert (code, out) == (0, NOTHING), err  # the door is not planned: nothing assumed, no Pod outcome
    # session Pods without --sessions-env: Pods like any other manifest, as before the door could be planned
    code, out, err = run("-f", world["pods"], "--detailed-exitcode")
    assert (code, out) == (0, NOTHING), err


def test_the_environment_file_reads_as_a_dotenv_file(tmp_path: Path) -> None:
    env = tmp_path / "sessions.env"
    env.write_text("# comment\n\nexport A=1\nB = 'two words'\nC=\"x=y\"\nD=\n")
    assert read_env(str(env), ["B=over", "E=5"]) == {"A": "1", "B": "over", "C": "x=y", "D": "", "E": "5"}
    example = configure(read_env(str(EXAMPLE / "sidecar.env")), "default")  # examples/sessions: a valid one
    pods = [doc for doc in yaml.safe_load_all((EXAMPLE / "01-session-pods.yaml").read_text()) if doc]
    assert planned(example, pods, None, {}, "default")
    assert all(d.wants_session(example, p) and d.session_hash(example, p) for p in pods)
