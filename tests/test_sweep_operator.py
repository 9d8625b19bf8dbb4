"""The orphan sweep with the real operator against both emulators: a restart after objects were deleted and
Cloudflare edited while the operator was down, the deletion cap, and two installations (owner ids) sharing an
account, a zone and a tunnel.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from chutes import kube as chutes_kube
from chutes.cloudflare_core import CloudflareCore, DesiredRecord, RequestBudget
from chutes.frontdoors.gateways.orphans import NAMES as GATEWAY_NAMES
from chutes.sandbox.cloudflare import SandboxConfig, SandboxThread
from chutes.sandbox.kubernetes import KubeSandbox
from chutes.sweep import engine
from chutes.sweep.verdict import Wants
from harness.gateways import GROUP, NS, VERSION
from harness.httproutes import OPNS, by_thread
from harness.two_doors import Both
from harness.waiting import wait_for

EMAIL = "alice@example.org"


class Cluster(Both):
    """One cluster (Kubernetes emulator) with both front doors' worlds and an operator of its own (owner id
    `owner`, thread ``chutes-<owner>``), fast resyncs and sweeps; `token`: its Cloudflare API token."""

    def __init__(self, kube: Any, cloudflare: Any, owner: str = "default", tunnel: str | None = None,
                 token: str | None = None) -> None:
        super().__init__(kube, cloudflare, owner=owner, tunnel=tunnel)
        self.token = token or cloudflare.token

    def start(self, resync: float = 2.0, sweep: float = 1.0, *, name: str = "", **options: Any) -> None:
        super().start(resync, sweep, name=name or f"chutes-{self.owner}", **options)

    # -- what a user applies ---------------------------------------------------------------------
    def publish_gateway(self, name: str, hostname: str | None = None) -> dict[str, Any]:
        self.gw.gateway(name, hostname=hostname or name)
        return self.gw.ready_gateway(name)

    def setup(self) -> None:
        self.gw.token_secret(self.token)
        self.gw.config()
        wait_for("ChuteConfig ready", lambda: self.gw.get_config("default").get("status", {}).get("ready"))
        self.gw.service()
        self.rt.token_secret(self.token)
        self.rt.tenant()

    def publish_route(self, name: str, hostname: str, **annotations: str) -> None:
        self.rt.route(name, hostname, **annotations)
        self.rt.wait_ready(name)

    def force_delete_gateway(self, name: str) -> None:
        """Delete a gateway the way `kubectl patch ... finalizers: null` + delete does: no cleanup runs."""
        self.gw.custom.patch_namespaced_custom_object(GROUP, VERSION, NS, "chutegateways", name,
                                                      {"metadata": {"finalizers": None}})
        self.gw.custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "chutegateways", name)


def live_tunnels(cf: Any) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in cf.snapshot()["tunnels"].values() if not t["deleted_at"]}


def apps_named(cf: Any) -> dict[str, dict[str, Any]]:
    return {a["name"]: a for a in cf.snapshot()["access_apps"].values()}


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def drift_repairs(door: str) -> float:
    """Every drift repair of the door so far, whatever the object."""
    total = 0.0
    for metric in REGISTRY.collect():
        for sample in metric.samples:
            if sample.name == "chutes_drift_repairs_total" and sample.labels.get("front_door") == door:
                total += sample.value
    return total


@pytest.fixture()
def cluster(kube: Any, cloudflare: Any) -> Iterator[Cluster]:
    yield from Cluster.opened(kube, cloudflare)


# --- (a) stopped, edited behind its back, started again -----------------------------------------------


def test_restart_sweeps_orphans_and_repairs_drift_and_leaves_foreign_objects(cluster: Cluster) -> None:
    cf, gw, rt = cluster.cf, cluster.gw, cluster.rt
    cluster.start()
    cluster.setup()
    for name in ("blog", "shop", "gone"):
        cluster.publish_gateway(name)
    protected = {"access.enabled": "true", "access.allowEmails": EMAIL}
    cluster.publish_route("site", "site.example.com", **protected)
    cluster.publish_route("old", "old.example.com", **protected, **{"serviceToken.enabled": "true"})
    cluster.publish_route("lost", "lost.example.com", **protected)
    tunnels = live_tunnels(cf)
    gone_tunnel = tunnels[f"chute-{NS}-gone"]["id"]
    assert {"cfzt-old.example.com", "cfzt-lost.example.com", f"chute-{NS}-gone"} <= set(apps_named(cf))
    cluster.stop()

    # Foreign objects: a record without a marker, a rule in the shared tunnel, an Access application.
    sdk, zone, account = rt.sdk, rt.zone, rt.account
    foreign_record = sdk.dns.records.create(zone_id=zone, name="foreign.example.com", type="CNAME",
                                            content=f"{rt.tunnel}.cfargotunnel.com", proxied=True, ttl=1)
    config = rt.snapshot()["tunnel_configs"][rt.tunnel]["config"]
    config["ingress"].insert(0, {"hostname": "foreign.example.com", "service": "http://foreign:80"})
    sdk.zero_trust.tunnels.cloudflared.configurations.update(rt.tunnel, account_id=account, config=config)
    foreign_app = sdk.zero_trust.access.applications.create(account_id=account, type="self_hosted",
                                                            name="someone-elses", domain="foreign.example.com")
    assert foreign_record is not None and foreign_app is not None

    # While it is down: a gateway force-deleted, two routes deleted (one with its state), and drift.
    cluster.force_delete_gateway("gone")
    rt.delete_route("old")
    rt.delete_route("lost")
    rt.core.delete_namespaced_config_map("cfzt-apps-lost", OPNS)
    [blog_record] = gw.records("blog.example.com")
    sdk.dns.records.delete(blog_record["id"], zone_id=zone)
    [shop_record] = gw.records("shop.example.com")
    shop_content = shop_record["content"]
    sdk.dns.records.edit(shop_record["id"], zone_id=zone, name="shop.example.com", type="CNAME", ttl=1,
                         content="drifted.example.net", proxied=True, comment=shop_record["comment"])
    config = rt.snapshot()["tunnel_configs"][rt.tunnel]["config"]
    config["ingress"] = [r for r in config["ingress"] if r.get("hostname") != "site.example.com"]
    sdk.zero_trust.tunnels.cloudflared.configurations.update(rt.tunnel, account_id=account, config=config)
    blog_app = apps_named(cf)[f"chute-{NS}-blog"]
    sdk.zero_trust.access.applications.update(blog_app["id"], account_id=account, type="self_hosted",
                                              name=blog_app["name"], domain=blog_app["domain"], session_duration="1h",
                                              allowed_idps=blog_app["allowed_idps"])
    foreign_before = {"record": rt.records("foreign.example.com"), "rule": rt.rule("foreign.example.com"),
                      "app": [a for a in rt.apps("foreign.example.com")]}
    repairs_before = drift_repairs("chutes") + drift_repairs("httproutes")
    tunnels_removed = counter("chutes_orphans_removed_total", front_door="chutes", kind="tunnel")
    rules_removed = counter("chutes_orphans_removed_total", front_door="httproutes", kind="tunnel_rule")

    cluster.start()

    def swept() -> bool:
        names = {r["name"] for r in rt.records()}
        apps = apps_named(cf)
        return (
            not {"gone.example.com", "old.example.com", "lost.example.com"} & names
            and f"chute-{NS}-gone" not in live_tunnels(cf)
            and not {f"chute-{NS}-gone", "cfzt-old.example.com", "cfzt-lost.example.com"} & set(apps)
            and not rt.tokens("cfzt-old.example.com")
            and rt.rule("old.example.com") is None and rt.rule("lost.example.com") is None
        )

    wait_for("orphans swept", swept)

    def repaired() -> bool:
        blog = gw.records("blog.example.com")
        shop = gw.records("shop.example.com")
        app = apps_named(cf).get(f"chute-{NS}-blog") or {}
        return (
            len(blog) == 1 and blog[0]["content"] == f"{tunnels[f'chute-{NS}-blog']['id']}.cfargotunnel.com"
            and len(shop) == 1 and shop[0]["content"] == shop_content
            and rt.rule("site.example.com") is not None
            and app.get("session_duration") == "12h"
        )

    wait_for("drift repaired", repaired)
    # Nothing of the orphans' is left anywhere: policies went with their applications.
    app_ids = {a["id"] for a in cf.snapshot()["access_apps"].values()}
    assert all(p["app_id"] in app_ids for p in cf.snapshot()["access_policies"].values() if p.get("app_id"))
    assert gone_tunnel not in {t["id"] for t in live_tunnels(cf).values()}
    # Foreign objects untouched.
    assert {"record": rt.records("foreign.example.com"), "rule": rt.rule("foreign.example.com"),
            "app": list(rt.apps("foreign.example.com"))} == foreign_before
    # Counted.
    wait_for("the removals counted", lambda: (  # after each delete's response: the emulator shows it a moment before
        counter("chutes_orphans_removed_total", front_door="chutes", kind="tunnel") >= tunnels_removed + 1
        and counter("chutes_orphans_removed_total", front_door="httproutes", kind="tunnel_rule") >= rules_removed + 1))
    wait_for("drift repairs counted", lambda: drift_repairs("chutes") + drift_repairs("httproutes")
             >= repairs_before + 4)


# --- (b) the deletion cap ---------------------------------------------------------------------------


class NoClaims:
    """An empty ledger: the records below are judged by their markers alone."""

    async def list(self, *, kind: Any = None, source: str | None = None, source_kind: str | None = None) -> list[Any]:
        return []

    async def release(self, claim: Any) -> None:
        raise AssertionError("nothing to release")


async def test_a_pass_deletes_at_most_the_cap_and_the_rest_at_the_next_pass(sandbox: Any) -> None:
    async with CloudflareCore(sandbox.token, sandbox.base_url, budget=RequestBudget(), backoff=0.01) as core:
        zone, account = sandbox.zone_id("example.com"), sandbox.account_id
        for index in range(5):
            await core.ensure_dns_record(zone, DesiredRecord(
                f"ghost{index}.example.com", "CNAME", "t.cfargotunnel.com", source=f"ChuteGateway/{NS}/ghost{index}"))
        await core.ensure_dns_record(zone, DesiredRecord("kept.example.com", "CNAME", "t.cfargotunnel.com",
                                                         source=f"ChuteGateway/{NS}/kept"))
        scope = engine.Scope(GATEWAY_NAMES, account, (zone,))

        async def claims() -> Wants:
            return Wants(sources={f"ChuteGateway/{NS}/kept": frozenset({"kept.example.com"})})

        async def ours() -> list[str]:
            return sorted(r.name for r in await core.list_owned_dns_records(zone))

        passes = [await engine.sweep(core, scope, claims, cap=2, ledger=NoClaims()) for _ in range(3)]
        assert [len(p.deleted) for p in passes] == [2, 2, 1]
        assert [len(p.deferred) for p in passes] == [3, 1, 0]
        assert [p.capped for p in passes] == [True, True, False]
        assert await ours() == ["kept.example.com"]

        await core.ensure_dns_record(zone, DesiredRecord("ghost9.example.com", "CNAME", "t.cfargotunnel.com",
                                                         source=f"ChuteGateway/{NS}/ghost9"))
        report_only = await engine.sweep(core, scope, claims, cap=0, ledger=NoClaims())
        assert report_only.deleted == [] and [d.name for d in report_only.deferred] == ["ghost9.example.com"]
        assert "report only" in report_only.cap_message()
        assert await ours() == ["ghost9.example.com", "kept.example.com"]


async def test_a_pass_is_skipped_when_the_desired_state_cannot_be_loaded(sandbox: Any) -> None:
    async with CloudflareCore(sandbox.token, sandbox.base_url, budget=RequestBudget(), backoff=0.01) as core:
        zone = sandbox.zone_id("example.com")
        await core.ensure_dns_record(zone, DesiredRecord("ghost.example.com", "CNAME", "t.cfargotunnel.com",
                                                         source=f"ChuteGateway/{NS}/ghost"))

        async def broken() -> Wants:
            raise RuntimeError("the API server went away")

        report = await engine.sweep(core, engine.Scope(GATEWAY_NAMES, sandbox.account_id, (zone,)), broken, cap=50,
                                    ledger=NoClaims())
        assert report.skipped is not None and "went away" in report.skipped and report.deleted == []
        assert [r.name for r in await core.list_owned_dns_records(zone)] == ["ghost.example.com"]


def test_the_operator_warns_on_the_scope_object_when_the_cap_is_hit(cluster: Cluster) -> None:
    cf = cluster.cf

    async def ghosts() -> None:
        async with CloudflareCore(cf.token, cf.base_url) as core:
            for index in range(5):
                await core.ensure_dns_record(cluster.gw.zone, DesiredRecord(
                    f"ghost{index}.example.com", "CNAME", "t.cfargotunnel.com", source=f"ChuteGateway/{NS}/g{index}"))

    asyncio.run(ghosts())
    cluster.gw.token_secret()
    cluster.gw.config()
    cluster.start(sweep_max_deletions=2)
    wait_for("every ghost record swept", lambda: not cluster.gw.records())

    def warnings() -> list[str]:
        return [m for t, r, m in cluster.gw.events("default", "default") if (t, r) == ("Warning", "SweepCapReached")]

    found = wait_for("SweepCapReached Warnings", lambda: len(warnings()) >= 2 and warnings())
    assert any("deleted 2 orphaned" in m and "3 more wait" in m for m in found), found
    assert any("deleted 2 orphaned" in m and "1 more wait" in m for m in found), found
    def removed_events() -> list[str]:
        return [m for _, r, m in cluster.gw.events("default", "default") if r == "OrphansRemoved"]

    removed = wait_for("three OrphansRemoved Events", lambda: len(removed_events()) >= 3 and removed_events())
    assert len(removed) == 3 and any("ghost0.example.com" in m for m in removed), removed


# --- (c) two owner ids side by side ------------------------------------------------------------------


def owned_by(snapshot: dict[str, Any], owner: str, zone: str, tunnel: str) -> dict[str, Any]:
    """Everything of `owner` in the emulator: its marked records, its tunnels, apps (with their policies) and
    tokens by owner-qualified name, and its rules in the shared tunnel."""
    suffix = f"@{owner}"
    records = sorted((r["name"], r["type"], r["content"], r["comment"]) for r in snapshot["dns_records"][zone]
                     if f"owner={owner} " in (r.get("comment") or ""))
    tunnels = sorted((t["id"], t["name"]) for t in snapshot["tunnels"].values()
                     if t["name"].endswith(suffix) and not t["deleted_at"])
    apps = {a["id"]: a for a in snapshot["access_apps"].values() if a["name"].endswith(suffix)}
    policies = sorted(p["id"] for p in snapshot["access_policies"].values() if p.get("app_id") in apps)
    tokens = sorted((t["id"], t["name"]) for t in snapshot["service_tokens"].values() if t["name"].endswith(suffix))
    hostnames = {r[0] for r in records}
    ingress = (snapshot["tunnel_configs"].get(tunnel) or {}).get("config", {}).get("ingress", [])
    rules = [r for r in ingress if r.get("hostname") in hostnames]
    return {"records": records, "tunnels": tunnels, "apps": sorted((a["id"], a["name"], a["domain"],
            a["session_duration"]) for a in apps.values()), "policies": policies, "tokens": tokens, "rules": rules}


def swept_by(cf: Any, token_name: str) -> int:
    """How many whole-account zone listings (one per HTTPRoute sweep pass of a tenant naming no zone) a token
    made."""
    return len([r for r in cf.requests if r.op == "zones.list" and "name" not in r.query
                and r.token_name == token_name and r.status == 200])


def test_two_owner_ids_on_one_account_zone_and_tunnel_never_touch_each_other(
        kube: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    seed = SandboxConfig.from_dict({"tokens": [{"name": "blue"}, {"name": "green"}]})
    with (SandboxThread(seed) as cf, KubeSandbox(namespaces=["default", "ns1"]) as other,
          contextlib.ExitStack() as stack):
        monkeypatch.setattr(chutes_kube, "load_configuration", by_thread(
            {"chutes-blue": kube.operator_kubeconfig, "chutes-green": other.operator_kubeconfig}))
        blue = Cluster(kube, cf, "blue", token=cf.token_named("blue"))
        stack.callback(blue.close)
        green = Cluster(other, cf, "green", tunnel=blue.rt.tunnel, token=cf.token_named("green"))
        stack.callback(green.close)
        zone, tunnel = blue.gw.zone, blue.rt.tunnel
        for world, colour in ((blue, "blue"), (green, "green")):
            world.start()
            world.setup()
            world.publish_gateway("blog", f"blog-{colour}")  # same namespace/name in both clusters
            world.publish_route("site", f"site-{colour}.example.com", **{
                "access.enabled": "true", "access.allowEmails": EMAIL, "serviceToken.enabled": "true"})
        tunnels = live_tunnels(cf)
        assert {f"chute-{NS}-blog@blue", f"chute-{NS}-blog@green"} <= set(tunnels)
        assert {"cfzt-site-blue.example.com@blue", "cfzt-site-green.example.com@green"} <= set(apps_named(cf))

        # Both sweep a few times with everything published: nothing of anyone's changes.
        green_objects = owned_by(cf.snapshot(), "green", zone, tunnel)
        blue_objects = owned_by(cf.snapshot(), "blue", zone, tunnel)
        for objects in (green_objects, blue_objects):
            assert len(objects["records"]) == 2 and len(objects["rules"]) == 1 and len(objects["tunnels"]) == 1
            assert len(objects["apps"]) == 2 and len(objects["policies"]) == 2 and len(objects["tokens"]) == 1
        marks = {"blue": swept_by(cf, "blue"), "green": swept_by(cf, "green")}
        wait_for("two sweep passes of each", lambda: all(swept_by(cf, n) >= marks[n] + 2 for n in marks))
        assert owned_by(cf.snapshot(), "green", zone, tunnel) == green_objects
        assert owned_by(cf.snapshot(), "blue", zone, tunnel) == blue_objects

        # Blue's cluster deletes its objects; blue cleans up, then sweeps on.
        blue.gw.custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "chutegateways", "blog")
        blue.rt.delete_route("site")
        wait_for("blue's objects gone", lambda: owned_by(cf.snapshot(), "blue", zone, tunnel) == {
            "records": [], "tunnels": [], "apps": [], "policies": [], "tokens": [], "rules": []})
        marks = {"blue": swept_by(cf, "blue"), "green": swept_by(cf, "green")}
        wait_for("two more sweep passes of each", lambda: all(swept_by(cf, n) >= marks[n] + 2 for n in marks))
        assert owned_by(cf.snapshot(), "green", zone, tunnel) == green_objects
        green.gw.get_gateway("blog")
        assert green.rt.ready("site").get("status") == "True"
        assert any(r.get("hostname") == "site-green.example.com" for r in green.rt.ingress(tunnel))
