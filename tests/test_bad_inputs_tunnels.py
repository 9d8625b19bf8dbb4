"""The bad-input corpus of the Tunnel door (issue 16 §3; ``tests/data/bad-inputs/tunnels/``, the format of
``tests/data/bad-inputs/README.md``): Tunnels, ClusterTunnels, TunnelBindings and annotated Services, and
hostnames asked for across bindings and across doors (a ChuteGateway), all applied at once with valid objects
alongside, to one operator serving the Tunnel and ChuteGateway doors against both emulators.

Asserted per file (a failure names it): the bad object gets the reason the file expects (its ``Ready`` condition
and a Warning Event; a Warning Event on an annotated Service, which has no status of ours; or a refusal by our
CRD's schema, after which the object is applied anyway, as if admission had been bypassed, and must get the file's
``bypass`` reason), in messages that do not echo a huge value whole, at most 3 Warning Events; nothing is
published for it (no DNS record marked for it, no rule at its hostname, no tunnel and no cloudflared for a bad
Tunnel); each valid object is published. For the whole run: the operator thread is alive, no handler crashed, the
Cloudflare calls stay bounded per object, and a quiet period after convergence costs (almost) nothing."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import cloudflare as cf_sdk
import pytest

from chutes.cloudflare_core.ownership import marks
from harness.corpus import (
    CORPUS,
    MAX_WARNINGS_PER_OBJECT,
    Entry,
    apply_manifest,
    load,
    operator_writes,
    play_deployment_controller,
)
from harness.manifests import validate_custom
from harness.tunnels import OPERATOR_NS, World
from harness.waiting import wait_quiet

TUNNELS = CORPUS / "tunnels"
GROUP = "networking.cfargotunnel.com"
EMAIL = "admin@example.org"
GLOBAL_KEY = "5ca1ab1e" * 4 + "12345"  # 37 hex digits: the emulator's one global API key
CONVERGE_TIMEOUT = 90.0
QUIET_PERIOD = 3.0
MAX_QUIET_CLOUDFLARE_CALLS = 4  # over QUIET_PERIOD, for every object together (no resync is due)
MAX_QUIET_KUBE_WRITES = 4
MAX_MESSAGE = 1024  # characters of a condition or Warning message: a huge value is never echoed whole
MAX_CALLS_PER_FILE = 3  # Cloudflare calls of the whole run, per corpus file (measured: 73 for 63 files)

# kind -> (group, version, plural, namespaced)
KINDS: dict[str, tuple[str, str, str, bool]] = {
    "Tunnel": (GROUP, "v1alpha2", "tunnels", True),
    "ClusterTunnel": (GROUP, "v1alpha2", "clustertunnels", False),
    "TunnelBinding": (GROUP, "v1alpha1", "tunnelbindings", True),
    "ChuteGateway": ("chutes.troubleshat.com", "v1alpha1", "chutegateways", True),
    "ChuteConfig": ("chutes.troubleshat.com", "v1alpha1", "chuteconfigs", False),
}


@pytest.fixture()
def cloudflare() -> Iterator[Any]:
    """The Cloudflare emulator with its token and one global API key (overrides the plugin's)."""
    from chutes.sandbox.cloudflare import SandboxConfig, SandboxThread

    seed = {"global_keys": [{"name": "legacy", "email": EMAIL, "key": GLOBAL_KEY}]}
    with SandboxThread(SandboxConfig.from_dict(seed)) as sandbox:
        yield sandbox


class CorpusWorld(World):
    """The tunnels world with the ChuteGateway door on too (hostnames across doors), and what the corpus needs."""

    def __init__(self, kube: Any, cloudflare: Any) -> None:
        super().__init__(kube, cloudflare)
        self.values = {"ACCOUNT": cloudflare.account_id, "TOKEN": cloudflare.token, "GLOBAL_KEY": GLOBAL_KEY,
                       "EMAIL": EMAIL}

    def foreign(self, spec: dict[str, Any]) -> None:
        with cf_sdk.Cloudflare(api_token=self.cf.token, base_url=self.cf.base_url, max_retries=0) as sdk:
            for record in spec.get("dns", []):
                sdk.dns.records.create(zone_id=self.cf.zone_id(record["zone"]), name=record["name"],  # type: ignore[call-overload]
                                       type=record["type"], content=record["content"], ttl=1, comment="by hand")

    def apply(self, obj: dict[str, Any]) -> None:
        apply_manifest(self, obj, KINDS)

    def base(self) -> None:
        """The credentials, a Tunnel ``home`` in tun-bad and tun-ok, Services, the gateway door's ChuteConfig."""
        for namespace in (OPERATOR_NS, "tun-bad", "tun-ok"):
            self.api_secret(namespace)
        for namespace in ("tun-bad", "tun-ok"):
            self.tunnel("home", namespace, newTunnel={"name": f"{namespace}-home"})
            self.service("web", 80, namespace)
        self.service("portless", namespace="tun-bad", ports=[])
        self.service("dns", 53, "tun-bad", protocol="UDP")
        self.service("web", 8080, "gw-x")
        self.namespace("chute-system")
        self.core.create_namespaced_secret("chute-system", {"metadata": {"name": "cf"},
                                                            "stringData": {"apiToken": self.cf.token}})
        self.apply({"apiVersion": "chutes.troubleshat.com/v1alpha1", "kind": "ChuteConfig",
                    "metadata": {"name": "default"},
                    "spec": {"apiTokenSecretRef": {"name": "cf", "namespace": "chute-system", "key": "apiToken"},
                             "accountId": self.account, "zoneId": self.zone, "domain": "example.com"}})

    def start_all(self) -> None:
        self.run_operator(timeout=30, chutes=True, httproutes=False, sessions=False)

    def play_deployment_controller(self) -> None:
        play_deployment_controller(self.apps)

    def operator_writes(self) -> Counter[str]:
        return operator_writes(self.kube)


def key_of(kind: str, namespace: str | None, name: str) -> tuple[str, str, str]:
    return kind, namespace or "" if KINDS.get(kind, ("", "", "", True))[3] else "", name


def obj_key(obj: dict[str, Any]) -> tuple[str, str, str]:
    return key_of(obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"])


class View:
    """One reading of both emulators."""

    def __init__(self, world: CorpusWorld) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        for kind, (group, version, plural, _) in KINDS.items():
            for item in world.custom.list_cluster_custom_object(group, version, plural)["items"]:
                self.objects[key_of(kind, item["metadata"].get("namespace"), item["metadata"]["name"])] = item
        self.warnings: dict[tuple[str, str, str], list[tuple[str, str]]] = {}
        for event in world.core.list_event_for_all_namespaces().items:
            if event.type == "Warning":
                involved = event.involved_object
                self.warnings.setdefault(key_of(involved.kind, involved.namespace, involved.name), []).append(
                    (event.reason, event.message))
        state = world.cf.snapshot()
        self.records = [r for zone in state["dns_records"].values() for r in zone]
        self.rules = {str(rule.get("hostname")) for config in state["tunnel_configs"].values()
                      for rule in ((config or {}).get("config") or {}).get("ingress", []) if rule.get("hostname")}
        self.tunnels = {t["name"] for t in state["tunnels"].values() if not t["deleted_at"]}
        self.deployments = {(d.metadata.namespace, d.metadata.name)
                            for d in world.apps.list_deployment_for_all_namespaces().items}

    def ready(self, obj: dict[str, Any]) -> dict[str, Any]:
        found = self.objects.get(obj_key(obj)) or {}
        return next((c for c in (found.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), {})

    def marked(self, source: str) -> list[dict[str, Any]]:
        return [r for r in self.records if marks(r.get("comment"), "default", source)]


def source_of(obj: dict[str, Any]) -> str | None:
    kind, namespace, name = obj_key(obj)
    return f"{kind}/{namespace}/{name}" if kind in ("TunnelBinding", "Service", "ChuteGateway") else None


def fqdns_of(obj: dict[str, Any]) -> list[str]:
    """The hostnames a binding or an annotated Service asks for, as they would be published."""
    if obj["kind"] == "TunnelBinding" and isinstance(obj.get("subjects"), list):
        return [str((s.get("spec") or {}).get("fqdn") or "").lower().rstrip(".") for s in obj["subjects"]]
    if obj["kind"] == "Service":
        return [str(obj["metadata"]["annotations"].get("tunnels.networking.cfargotunnel.com/fqdn") or "").lower()
                .rstrip(".")]
    return []


def problems_of(entry: Entry, view: View) -> list[str]:
    """What is not (yet) as the file expects; empty when it is."""
    subject, expect = entry.subject, entry.expect
    reason, message = expect.get("reason"), expect.get("message")
    source = source_of(subject)
    problems: list[str] = []
    if entry.via == "published":
        if subject["kind"] in KINDS and view.ready(subject).get("status") != "True":
            problems.append(f"not Ready: {view.ready(subject)}")
        hostname = expect.get("hostname")
        if hostname and source and not any(r["name"] == hostname for r in view.marked(source)):
            problems.append(f"no record of ours at {hostname}")
        if hostname and subject["kind"] != "ChuteGateway" and hostname not in view.rules:
            problems.append(f"no rule for {hostname}")
        return problems
    if entry.via == "condition":
        ready = view.ready(subject)
        if (ready.get("status"), ready.get("reason")) != ("False", reason):
            problems.append(f"Ready is {ready.get('status')}/{ready.get('reason')}, expected False/{reason}: "
                            f"{ready.get('message')}")
        elif message and message not in ready.get("message", ""):
            problems.append(f"condition message {ready.get('message')!r} does not say {message!r}")
    warnings = view.warnings.get(obj_key(subject), [])
    if not any(r == reason and (not message or message in m) for r, m in warnings):
        problems.append(f"no Warning Event {reason}{' saying ' + repr(message) if message else ''}; got {warnings}")
    if len(warnings) > MAX_WARNINGS_PER_OBJECT:
        problems.append(f"{len(warnings)} Warning Events: {warnings}")
    if source and (records := view.marked(source)):
        problems.append(f"published anyway: {[(r['type'], r['name']) for r in records]}")
    if reason != "HostnameConflict" and (routed := [h for h in fqdns_of(subject) if h in view.rules]):
        problems.append(f"routed anyway: {routed}")  # (a conflict's hostname is routed: for its holder)
    if long := [m for m in [view.ready(subject).get("message") or "", *(m for _, m in warnings)]
                if len(m) > MAX_MESSAGE]:
        problems.append(f"a message of {len(long[0])} characters (a value echoed whole?): {long[0][:200]}")
    if subject["kind"] in ("Tunnel", "ClusterTunnel"):
        name = str((subject["spec"].get("newTunnel") or {}).get("name") or "")
        if name and name in view.tunnels:
            problems.append(f"its tunnel {name} was created")
        base = f"clustertunnel-{subject['metadata']['name']}" if subject["kind"] == "ClusterTunnel" else \
            subject["metadata"]["name"]
        namespace = subject["metadata"].get("namespace") or OPERATOR_NS
        if (namespace, f"{base}-cloudflared") in view.deployments:
            problems.append("its cloudflared was deployed")
    return problems


def admitted(world: CorpusWorld, entry: Entry) -> list[str]:
    """Apply the file's objects (the ones it needs first, its subject last); the subject of an ``apiserver`` file
    must be refused by our CRD's schema, and is then applied anyway (as if admission had been bypassed)."""
    problems: list[str] = []
    for obj in entry.objects[1:]:
        world.apply(obj)
    if entry.via == "apiserver":
        errors = validate_custom(entry.subject)
        message = entry.expect.get("message", "")
        if not errors:
            problems.append("admitted by the CRD schema")
        elif message and not any(message in error for error in errors):
            problems.append(f"refused for another reason: {errors}")
    elif entry.subject["kind"] in KINDS and (errors := validate_custom(entry.subject)):
        problems.append(f"not admissible: {errors}")
    world.apply(entry.subject)
    return problems


def converge(world: CorpusWorld, entries: list[Entry]) -> dict[str, list[str]]:
    deadline = time.monotonic() + CONVERGE_TIMEOUT
    while True:
        world.play_deployment_controller()
        view = View(world)
        pending = {entry.name: problems for entry in entries if (problems := problems_of(entry, view))}
        if not pending or time.monotonic() > deadline:
            return pending
        time.sleep(0.3)


def quiet_period(world: CorpusWorld) -> tuple[list[str], Counter[str]]:
    if not wait_quiet("Cloudflare calls", lambda: len(world.cf.requests), 1.0, 15.0, 0.1, required=False):
        last = [f"{r.method} {r.path}" for r in world.cf.requests[-10:]]
        raise AssertionError(f"the operator never stops calling Cloudflare (a hot loop?); last calls: {last}")
    calls, writes = len(world.cf.requests), world.operator_writes()
    time.sleep(QUIET_PERIOD)  # a fixed interval on purpose: (almost) nothing may happen in it
    return [f"{r.method} {r.path}" for r in world.cf.requests[calls:]], world.operator_writes() - writes


@pytest.fixture(name="world")
def world_fixture(kube: Any, cloudflare: Any) -> Iterator[CorpusWorld]:
    yield from CorpusWorld.opened(kube, cloudflare)


def test_every_bad_tunnel_input_gets_its_reason_and_the_valid_ones_are_published(
        world: CorpusWorld, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    entries = [load(path, world.values) for path in sorted(TUNNELS.glob("*.yaml"))]
    assert len(entries) >= 25
    for entry in entries:
        world.foreign(entry.cloudflare)
    world.base()
    world.start_all()
    bases = [Entry(TUNNELS, {"via": "published"}, [world.get_tunnel("home", ns)]) for ns in ("tun-bad", "tun-ok")]
    assert not converge(world, bases), "the Tunnels home were not served"

    # Holders first (a hostname held by another binding, or by another door), so that who holds is decided.
    holders = []
    for entry in entries:
        for obj in entry.before:
            world.apply(obj)
            hostname = fqdns_of(obj)[0] if obj["kind"] == "TunnelBinding" else f"{obj['spec']['hostname']}.example.com"
            holders.append(Entry(entry.path, {"via": "published", "hostname": hostname}, [obj]))
    assert not (pending := converge(world, holders)), f"the holders were not published: {pending}"

    failures = {entry.name: problems for entry in entries if (problems := admitted(world, entry))}
    judged = [entry for entry in entries if entry.via != "apiserver"]
    judged += [entry.bypassed() for entry in entries if entry.via == "apiserver" and entry.bypass]
    failures.update(converge(world, judged))
    assert not failures, "\n".join(f"{name}: {'; '.join(problems)}" for name, problems in sorted(failures.items()))

    # No hot loop: a quiet period costs (almost) nothing, and the whole run stayed within a few calls per object.
    quiet_calls, quiet_writes = quiet_period(world)
    assert len(quiet_calls) <= MAX_QUIET_CLOUDFLARE_CALLS, f"Cloudflare calls while quiet: {quiet_calls}"
    assert sum(quiet_writes.values()) <= MAX_QUIET_KUBE_WRITES, f"Kubernetes writes while quiet: {quiet_writes}"
    calls = Counter(r.op for r in world.cf.requests)
    assert sum(calls.values()) <= MAX_CALLS_PER_FILE * len(entries), f"{sum(calls.values())} calls: {calls}"
    view = View(world)
    still = {entry.name: p for entry in judged if (p := problems_of(entry, view))}
    assert not still, f"changed after convergence: {still}"

    assert world.operator is not None and world.operator.alive
    crashes = [f"{r.name}: {r.getMessage()}" for r in caplog.records
               if r.exc_info or "failed with an exception" in r.getMessage() or "Traceback" in r.getMessage()]
    assert not crashes, "\n".join(crashes)


def test_the_corpus_covers_the_issues_bad_inputs() -> None:
    """Every bad input the Tunnel door's issue lists has a file, and every file is well formed."""
    entries = [load(path, {}) for path in sorted(TUNNELS.glob("*.yaml"))]
    reasons = Counter(entry.expect.get("reason") or entry.bypass.get("reason") for entry in entries)
    kinds = Counter(entry.subject["kind"] for entry in entries)
    assert set(kinds) == {"Tunnel", "ClusterTunnel", "TunnelBinding", "Service", "ChuteGateway"}, kinds
    assert {"InvalidSpec", "SecretNotFound", "SecretKeyMissing", "CredentialsInvalid", "TunnelNotFound",
            "ServiceNotFound", "HostnameOutsideZone", "HostnameConflict"} <= set(reasons), reasons
    for entry in entries:
        assert entry.path.read_text(encoding="utf-8").startswith("# "), entry.name
        assert entry.via in ("condition", "event", "apiserver", "published"), entry.name
        assert entry.via != "apiserver" or entry.bypass.get("reason"), entry.name


def test_a_file_names_objects_once() -> None:
    seen: dict[tuple[str, str, str], str] = {}
    for path in sorted(TUNNELS.glob("*.yaml")):
        entry = load(path, {})
        for obj in [*entry.objects, *entry.before]:
            key = obj_key(obj)
            assert key not in seen, f"{entry.name}: {key} is also in {seen[key]}"
            seen[key] = entry.name
