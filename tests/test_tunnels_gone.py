"""A rule write that finds its tunnel gone (found by the soak, issue 16 §1: a Tunnel deleted and restored while an
annotated Service was being published on it; the Service's pass had read the old tunnel's id). The tunnel is not
ready, which the next pass, seconds later, finds out again: TunnelNotReady, soon retried, never CloudflareRejected
(a 300 s wait, and a reason the Tunnel door's resync leaves alone as if only a spec change could fix it)."""

from __future__ import annotations

import cloudflare

from harness.tunnels import NS, World, world_fixture  # noqa: F401
from harness.waiting import wait_for

CR = "tunnels.networking.cfargotunnel.com/"


def test_a_service_whose_tunnel_vanished_is_told_the_tunnel_is_not_ready(world: World) -> None:
    world.api_secret()
    world.tunnel()
    tunnel_id = str(world.ready_tunnel()["status"]["tunnelId"])
    world.service("admin", 80)  # a plain Service first
    world.core.patch_namespaced_service("admin", NS, {"metadata": {"annotations": {CR + "cr": "web"}}})
    wait_for("published", lambda: len(world.records("admin.example.com")) == 1)

    with cloudflare.Cloudflare(api_token=world.cf.token, base_url=world.cf.base_url, max_retries=0) as sdk:
        sdk.zero_trust.tunnels.cloudflared.delete(tunnel_id, account_id=world.account)  # behind our back
    world.core.patch_namespaced_service("admin", NS, {"metadata": {"annotations": {CR + "fqdn": "adm.example.com"}}})

    warnings = wait_for("a Warning", lambda: [e for e in world.events("admin", NS) if e[0] == "Warning"])
    assert [reason for _, reason, _ in warnings] == ["TunnelNotReady"], warnings
