"""The bad-input corpus (issue 16 §3): every manifest of ``tests/data/bad-inputs/`` applied at once, with valid
objects alongside, to one operator serving every front door, against both emulators.

Asserted per corpus file (a failure names the file): the bad object gets the reason the file expects, as its
``Ready`` condition and a Warning Event (``via: condition``), as a Warning Event on the Pod (``via: event``), or
is refused at admission (``via: apiserver``: our CRDs' schema and CEL rules, checked offline as the API server
would; the Kubernetes emulator itself checks metadata only); nothing is published for it; and each valid object
(``via: published``) is published at its hostname. Asserted for the whole run: the operator never crashed (no
handler exception logged, the thread alive) and does not loop hot: over a quiet period after convergence it
makes at most a handful of Cloudflare calls and Kubernetes writes, whatever the number of bad objects.
The corpus format is in tests/data/bad-inputs/README.md."""

from __future__ import annotations

import json
import logging
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudflare as cf_sdk
import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from chutes.cloudflare_core.ownership import marks
from harness import sessions as sh
from harness.corpus import (
    CORPUS,
    MAX_WARNINGS_PER_OBJECT,
    Entry,
    apply_manifest,
    load,
    operator_writes,
    play_deployment_controller,
)
from harness.manifests import crd_schemas, validate_custom
from harness.sessions import fast_timing_fixture  # noqa: F401  (pytest fixture: the session door's short timings)
from harness.waiting import wait_for, wait_quiet
from harness.world import BaseWorld

OPNS = "cloudflare-zero-trust"  # the operator's namespace: tenants, templates, the ledger
CFZT = "cfzt.cloudflare.com/"
VIAS = ("condition", "event", "apiserver", "published")
CONVERGE_TIMEOUT = 90.0  # polled: generous for a machine loaded by parallel test workers
QUIET_PERIOD = 3.0
MAX_QUIET_CLOUDFLARE_CALLS = 4  # over QUIET_PERIOD, for all objects together (no resync or sweep is due)
MAX_QUIET_KUBE_WRITES = 4
FIRST_SWEEP = 60.0  # the ChuteConfig sweeps' first pass, after the config is first seen (a tenant's HTTPRoute sweep
# runs its first pass as soon as the tenant is seen: at the start, or at the tenant's creation, before the quiet period)
FIRST_SWEEP_LATENESS = 30.0  # how late a loaded machine may run it

# kind -> (group, version, plural, namespaced)
KINDS: dict[str, tuple[str, str, str, bool]] = {
    "ChuteConfig": ("chutes.troubleshat.com", "v1alpha1", "chuteconfigs", False),
    "ChuteGateway": ("chutes.troubleshat.com", "v1alpha1", "chutegateways", True),
    "CloudflareZeroTrustTenant": ("cfzt.cloudflare.com", "v1alpha1", "cloudflarezerotrusttenants", True),
    "CloudflareZeroTrustTemplate": ("cfzt.cloudflare.com", "v1alpha1", "cloudflarezerotrusttemplates", True),
    "HTTPRoute": ("gateway.networking.k8s.io", "v1", "httproutes", True),
}


OWN_TESTS = ("hosts", "tunnels")  # doors whose files another test runs: test_bad_inputs_{hosts,tunnels}.py


def corpus_files(*, every: bool = False) -> list[Path]:
    """The corpus of this test (with `every`, also the files of the doors another test runs: `hosts/` against the
    router-hosts emulator, `tunnels/` with the Tunnel door's world)."""
    return sorted(path for path in CORPUS.glob("*/*.yaml") if every or path.parent.name not in OWN_TESTS)


def test_the_corpus_is_well_formed() -> None:
    """Every file names a reason (a condition reason is CamelCase), a way the user sees it, and its objects;
    ≥ 100 files in all, every door covered."""
    placeholders = {"ACCOUNT": "a" * 32, "ZONE_COM": "b" * 32, "ZONE_NET": "c" * 32, "TUNNEL": "t", "OTHER_TUNNEL": "o",
                    "TOKEN": "x"}
    files = corpus_files(every=True)
    doors = Counter(path.parent.name for path in files)
    assert len(files) >= 100 and set(doors) == {"gateways", "httproutes", "sessions", "cross-door", "hosts",
                                                 "tunnels"}, doors
    for path in files:
        assert path.read_text(encoding="utf-8").startswith("# "), f"{path.name}: a first comment says what is wrong"
        entry = load(path, placeholders)
        assert entry.via in VIAS, entry.name
        assert entry.via == "published" or re.fullmatch(r"[A-Z][A-Za-z]+", entry.expect.get("reason", "")), entry.name
        named = all(o.get("kind") and o.get("metadata", {}).get("name") for o in entry.objects)
        assert entry.objects and named, entry.name
        if entry.via == "apiserver" and entry.subject["kind"] in KINDS and entry.subject["kind"] != "HTTPRoute":
            assert (entry.subject["apiVersion"], entry.subject["kind"]) in crd_schemas(), entry.name


# --- the world -------------------------------------------------------------------------------------------


class World(BaseWorld):
    """Both emulators, the user's clients and a sync Cloudflare SDK client, three tunnels (the tenant's, someone
    else's, the sessions'), and the operator serving every front door."""

    def __init__(self, kube: Any, cloudflare: Any) -> None:
        super().__init__(kube, cloudflare)
        self.apps = kubernetes.client.AppsV1Api(self.client)
        self.sdk = cf_sdk.Cloudflare(api_token=cloudflare.token, base_url=cloudflare.base_url, max_retries=0)
        self.tunnels = {name: self.tunnel(name) for name in ("home", "someone-elses", "sessions")}
        self.values = {"ACCOUNT": cloudflare.account_id, "ZONE_COM": cloudflare.zone_id("example.com"),
                       "ZONE_NET": cloudflare.zone_id("example.net"), "TOKEN": cloudflare.token,
                       "TUNNEL": self.tunnels["home"], "OTHER_TUNNEL": self.tunnels["someone-elses"]}
        self.session_tunnel = self.tunnels["sessions"]
        self.started = self.applied = 0.0  # monotonic times: the operator's start, the last object applied

    def close(self) -> None:
        super().close()
        self.sdk.close()

    def tunnel(self, name: str) -> str:
        return str(self.sdk.zero_trust.tunnels.cloudflared.create(account_id=self.cf.account_id, name=name,
                                                                 config_src="cloudflare").id)

    # -- Cloudflare objects made by hand before the operator starts ---------------------------------------
    def foreign(self, spec: dict[str, Any]) -> None:
        for record in spec.get("dns", []):
            self.sdk.dns.records.create(zone_id=self.cf.zone_id(record["zone"]), name=record["name"],  # type: ignore[call-overload]
                                        type=record["type"], content=record["content"], ttl=1, comment="made by hand")
        for rule in spec.get("rules", []):  # someone else's rule in a shared tunnel, before the catch-all
            tunnel = self.tunnels[rule["tunnel"]]
            config = (self.cf.snapshot()["tunnel_configs"].get(tunnel) or {}).get("config") or {}
            ingress = [r for r in config.get("ingress", []) if r.get("hostname")]
            ingress.append({"hostname": rule["hostname"], "service": rule["service"]})
            self.sdk.zero_trust.tunnels.cloudflared.configurations.update(
                tunnel, account_id=self.cf.account_id,
                config={"ingress": [*ingress, {"service": "http_status:404"}]})  # type: ignore[arg-type]
        for policy in spec.get("policies", []):  # a reusable Access policy (routes name them)
            self.sdk.zero_trust.access.policies.create(account_id=self.cf.account_id, name=policy["name"],
                                                       decision="allow", include=[{"everyone": {}}])
        for app in spec.get("access_apps", []):
            self.sdk.zero_trust.access.applications.create(account_id=self.cf.account_id, domain=app["domain"],  # type: ignore[call-overload]
                                                           name=app["name"], type="self_hosted")

    # -- Kubernetes ---------------------------------------------------------------------------------------
    def apply(self, obj: dict[str, Any]) -> None:
        self.applied = time.monotonic()
        apply_manifest(self, obj, KINDS)

    def base(self) -> None:
        """What the valid objects need: the credentials, a ChuteConfig per zone, the tenant, Services."""
        for namespace in ("chute-system", OPNS, "gw-bad", "gw-ok", "gw-other", "rt-bad", "rt-ok", "rt-other"):
            self.namespace(namespace)
        self.core.create_namespaced_secret("chute-system", {"metadata": {"name": "cf"},
                                                            "stringData": {"apiToken": self.cf.token}})
        self.core.create_namespaced_secret(OPNS, {"metadata": {"name": "cf-token"},
                                                  "stringData": {"token": self.cf.token}})
        for name, zone in (("default", "example.com"), ("net", "example.net")):
            self.apply({"apiVersion": "chutes.troubleshat.com/v1alpha1", "kind": "ChuteConfig",
                        "metadata": {"name": name},
                        "spec": {"apiTokenSecretRef": {"name": "cf", "namespace": "chute-system", "key": "apiToken"},
                                 "accountId": self.cf.account_id, "zoneId": self.cf.zone_id(zone), "domain": zone}})
        self.apply({"apiVersion": "cfzt.cloudflare.com/v1alpha1", "kind": "CloudflareZeroTrustTenant",
                    "metadata": {"name": "home", "namespace": OPNS},
                    "spec": {"accountId": self.cf.account_id, "tunnelId": self.values["TUNNEL"],
                             "credentialRef": {"name": "cf-token", "key": "token"}}})
        self.apply({"apiVersion": "cfzt.cloudflare.com/v1alpha1", "kind": "CloudflareZeroTrustTemplate",
                    "metadata": {"name": "dns-only", "namespace": OPNS},
                    "spec": {"dnsOnly": {"enabled": True, "staticIp": "192.0.2.21"}}})
        for namespace in ("gw-bad", "gw-ok", "gw-other"):
            self.core.create_namespaced_service(namespace, {
                "metadata": {"name": "web"}, "spec": {"ports": [{"port": 8080}], "selector": {"app": "web"}}})

    def start(self) -> None:
        environ = {"OPERATOR_NAMESPACE": OPNS, **sh.session_env(self.cf, self.session_tunnel)}
        self.run_operator(environ, timeout=30, chutes=True, httproutes=True, sessions=True)
        self.started = time.monotonic()

    def first_sweeps_due(self, begin: float, end: float) -> bool:
        """Whether the ChuteConfig sweeps' first passes may have run between `begin` and `end` (monotonic times)."""
        return end >= self.started + FIRST_SWEEP and begin <= self.applied + FIRST_SWEEP + FIRST_SWEEP_LATENESS

    def play_deployment_controller(self) -> None:
        play_deployment_controller(self.apps)

    def operator_writes(self) -> Counter[str]:
        return operator_writes(self.kube)


@dataclass
class View:
    """One reading of both emulators: objects by (kind, namespace, name), Warning Events, DNS records, rules."""

    objects: dict[tuple[str, str, str], dict[str, Any]]
    warnings: dict[tuple[str, str, str], list[tuple[str, str]]]
    records: list[dict[str, Any]]
    rules: set[str]


def read(world: World) -> View:
    objects: dict[tuple[str, str, str], dict[str, Any]] = {}
    for kind, (group, version, plural, _) in KINDS.items():
        for item in world.custom.list_cluster_custom_object(group, version, plural)["items"]:
            meta = item["metadata"]
            objects[(kind, meta.get("namespace", ""), meta["name"])] = item
    for pod in world.core.list_namespaced_pod("ns1").items:
        objects[("Pod", "ns1", pod.metadata.name)] = {"metadata": {"labels": pod.metadata.labels}}
    warnings: dict[tuple[str, str, str], list[tuple[str, str]]] = {}
    for event in world.core.list_event_for_all_namespaces().items:
        if event.type == "Warning":
            involved = event.involved_object
            namespace = "" if involved.kind == "ChuteConfig" else involved.namespace or ""
            warnings.setdefault((involved.kind, namespace, involved.name), []).append((event.reason, event.message))
    state = world.cf.snapshot()
    records = [r for zone in state["dns_records"].values() for r in zone]
    rules = {str(rule.get("hostname")) for config in state["tunnel_configs"].values()
             for rule in ((config or {}).get("config") or {}).get("ingress", []) if rule.get("hostname")}
    return View(objects, warnings, records, rules)


def key_of(obj: dict[str, Any]) -> tuple[str, str, str]:
    meta = obj["metadata"]
    return obj["kind"], meta.get("namespace", "") if KINDS.get(obj["kind"], ("", "", "", True))[3] else "", meta["name"]


def source_of(obj: dict[str, Any]) -> str | None:
    """The ``src=`` of the DNS records made for `obj` (None: a kind that publishes nothing of its own)."""
    kind, namespace, name = key_of(obj)
    if kind == "Pod":
        return f"Session/{namespace}/{(obj['metadata'].get('labels') or {}).get('opencode.ai/session-hash')}"
    return f"{kind}/{namespace}/{name}" if kind in ("ChuteGateway", "HTTPRoute") else None


def ready_of(view: View, obj: dict[str, Any]) -> dict[str, Any]:
    found = view.objects.get(key_of(obj))
    if found is None:
        return {}
    if obj["kind"] == "HTTPRoute":
        conditions = json.loads((found["metadata"].get("annotations") or {}).get(CFZT + "conditions") or "[]")
    else:
        conditions = (found.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == "Ready"), {})


def marked(view: View, source: str) -> list[dict[str, Any]]:
    """The records marked for `source` by this installation (owner id ``default``)."""
    return [r for r in view.records if marks(r.get("comment"), "default", source)]


def problems_of(entry: Entry, view: View) -> list[str]:
    """What is not (yet) as the file expects; empty when it is."""
    subject, expect = entry.subject, entry.expect
    reason, message = expect.get("reason"), expect.get("message")
    source = source_of(subject)
    problems: list[str] = []
    if entry.via == "published":
        if subject["kind"] == "Pod":
            hostname = expect["hostname"]
            if not (source and any(r["name"] == hostname for r in marked(view, source)) and hostname in view.rules):
                problems.append(f"session {hostname} not published (record and rule)")
        else:
            ready = ready_of(view, subject)
            if ready.get("status") != "True":
                problems.append(f"not Ready: {ready}")
            if source and not any(r["name"] == expect.get("hostname") for r in marked(view, source)):
                problems.append(f"no record of ours at {expect['hostname']}")
        return problems
    if entry.via in ("condition", "event"):
        if entry.via == "condition":
            ready = ready_of(view, subject)
            if (ready.get("status"), ready.get("reason")) != ("False", reason):
                problems.append(f"Ready condition is {ready.get('status')}/{ready.get('reason')}, expected "
                                f"False/{reason}: {ready.get('message')}")
            elif message and message not in ready.get("message", ""):
                problems.append(f"condition message {ready.get('message')!r} does not say {message!r}")
        warnings = view.warnings.get(key_of(subject), [])
        if not any(r == reason and (not message or message in m) for r, m in warnings):
            problems.append(f"no Warning Event {reason}{' saying ' + repr(message) if message else ''}; got {warnings}")
        if len(warnings) > MAX_WARNINGS_PER_OBJECT:
            problems.append(f"{len(warnings)} Warning Events: {warnings}")
    if source and not expect.get("publishes") and (records := marked(view, source)):
        problems.append(f"published anyway: {[(r['type'], r['name']) for r in records]}")
    return problems


def admitted(world: World, entry: Entry) -> list[str]:
    """Apply the file's objects; the subject of an ``apiserver`` file must be refused (problems otherwise)."""
    problems: list[str] = []
    for index, obj in enumerate(entry.objects):
        if index == 0 and entry.via == "apiserver":
            message = entry.expect.get("message", "")
            if obj["kind"] in KINDS:
                errors = validate_custom(obj)
                if not errors:
                    problems.append("admitted by the CRD schema")
                elif message and not any(message in e for e in errors):
                    problems.append(f"refused for another reason: {errors}")
                world.apply(obj)  # as if admission were bypassed: the operator must still cope (see `bypass`)
                continue
            try:
                world.apply(obj)
            except ApiException as exc:
                if exc.status not in (400, 422) or (message and message not in str(exc.body)):
                    problems.append(f"refused with {exc.status}: {exc.body}")
            else:
                problems.append("admitted by the API server")
            continue
        if obj["kind"] in KINDS and obj["kind"] != "HTTPRoute" and (errors := validate_custom(obj)):
            problems.append(f"{obj['kind']} {obj['metadata']['name']} is not admissible: {errors}")
            continue
        world.apply(obj)
    return problems


@pytest.fixture(name="world")
def world_fixture(kube: Any, cloudflare: Any) -> Iterator[World]:
    yield from World.opened(kube, cloudflare)


def test_every_bad_input_gets_its_reason_and_the_valid_ones_are_published(
        world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    entries = [load(path, world.values) for path in corpus_files()]
    for entry in entries:
        world.foreign(entry.cloudflare)
    world.base()
    world.start()

    # Holders first (a hostname held by another object, of this door or another), so that who holds is decided.
    for entry in entries:
        for obj in entry.before:
            world.apply(obj)
    holders = [Entry(entry.path, {"via": "published", "hostname": hostname_of(obj)}, [obj])
               for entry in entries for obj in entry.before if obj["kind"] in ("ChuteGateway", "HTTPRoute", "Pod")]
    converge(world, holders, "holders")

    failures = {entry.name: problems for entry in entries if (problems := admitted(world, entry))}
    applied = [entry for entry in entries if entry.via != "apiserver"]
    bypassed = [entry.bypassed() for entry in entries if entry.via == "apiserver" and entry.bypass]
    failures.update(converge(world, applied + bypassed, "the corpus", fail=False))
    assert not failures, "\n".join(f"{name}: {'; '.join(problems)}" for name, problems in sorted(failures.items()))

    # No hot loop: once the last verifications are done (a loop never gets there), a quiet period costs
    # (almost) nothing, whatever the number of bad objects. The ChuteConfig sweeps' first passes (FIRST_SWEEP after
    # each config appeared) are due work, not a loop: a period they may have fallen in, on a slow machine, is
    # measured once more, after them.
    quiet_calls, quiet_writes, began = quiet_period(world)
    if len(quiet_calls) > MAX_QUIET_CLOUDFLARE_CALLS and world.first_sweeps_due(began, began + QUIET_PERIOD):
        quiet_calls, quiet_writes, _ = quiet_period(world)
    assert len(quiet_calls) <= MAX_QUIET_CLOUDFLARE_CALLS, f"Cloudflare calls while quiet: {quiet_calls}"
    assert sum(quiet_writes.values()) <= MAX_QUIET_KUBE_WRITES, f"Kubernetes writes while quiet: {quiet_writes}"
    view = read(world)
    still = {entry.name: p for entry in applied + bypassed if (p := problems_of(entry, view))}
    assert not still, f"changed after convergence: {still}"

    # The HTTPRoute sweep's first pass comes at the start (it came 60 s after, when this test had mostly ended): a
    # restart has it judge the converged corpus, which changes nothing (no bad route published, nothing deleted).
    world.stop()
    passes = swept(world)
    world.start()
    wait_for("the HTTPRoute sweep's pass at the start", lambda: swept(world) > passes, timeout=CONVERGE_TIMEOUT)
    settle(world)
    view = read(world)
    still = {entry.name: p for entry in applied + bypassed if (p := problems_of(entry, view))}
    assert not still, f"changed by the restart and its sweep: {still}"

    assert world.operator is not None and world.operator.alive
    # kopf logs a refusal (kopf.TemporaryError/PermanentError) at ERROR without a traceback: that is expected.
    crashes = [f"{r.name}: {r.getMessage()}" for r in caplog.records
               if r.exc_info or "failed with an exception" in r.getMessage() or "Traceback" in r.getMessage()]
    assert not crashes, "\n".join(crashes)


def quiet_period(world: World) -> tuple[list[str], Counter[str], float]:
    """The Cloudflare calls and Kubernetes writes of a QUIET_PERIOD once the operator settled, and when it began."""
    settle(world)
    began, calls, writes = time.monotonic(), len(world.cf.requests), world.operator_writes()
    time.sleep(QUIET_PERIOD)  # a fixed interval on purpose: (almost) nothing may happen in it
    quiet_calls = [f"{r.method} {r.path} {r.query or ''}" for r in world.cf.requests[calls:]]
    return quiet_calls, world.operator_writes() - writes, began


def swept(world: World) -> int:
    """How many HTTPRoute sweep passes of a tenant naming no zone ran: one whole-account zone listing each."""
    return len([r for r in world.cf.requests if r.op == "zones.list" and "name" not in r.query and r.status == 200])


def settle(world: World, quiet: float = 1.0, timeout: float = 15.0) -> None:
    """Until no Cloudflare call has been made for `quiet` seconds; fails naming the last calls if never."""
    if not wait_quiet("Cloudflare calls", lambda: len(world.cf.requests), quiet, timeout, 0.1, required=False):
        last = [f"{r.method} {r.path}" for r in world.cf.requests[-10:]]
        raise AssertionError(f"the operator never stops calling Cloudflare (a hot loop?); last calls: {last}")


def hostname_of(obj: dict[str, Any]) -> str:
    if obj["kind"] == "Pod":
        return f"{obj['metadata']['labels']['opencode.ai/session-hash']}{sh.SUFFIX}.{sh.ZONE}"
    if obj["kind"] == "HTTPRoute":
        return str(obj["metadata"]["annotations"][CFZT + "hostname"]).lower().rstrip(".")
    hostname = str(obj["spec"]["hostname"])
    domain = "example.net" if obj["spec"].get("configRef") == "net" else "example.com"
    return hostname if "." in hostname else f"{hostname}.{domain}"


def converge(world: World, entries: list[Entry], what: str, fail: bool = True) -> dict[str, list[str]]:
    deadline = time.monotonic() + CONVERGE_TIMEOUT
    while True:
        world.play_deployment_controller()
        view = read(world)
        pending = {entry.name: problems for entry in entries if (problems := problems_of(entry, view))}
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    if pending and fail:
        raise AssertionError(f"{what} did not converge:\n" + "\n".join(
            f"{name}: {'; '.join(problems)}" for name, problems in sorted(pending.items())))
    return pending
