"""The session door watches its Pods itself, in WATCH_NAMESPACE only (a Role there), never cluster-wide, even
when the operator serves other front doors across the whole cluster."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import kubernetes
import pytest

from chutes.frontdoors.sessions.runner import SessionLoop
from chutes.sandbox.kubernetes import OPERATOR_TOKEN
from chutes.sandbox.runner import OperatorThread
from chutes.settings import load_settings
from harness import sessions as h
from harness.session_inputs import TIMING, config, pod
from harness.sessions import api_fixture, fast_timing_fixture  # noqa: F401  (pytest fixtures)
from harness.waiting import wait_for


def test_a_cluster_wide_operator_watches_session_pods_in_their_namespace_only(
        cloudflare: Any, kube: Any, api: Any) -> None:
    tunnel = h.create_tunnel(cloudflare)
    # With the chutes door the operator is cluster-wide.
    settings = load_settings({}, standalone=True, cloudflare_base_url=cloudflare.base_url, chutes=True,
                             httproutes=False, sessions=True, resync_interval=1.0)
    with OperatorThread(settings, h.session_env(cloudflare, tunnel), timeout=30):
        h.create_pod(api, h.pod("opencode-alice-main", "8b6cc2aa9a45"))
        wait_for("published", lambda: h.published(cloudflare, api, tunnel).sessions() == {"8b6cc2aa9a45"})
        # An IngressRoute changed by hand is patched back (at the next resync: no Pod event follows).
        routes = kubernetes.client.CustomObjectsApi(api)
        name = "opencode-session-8b6cc2aa9a45-oc-app"
        wanted = routes.get_namespaced_custom_object("traefik.io", "v1alpha1", h.NAMESPACE, "ingressroutes", name)
        routes.patch_namespaced_custom_object("traefik.io", "v1alpha1", h.NAMESPACE, "ingressroutes", name,
                                              {"spec": {"entryPoints": ["elsewhere"]}})
        wait_for("repaired", lambda: routes.get_namespaced_custom_object(
            "traefik.io", "v1alpha1", h.NAMESPACE, "ingressroutes", name)["spec"] == wanted["spec"])
        h.delete_pod(api, "opencode-alice-main")
        wait_for("unpublished", lambda: h.published(cloudflare, api, tunnel).sessions() == frozenset())
    pod_calls = {(c.verb, c.namespace) for c in kube.api_calls(OPERATOR_TOKEN) if c.resource == "pods"}
    assert ("watch", h.NAMESPACE) in pod_calls
    assert ("patch", h.NAMESPACE) in {(c.verb, c.namespace) for c in kube.api_calls(OPERATOR_TOKEN)
                                      if c.resource == "ingressroutes"}
    assert {namespace for _, namespace in pod_calls} == {h.NAMESPACE}  # never the whole cluster


def test_a_relisting_reports_the_pods_that_went_while_no_watch_was_open() -> None:
    loop = SessionLoop(config(), publisher=None, timing=TIMING)  # type: ignore[arg-type]
    loop.pods_listed([pod("a", "abc"), pod("b", "def")])
    assert loop.alive_hashes() == {"abc", "def"}
    loop.pods_listed([pod("b", "def")])  # "a" was deleted meanwhile
    assert loop.alive_hashes() == {"def"}
    assert "abc" in loop.recently_gone()



async def test_a_watch_too_old_to_resume_relists_and_the_pods_gone_meanwhile_are_removed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from kubernetes_asyncio.client.exceptions import ApiException

    from chutes import kube
    from chutes.frontdoors.sessions import podwatch

    listings = [([pod("a", "abc"), pod("b", "def")], "10"), ([pod("b", "def")], "20")]
    watched: list[str] = []
    relisted = asyncio.Event()

    async def list_pods_versioned(api: Any, namespace: str, selector: str) -> tuple[list[Any], str]:
        if len(listings) == 1:
            relisted.set()
        return listings.pop(0) if len(listings) > 1 else listings[0]

    async def watch_pods(api: Any, namespace: str, selector: str, version: str,
                         seconds: int) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        watched.append(version)
        if version == "10":
            yield "ADDED", {**pod("c", "cab"), "metadata": {**pod("c", "cab")["metadata"], "resourceVersion": "11"}}
            raise ApiException(status=410, reason="Expired")
        await asyncio.Event().wait()  # the second watch stays open
        yield "", {}

    monkeypatch.setattr(kube, "list_pods_versioned", list_pods_versioned)
    monkeypatch.setattr(kube, "watch_pods", watch_pods)
    loop = SessionLoop(config(), publisher=None, timing=TIMING)  # type: ignore[arg-type]
    watch = podwatch.PodWatch(None, loop).start()  # type: ignore[arg-type]
    try:
        await asyncio.wait_for(relisted.wait(), 5)
        for _ in range(50):
            if watched == ["10", "20"]:
                break
            await asyncio.sleep(0.01)
    finally:
        await watch.stop()
    assert watched == ["10", "20"]  # the 410 relisted at once, and the new watch starts from the new listing
    assert loop.alive_hashes() == {"def"}  # "abc" went while no watch was open; "cab" was not in the relisting
