"""The one module that talks to the Kubernetes API (besides kopf itself), through kubernetes_asyncio.

The same cluster configuration serves kopf (through :func:`login`) and our own client (:func:`connect`):
in-cluster when running in a Pod, else the ``KUBECONFIG`` of the moment (read at call time, not at
import time as the client libraries do), else ``~/.kube/config``. Nothing here blocks the event loop.
"""

from __future__ import annotations

import base64
import inspect
import os
from typing import Any, cast

import kopf
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config.config_exception import ConfigException

SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
MERGE_PATCH = "application/merge-patch+json"


def _in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and os.path.exists(SERVICE_ACCOUNT_TOKEN)


async def load_configuration() -> client.Configuration:
    configuration = client.Configuration()
    if _in_cluster():
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        return configuration
    kubeconfig = os.environ.get("KUBECONFIG") or "~/.kube/config"
    try:
        await config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    except (ConfigException, OSError) as exc:
        raise ConnectionError(
            f"no usable cluster configuration (in-cluster, KUBECONFIG or ~/.kube/config): {exc}"
        ) from exc
    return configuration


async def connect() -> client.ApiClient:
    """An API client for our own reads and writes."""
    return client.ApiClient(configuration=await load_configuration())


async def login(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo:
    """kopf's credentials, from the same configuration as :func:`connect`."""
    try:
        configuration = await load_configuration()
    except ConnectionError as exc:
        raise kopf.LoginError(str(exc)) from exc
    maybe: Any = configuration.get_api_key_with_prefix("BearerToken")
    header: str | None = await maybe if inspect.isawaitable(maybe) else maybe
    scheme, _sep, token = (header or "").rpartition(" ")
    return kopf.ConnectionInfo(
        server=configuration.host or "",
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        username=configuration.username or None,
        password=configuration.password or None,
        scheme=scheme or ("Bearer" if token else None),
        token=token or None,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
        proxy_url=configuration.proxy,
        trust_env=settings.networking.trust_env,
    )


# --- reads and writes the front doors need -------------------------------------------------------


def _missing(exc: ApiException) -> bool:
    return exc.status == 404


async def get_custom(
    api: client.ApiClient, group: str, version: str, plural: str, name: str, namespace: str | None = None
) -> dict[str, Any] | None:
    objects = client.CustomObjectsApi(api)
    try:
        if namespace is None:
            found = await objects.get_cluster_custom_object(group, version, plural, name)
        else:
            found = await objects.get_namespaced_custom_object(group, version, namespace, plural, name)
    except ApiException as exc:
        if _missing(exc):
            return None
        raise
    return dict(found)


async def list_custom(
    api: client.ApiClient, group: str, version: str, plural: str, namespace: str | None = None
) -> list[dict[str, Any]]:
    objects = client.CustomObjectsApi(api)
    if namespace is None:
        listing = await objects.list_cluster_custom_object(group, version, plural)
    else:
        listing = await objects.list_namespaced_custom_object(group, version, namespace, plural)
    return [dict(item) for item in listing.get("items", [])]


class StaleObject(Exception):
    """A write based on an old resourceVersion was refused (HTTP 409)."""


async def patch_custom_status(
    api: client.ApiClient,
    group: str,
    version: str,
    plural: str,
    name: str,
    namespace: str | None,
    status: dict[str, Any],
    resource_version: str | None = None,
) -> str | None:
    """Merge-patch ``status``, conditional on ``resource_version`` when given (:class:`StaleObject` if it
    moved on). Returns the new resourceVersion; ``None`` when the object is gone (nothing to do)."""
    objects = client.CustomObjectsApi(api)
    body: dict[str, Any] = {"status": status}
    if resource_version:
        body["metadata"] = {"resourceVersion": resource_version}
    try:
        if namespace is None:
            result = await objects.patch_cluster_custom_object_status(
                group, version, plural, name, body, _content_type=MERGE_PATCH
            )
        else:
            result = await objects.patch_namespaced_custom_object_status(
                group, version, namespace, plural, name, body, _content_type=MERGE_PATCH
            )
    except ApiException as exc:
        if _missing(exc):
            return None
        if exc.status == 409:
            raise StaleObject(f"{plural}/{name} changed since it was read") from None
        raise
    return str(result.get("metadata", {}).get("resourceVersion") or "") or None


async def read_secret_value(api: client.ApiClient, namespace: str, name: str, key: str) -> str | None:
    """The decoded value of one key; ``None`` if the Secret is missing; ``KeyError`` if the key is."""
    try:
        secret = await client.CoreV1Api(api).read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if _missing(exc):
            return None
        raise
    data = secret.data or {}
    if key not in data:
        raise KeyError(key)
    return base64.b64decode(data[key]).decode()


async def service_exists(api: client.ApiClient, namespace: str, name: str) -> bool:
    try:
        await client.CoreV1Api(api).read_namespaced_service(name, namespace)
    except ApiException as exc:
        if _missing(exc):
            return False
        raise
    return True


async def apply_secret(api: client.ApiClient, manifest: dict[str, Any]) -> bool:
    """Create the Secret, or replace its data when it differs. True when something was written."""
    core = client.CoreV1Api(api)
    meta = manifest["metadata"]
    wanted = {k: base64.b64encode(v.encode()).decode() for k, v in manifest.get("stringData", {}).items()}
    body = {**{k: v for k, v in manifest.items() if k != "stringData"}, "data": wanted}
    try:
        current = await core.read_namespaced_secret(meta["name"], meta["namespace"])
    except ApiException as exc:
        if not _missing(exc):
            raise
        await core.create_namespaced_secret(meta["namespace"], cast(Any, body))
        return True
    if (current.data or {}) == wanted and (current.metadata.labels or {}) == meta.get("labels", {}):
        return False
    await core.patch_namespaced_secret(meta["name"], meta["namespace"], {"metadata": {"labels": meta.get("labels")},
                                                                        "data": wanted})
    return True


async def apply_deployment(api: client.ApiClient, manifest: dict[str, Any]) -> dict[str, Any]:
    """Create the Deployment, or patch its spec when it differs; returns its ``status`` (a dict)."""
    apps = client.AppsV1Api(api)
    meta = manifest["metadata"]
    try:
        current = await apps.read_namespaced_deployment(meta["name"], meta["namespace"])
    except ApiException as exc:
        if not _missing(exc):
            raise
        created = await apps.create_namespaced_deployment(meta["namespace"], cast(Any, manifest))
        return dict(api.sanitize_for_serialization(created.status) or {})
    current_dict = api.sanitize_for_serialization(current)
    wanted_template = manifest["spec"]["template"]
    if (
        current_dict["spec"].get("replicas") != manifest["spec"]["replicas"]
        or not _contains(current_dict["spec"].get("template", {}), wanted_template)
    ):
        patched = await apps.patch_namespaced_deployment(
            meta["name"], meta["namespace"],
            {"metadata": {"labels": meta.get("labels")}, "spec": {"replicas": manifest["spec"]["replicas"],
                                                                  "template": wanted_template}},
        )
        return dict(api.sanitize_for_serialization(patched.status) or {})
    return dict(current_dict.get("status") or {})


def _contains(actual: Any, wanted: Any) -> bool:
    """True when every field of ``wanted`` is present in ``actual`` with the same value (defaults ignored)."""
    if isinstance(wanted, dict):
        return isinstance(actual, dict) and all(_contains(actual.get(k), v) for k, v in wanted.items())
    if isinstance(wanted, list):
        return isinstance(actual, list) and len(actual) == len(wanted) and all(
            _contains(a, w) for a, w in zip(actual, wanted, strict=True)
        )
    return bool(actual == wanted)


async def delete_namespaced(api: client.ApiClient, kind: str, namespace: str, name: str) -> bool:
    """Delete a Secret or Deployment; False when it was already gone."""
    try:
        if kind == "Secret":
            await client.CoreV1Api(api).delete_namespaced_secret(name, namespace)
        elif kind == "Deployment":
            await client.AppsV1Api(api).delete_namespaced_deployment(name, namespace)
        else:
            raise ValueError(f"unsupported kind {kind}")
    except ApiException as exc:
        if _missing(exc):
            return False
        raise
    return True


async def deployment_status(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        current = await client.AppsV1Api(api).read_namespaced_deployment(name, namespace)
    except ApiException as exc:
        if _missing(exc):
            return None
        raise
    return dict(api.sanitize_for_serialization(current.status) or {})
