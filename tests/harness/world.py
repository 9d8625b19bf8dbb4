"""What every world a test drives has: both emulators, the user's Kubernetes clients on them (the test's own
token, not the operator's: the chart's RBAC check counts the operator's calls only), namespaces made on demand,
and the operator running in-process (``chutes run`` as its flags build its settings) until the world closes.

The front doors' worlds (:mod:`harness.gateways`, :mod:`harness.httproutes`, :mod:`harness.two_doors`) add
the objects of their door and the readers of what the operator made of them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Self

import kubernetes
from kubernetes.client.exceptions import ApiException

from chutes.sandbox.runner import OperatorThread
from chutes.settings import load_settings

STOP_GRACE = 0.2  # s (2 by default): a stop while an object's handler waits to retry need not wait 2 s


def user_client(kubeconfig: str) -> kubernetes.client.ApiClient:
    """A Kubernetes client with the user's token of `kubeconfig`. The token is static: the client does not read
    the kubeconfig's user again before each request (the kubernetes package's refresh hook, which also looks the
    proxy settings up in the environment: 160 µs of CPU a request, the tests' polls make tens of thousands)."""
    client: kubernetes.client.ApiClient = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=kubeconfig)
    client.configuration.refresh_api_key_hook = None
    return client


class Opened:
    """What a world closed by `close()` gets: `opened`, the body of a fixture."""

    def close(self) -> None:
        raise NotImplementedError

    @classmethod
    def opened(cls, *args: Any, **kwargs: Any) -> Iterator[Self]:
        """A world for one test, closed after it (the body of a fixture: ``yield from World.opened(kube, cf)``)."""
        world = cls(*args, **kwargs)
        try:
            yield world
        finally:
            world.close()


class BaseWorld(Opened):
    """Both emulators (``kube``: a KubeSandbox, ``cf``: a Cloudflare SandboxThread, None for a world that needs
    no Cloudflare), the user's clients (core and custom objects; a world with Deployments adds ``apps``), and the
    operator once started."""

    def __init__(self, kube: Any, cloudflare: Any | None) -> None:
        self.kube, self.cf = kube, cloudflare
        self.client = user_client(kube.kubeconfig)
        self.core = kubernetes.client.CoreV1Api(self.client)
        self.custom = kubernetes.client.CustomObjectsApi(self.client)
        self.operator: OperatorThread | None = None
        self.account = cloudflare.account_id if cloudflare is not None else None

    # -- the operator ----------------------------------------------------------------------------------
    def run_operator(self, environ: Mapping[str, str] | None = None, *, name: str = "chutes-operator",
                     timeout: float = 15.0, **settings: Any) -> OperatorThread:
        """Start the operator standalone on the emulators with `settings` (``load_settings`` keywords: front
        doors, intervals, policy...), `environ` as its process environment; stopped by :meth:`stop`."""
        assert self.operator is None, "one operator per world (stop it first)"
        # The namespaces it watches exist before it starts, as a user's do: kopf lists the namespaces, then watches
        # them from a second listing whose items it ignores, so one made between the two would go unserved until a
        # restart (README, CHUTES_NAMESPACES).
        for namespace in settings.get("namespaces") or ():
            self.namespace(namespace)
        options: dict[str, Any] = {"standalone": True, "stop_grace": STOP_GRACE, **settings}
        if self.cf is not None:
            options.setdefault("cloudflare_base_url", self.cf.base_url)
        self.operator = OperatorThread(load_settings({}, **options), environ, timeout=timeout, name=name).start()
        return self.operator

    def stop(self) -> None:
        if self.operator is not None:
            self.operator.stop()
            self.operator = None

    def close(self) -> None:
        self.stop()
        self.client.close()


    # -- Kubernetes ------------------------------------------------------------------------------------
    def namespace(self, name: str) -> None:
        """Make namespace `name` unless it exists."""
        try:
            self.core.create_namespace({"metadata": {"name": name}})
        except ApiException as exc:
            if exc.status != 409:
                raise

    def events(self, name: str, namespace: str) -> list[tuple[str, str, str]]:
        """(type, reason, message) of the Events about object `name` in `namespace`."""
        items = self.core.list_namespaced_event(namespace).items
        return [(e.type, e.reason, e.message) for e in items if e.involved_object.name == name]


class CloudflareReads:
    """What a world reads back from the Cloudflare emulator (`cf`) in its zone (`zone`), as a user would see it."""

    cf: Any
    zone: str

    def state(self) -> dict[str, Any]:
        return dict(self.cf.snapshot())

    def live_tunnels(self) -> list[dict[str, Any]]:
        return [t for t in self.state()["tunnels"].values() if not t["deleted_at"]]

    def records(self, name: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.state()["dns_records"].get(self.zone, []) if name is None or r["name"] == name]

    def apps_for(self, domain: str) -> list[dict[str, Any]]:
        return [a for a in self.state()["access_apps"].values() if a["domain"] == domain]

    def ingress(self, tunnel_id: str) -> list[dict[str, Any]]:
        config = (self.state()["tunnel_configs"].get(tunnel_id) or {}).get("config") or {}
        return list(config.get("ingress", []))

    def writes(self) -> list[str]:
        """The Cloudflare writes that succeeded, by operation, in order."""
        return [r.op for r in self.cf.requests if r.method != "GET" and 200 <= r.status < 300]
