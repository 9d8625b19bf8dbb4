"""A Tunnel deleted and made again (found by the soak, issue 16 §1): its deletion takes the rules of what routed into
its tunnel with it, and the Tunnel made again gets a new tunnel. An annotated Service has no timer of its own (no
finalizer either): the Tunnel's resync publishes it again into the new tunnel, as a TunnelBinding's resync does."""

from __future__ import annotations

from typing import Any

from harness.tunnels import GROUP, NS, World
from harness.waiting import wait_for

CR = "tunnels.networking.cfargotunnel.com/"


def test_an_annotated_service_is_routed_again_into_its_tunnel_made_again(kube: Any, cloudflare: Any) -> None:
    world = World(kube, cloudflare)
    try:
        world.start(resync_interval=1.0)
        world.api_secret()
        world.tunnel()
        old = str(world.ready_tunnel()["status"]["tunnelId"])
        world.core.create_namespaced_service(NS, {"metadata": {"name": "admin", "annotations": {CR + "cr": "web"}},
                                                  "spec": {"ports": [{"port": 80}], "selector": {"app": "admin"}}})
        wait_for("routed", lambda: [r["hostname"] for r in world.ingress(old) if r.get("hostname")] == [
            "admin.example.com"])

        world.custom.delete_namespaced_custom_object(GROUP, "v1alpha2", NS, "tunnels", "web")
        wait_for("the Tunnel gone", lambda: not world.custom.list_namespaced_custom_object(
            GROUP, "v1alpha2", NS, "tunnels")["items"])
        world.tunnel()
        new = wait_for("a new tunnel", lambda: (t := world.get_tunnel().get("status", {}).get("tunnelId")) != old and t)

        wait_for("routed into the new tunnel", lambda: [r["hostname"] for r in world.ingress(new)
                                                        if r.get("hostname")] == ["admin.example.com"], timeout=15)
        wait_for("its CNAME on the new tunnel", lambda: [r["content"] for r in world.records("admin.example.com")]
                 == [f"{new}.cfargotunnel.com"])
    finally:
        world.close()
