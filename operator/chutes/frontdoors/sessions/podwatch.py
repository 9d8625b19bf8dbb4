"""The session Pods of ``WATCH_NAMESPACE``, watched by the door itself (list, then watch from the listing's
resourceVersion), not through kopf: kopf watches a resource in every namespace the operator serves (the whole
cluster in a cluster-wide install), and the session door needs one namespace, so its RBAC is a Role there.

Every listing and event goes to :meth:`SessionLoop.pod_event`; a relisting also reports the Pods that went
meanwhile. A watch too old to resume (410) is relisted at once, any other failure after a backoff: the loop's
periodic passes list the Pods themselves, so a gap in the watch only delays a pass.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import ClientError
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from chutes import kube
from chutes.background import BackgroundTask, InBackground
from chutes.frontdoors.retries import backoff
from chutes.frontdoors.sessions.runner import SessionLoop

logger = logging.getLogger(__name__)

class PodWatch(InBackground):
    def __init__(self, api: client.ApiClient, loop: SessionLoop, *, timeout_seconds: int = 240) -> None:
        self.api, self.loop = api, loop
        self.timeout_seconds = timeout_seconds
        self._background = BackgroundTask("session-pod-watch", self._run)
        self.listings = 0

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                await self._list_and_watch()
            except asyncio.CancelledError:
                raise
            except ApiException as error:
                if error.status == 410:  # too old to resume: list again at once
                    failures = 0
                    continue
                failures += 1
                logger.warning("Watching session Pods in %s failed (HTTP %s %s)", self.loop.config.watch_namespace,
                               error.status, error.reason)
            except (ClientError, TimeoutError, OSError, ValueError) as error:
                failures += 1
                logger.warning("Watching session Pods in %s failed: %s", self.loop.config.watch_namespace, error)
            await asyncio.sleep(backoff(failures) if failures else 0)

    async def _list_and_watch(self) -> None:
        config = self.loop.config
        pods, version = await kube.list_pods_versioned(self.api, config.watch_namespace, config.pod_selector.text)
        self.loop.pods_listed(pods)
        self.listings += 1
        while True:  # the server ends each watch after timeout_seconds: resume where it stopped
            async for type_, pod in kube.watch_pods(self.api, config.watch_namespace, config.pod_selector.text,
                                                    version, self.timeout_seconds):
                version = str((pod.get("metadata") or {}).get("resourceVersion") or version)
                if type_ != "BOOKMARK":
                    self.loop.pod_event(type_, pod)
