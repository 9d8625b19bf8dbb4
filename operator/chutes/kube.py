"""The one module that talks to the Kubernetes API (besides kopf itself), through kubernetes_asyncio.

The same cluster configuration serves kopf (through :func:`login`) and our own client (:func:`connect`):
in-cluster when running in a Pod, else the ``KUBECONFIG`` of the moment (read at call time, not at
import time as the client libraries do), else ``~/.kube/config``. Nothing here blocks the event loop.
"""

from __future__ import annotations

import base64
import inspect
import json
import logging
import os
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import kopf
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config.config_exception import ConfigException

SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
MERGE_PATCH = "application/merge-patch+json"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
NOT_FOUND = 404
CONFLICT = 409  # a create: one of the name exists; a conditional write: its precondition no longer holds

T = TypeVar("T")


class _NoResponseBodies(logging.Filter):
    """kubernetes_asyncio logs every response body at DEBUG, Secrets included: those records never pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("response body")


logging.getLogger("kubernetes_asyncio.client.rest").addFilter(_NoResponseBodies())


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
    """An API client for our own reads and writes.

    kubernetes_asyncio's HTTP session trusts the environment: before *every* request, aiohttp looks the proxy
    variables up and reads ``~/.netrc`` (twice), in a thread of the default executor (7% of the CPU of a busy test,
    measured with py-spy). The environment does not change while we run: the proxy it names for the API
    server is looked up once here and given to the client, and the session no longer asks again. (A proxy's
    credentials go in its URL: netrc is not read for them.)"""
    configuration = await load_configuration()
    if not configuration.proxy:
        configuration.proxy = env_proxy(configuration.host or "")
    api = client.ApiClient(configuration=configuration)
    session = api.rest_client.pool_manager
    if session.trust_env:
        session._trust_env = False  # no public setter; tests/test_kube_connect.py checks `trust_env` after this
    return api


def env_proxy(url: str) -> str | None:
    """The proxy the environment names for `url` (``HTTPS_PROXY``, ``HTTP_PROXY``..., unless ``NO_PROXY`` excludes
    its host), as aiohttp's `trust_env` finds it; None when there is none (aiohttp ignores an ``https://`` proxy)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname
    if not host or urllib.request.proxy_bypass(host):  # type: ignore[attr-defined]
        return None
    proxy = urllib.request.getproxies().get(parts.scheme.lower(), "")
    return proxy if proxy.lower().startswith("http://") else None


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


async def _unless(status: int, call: Awaitable[T]) -> T | None:
    """What `call` returns; ``None`` when the API answers `status` instead (:data:`NOT_FOUND`: the object is
    missing; :data:`CONFLICT` for a create: one of the name exists). Any other error is raised."""
    try:
        return await call
    except ApiException as exc:
        if exc.status == status:
            return None
        raise


async def _succeeds(status: int, call: Awaitable[Any]) -> bool:
    """:func:`_unless` for a call whose result does not matter: False when the API answers `status`."""
    return await _unless(status, _true_after(call)) is not None


async def _true_after(call: Awaitable[Any]) -> bool:
    await call
    return True


async def _unless_gone(call: Awaitable[T], stale: str, *, uid: bool = False) -> T | None:
    """For a conditional write: what `call` returns; ``None`` when the object is gone (404); :class:`StaleObject`
    (`stale`) when its precondition no longer holds (409; with `uid`, also the 422 of a changed
    ``metadata.uid``)."""
    try:
        return await call
    except ApiException as exc:
        if exc.status == NOT_FOUND:
            return None
        if exc.status == CONFLICT or (uid and exc.status == 422 and "metadata.uid" in str(exc.body)):
            raise StaleObject(stale) from None
        raise


async def get_custom(
    api: client.ApiClient, group: str, version: str, plural: str, name: str, namespace: str | None = None
) -> dict[str, Any] | None:
    objects = client.CustomObjectsApi(api)
    found = await _unless(NOT_FOUND, objects.get_cluster_custom_object(group, version, plural, name)
                          if namespace is None else
                          objects.get_namespaced_custom_object(group, version, namespace, plural, name))
    return None if found is None else dict(found)


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
    objects: Any = client.CustomObjectsApi(api)  # its stubs omit the documented `_content_type`
    body: dict[str, Any] = {"status": status}
    if resource_version:
        body["metadata"] = {"resourceVersion": resource_version}
    if namespace is None:
        call = objects.patch_cluster_custom_object_status(group, version, plural, name, body,
                                                          _content_type=MERGE_PATCH)
    else:
        call = objects.patch_namespaced_custom_object_status(group, version, namespace, plural, name, body,
                                                             _content_type=MERGE_PATCH)
    result = await _unless_gone(call, f"{plural}/{name} changed since it was read")
    if result is None:
        return None
    return str(result.get("metadata", {}).get("resourceVersion") or "") or None


async def read_secret_value(api: client.ApiClient, namespace: str, name: str, key: str) -> str | None:
    """The decoded value of one key; ``None`` if the Secret is missing; ``KeyError`` if the key is."""
    secret = await _unless(NOT_FOUND, client.CoreV1Api(api).read_namespaced_secret(name, namespace))
    if secret is None:
        return None
    data = secret.data or {}
    if key not in data:
        raise KeyError(key)
    return base64.b64decode(data[key]).decode(errors="replace")  # not UTF-8: U+FFFD, never an echoing error


async def service_exists(api: client.ApiClient, namespace: str, name: str) -> bool:
    return await _succeeds(NOT_FOUND, client.CoreV1Api(api).read_namespaced_service(name, namespace))


class NotOurs(Exception):
    """An object of the name exists without our ownership labels: it is never written, nor deleted."""

    def __init__(self, kind: str, namespace: str, name: str, wanted: Mapping[str, str]) -> None:
        labels = ", ".join(f"{key}={value}" for key, value in sorted(wanted.items()))
        super().__init__(f"{kind} {namespace}/{name} exists and is not ours (it lacks the labels {labels}): "
                         "rename or remove it")
        self.kind, self.namespace, self.name = kind, namespace, name


def is_ours(metadata: Any, owned_by: Mapping[str, str], controller_uid: str | None = None) -> bool:
    """Whether an object's metadata (a dict or a client model) carries every label of ``owned_by``. With
    ``controller_uid``: an object an earlier version made is ours too, when its controller ownerReference is
    that uid, it carries the ``app.kubernetes.io/managed-by`` label of ``owned_by``, and no other label of
    ``owned_by`` with another value (the labels added since are missing)."""
    if isinstance(metadata, Mapping):
        labels: Mapping[str, str] = metadata.get("labels") or {}
        references = [(bool(ref.get("controller")), ref.get("uid")) for ref in metadata.get("ownerReferences") or []]
    else:  # a client model (V1ObjectMeta)
        labels = metadata.labels or {}
        references = [(bool(ref.controller), ref.uid) for ref in metadata.owner_references or []]
    if all(labels.get(key) == value for key, value in owned_by.items()):
        return True
    if controller_uid is None or any(labels.get(key) not in (None, value) for key, value in owned_by.items()):
        return False
    managed = owned_by.get(MANAGED_BY_LABEL)
    return managed is not None and labels.get(MANAGED_BY_LABEL) == managed and any(
        controller and uid == controller_uid for controller, uid in references)


def _controller_uid(manifest: Mapping[str, Any]) -> str | None:
    """The uid of the controller ownerReference a manifest sets (the source object it belongs to)."""
    references = manifest["metadata"].get("ownerReferences") or []
    return next((str(ref["uid"]) for ref in references if ref.get("controller") and ref.get("uid")), None)


async def apply_secret(api: client.ApiClient, manifest: dict[str, Any], owned_by: Mapping[str, str]) -> bool:
    """Create the Secret, or replace its data when it differs. True when something was written. An existing
    Secret of the name is written only when ours (:func:`is_ours` with ``owned_by``, labels of ``manifest``),
    else :class:`NotOurs`."""
    core = client.CoreV1Api(api)
    meta = manifest["metadata"]
    wanted = {k: base64.b64encode(v.encode()).decode() for k, v in manifest.get("stringData", {}).items()}
    body = {**{k: v for k, v in manifest.items() if k != "stringData"}, "data": wanted}
    current = await _unless(NOT_FOUND, core.read_namespaced_secret(meta["name"], meta["namespace"]))
    if current is None:
        if await _succeeds(CONFLICT, core.create_namespaced_secret(meta["namespace"], cast(Any, body))):
            return True
        # created meanwhile (an overlapping reconcile): compare with it
        current = await core.read_namespaced_secret(meta["name"], meta["namespace"])
    if not is_ours(current.metadata, owned_by, _controller_uid(manifest)):
        raise NotOurs("Secret", meta["namespace"], meta["name"], owned_by)
    if (current.data or {}) == wanted and (current.metadata.labels or {}) == meta.get("labels", {}):
        return False
    await core.patch_namespaced_secret(meta["name"], meta["namespace"], {
        "metadata": {"labels": meta.get("labels"), "resourceVersion": current.metadata.resource_version},
        "data": wanted})  # conditional: what was checked is what is written (409 otherwise, retried)
    return True


async def apply_deployment(api: client.ApiClient, manifest: dict[str, Any],
                           owned_by: Mapping[str, str]) -> dict[str, Any]:
    """Create the Deployment, or patch its labels and spec when they differ; returns its ``status`` (a dict).
    An existing Deployment of the name is written only when ours (as :func:`apply_secret`), else
    :class:`NotOurs`."""
    apps = client.AppsV1Api(api)
    meta = manifest["metadata"]
    current = await _unless(NOT_FOUND, apps.read_namespaced_deployment(meta["name"], meta["namespace"]))
    if current is None:
        created = await _unless(CONFLICT, apps.create_namespaced_deployment(meta["namespace"], cast(Any, manifest)))
        if created is not None:
            return dict(api.sanitize_for_serialization(created.status) or {})
        # created meanwhile (an overlapping reconcile): compare with it
        current = await apps.read_namespaced_deployment(meta["name"], meta["namespace"])
    current_dict = api.sanitize_for_serialization(current)
    if not is_ours(current_dict["metadata"], owned_by, _controller_uid(manifest)):
        raise NotOurs("Deployment", meta["namespace"], meta["name"], owned_by)
    wanted_template = manifest["spec"]["template"]
    if (
        current_dict["spec"].get("replicas") != manifest["spec"]["replicas"]
        or not _contains(current_dict["spec"].get("template", {}), wanted_template)
        or not _contains(current_dict["metadata"].get("labels") or {}, meta.get("labels") or {})
    ):
        patched = await apps.patch_namespaced_deployment(
            meta["name"], meta["namespace"],
            {"metadata": {"labels": meta.get("labels"), "resourceVersion": current_dict["metadata"].get(
                "resourceVersion")},
             "spec": {"replicas": manifest["spec"]["replicas"], "template": wanted_template}},
        )
        return dict(api.sanitize_for_serialization(patched.status) or {})
    return dict(current_dict.get("status") or {})


async def annotate_pod_template(api: client.ApiClient, namespace: str, name: str, key: str, value: str,
                                owned_by: Mapping[str, str]) -> bool:
    """Set one annotation of a Deployment's pod template (a rolling restart when it changes); False when the
    Deployment is missing or has it already. An existing Deployment not ours (:func:`is_ours`) is
    :class:`NotOurs`."""
    apps = client.AppsV1Api(api)
    current = await _unless(NOT_FOUND, apps.read_namespaced_deployment(name, namespace))
    if current is None:
        return False
    if not is_ours(current.metadata, owned_by):
        raise NotOurs("Deployment", namespace, name, owned_by)
    template = current.spec.template.metadata if current.spec and current.spec.template else None
    if ((template.annotations if template is not None else None) or {}).get(key) == value:
        return False
    await apps.patch_namespaced_deployment(name, namespace, {
        "spec": {"template": {"metadata": {"annotations": {key: value}}}}})
    return True


def _contains(actual: Any, wanted: Any) -> bool:
    """True when every field of ``wanted`` is present in ``actual`` with the same value (defaults ignored)."""
    if isinstance(wanted, dict):
        return isinstance(actual, dict) and all(_contains(actual.get(k), v) for k, v in wanted.items())
    if isinstance(wanted, list):
        return isinstance(actual, list) and len(actual) == len(wanted) and all(
            _contains(a, w) for a, w in zip(actual, wanted, strict=True)
        )
    return bool(actual == wanted)


async def delete_namespaced(api: client.ApiClient, kind: str, namespace: str, name: str,
                           owned_by: Mapping[str, str], controller_uid: str | None = None) -> bool:
    """Delete a Secret or Deployment that is ours (:func:`is_ours`); False when it was already gone.
    :class:`NotOurs` (nothing deleted) when one of the name exists without our labels. The delete is
    conditional on the uid read, so an object created meanwhile under the name is never deleted."""
    if kind == "Secret":
        found: Any = await _unless(NOT_FOUND, client.CoreV1Api(api).read_namespaced_secret(name, namespace))
    elif kind == "Deployment":
        found = await _unless(NOT_FOUND, client.AppsV1Api(api).read_namespaced_deployment(name, namespace))
    else:
        raise ValueError(f"unsupported kind {kind}")
    if found is None:
        return False
    if not is_ours(found.metadata, owned_by, controller_uid):
        raise NotOurs(kind, namespace, name, owned_by)
    options: Any = {"preconditions": {"uid": found.metadata.uid}}
    if kind == "Secret":
        call = client.CoreV1Api(api).delete_namespaced_secret(name, namespace, body=options)
    else:
        call = client.AppsV1Api(api).delete_namespaced_deployment(name, namespace, body=options)
    return await _unless_gone(_true_after(call), f"{kind} {namespace}/{name} is not the object it was") or False


async def deployment_status(api: client.ApiClient, namespace: str, name: str,
                            owned_by: Mapping[str, str] | None = None,
                            controller_uid: str | None = None) -> dict[str, Any] | None:
    """The Deployment's status; ``None`` when it is missing, or (with ``owned_by``) not ours (:func:`is_ours`)."""
    current = await _unless(NOT_FOUND, client.AppsV1Api(api).read_namespaced_deployment(name, namespace))
    if current is None or (owned_by is not None and not is_ours(current.metadata, owned_by, controller_uid)):
        return None
    return dict(api.sanitize_for_serialization(current.status) or {})


# --- ConfigMaps, metadata patches and Services (the HTTPRoute front door) -----------------------------


async def read_configmap(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    """The ConfigMap as a plain dict (``metadata``, ``data``), ``None`` if missing. Read raw: the server's JSON,
    without the client's model round trip (claims and states are read on every reconcile)."""
    core: Any = client.CoreV1Api(api)  # untyped: `_preload_content=False` returns the raw response
    return await _unless(NOT_FOUND, _raw_json(core.read_namespaced_config_map(name, namespace,
                                                                             _preload_content=False)))


async def list_configmaps(api: client.ApiClient, namespace: str, label_selector: str) -> list[dict[str, Any]]:
    """The ConfigMaps `label_selector` selects, as plain dicts, read raw (the session door lists every hostname
    claim each pass: thousands at scale)."""
    core: Any = client.CoreV1Api(api)
    listing = await _raw_json(core.list_namespaced_config_map(namespace, label_selector=label_selector,
                                                              _preload_content=False))
    return [dict(item) for item in listing.get("items") or []]


async def apply_configmap(api: client.ApiClient, namespace: str, name: str, labels: dict[str, str],
                          data: dict[str, str]) -> bool:
    """Create the ConfigMap, or replace its labels and data when they differ. True when written."""
    core = client.CoreV1Api(api)
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": {"name": name, "namespace": namespace, "labels": labels}, "data": data}
    current = await _unless(NOT_FOUND, core.read_namespaced_config_map(name, namespace))
    if current is None:
        await core.create_namespaced_config_map(namespace, cast(Any, body))
        return True
    if (current.data or {}) == data and (current.metadata.labels or {}) == labels:
        return False
    body["metadata"]["resourceVersion"] = current.metadata.resource_version
    await core.replace_namespaced_config_map(name, namespace, cast(Any, body))
    return True


async def replace_configmap(api: client.ApiClient, namespace: str, name: str, body: dict[str, Any]) -> bool:
    """Replace a ConfigMap, conditional on the ``metadata.resourceVersion`` in ``body``; False (nothing written)
    when it is gone or changed since it was read."""
    call = client.CoreV1Api(api).replace_namespaced_config_map(name, namespace, cast(Any, body))
    try:
        return await _unless_gone(_true_after(call), f"configmaps/{name} changed since it was read") or False
    except StaleObject:
        return False


async def delete_configmap(api: client.ApiClient, namespace: str, name: str, uid: str | None = None,
                           resource_version: str | None = None) -> bool:
    """False when it was already gone. With ``uid``: only that very object (a precondition), else
    :class:`StaleObject` (the name now holds another one); with ``resource_version`` too: only as it was then (else
    :class:`StaleObject`: it was written since)."""
    preconditions = {key: value for key, value in (("uid", uid), ("resourceVersion", resource_version)) if value}
    options: Any = {"preconditions": preconditions} if preconditions else None
    call = client.CoreV1Api(api).delete_namespaced_config_map(name, namespace, body=options)
    return await _unless_gone(_true_after(call), f"configmaps/{name} is not the object it was") or False


async def create_configmap(api: client.ApiClient, namespace: str, body: dict[str, Any]) -> dict[str, Any] | None:
    """Create a ConfigMap; the created object as a plain dict, ``None`` when one of that name exists (409):
    an atomic "first one wins" for callers that derive the name from what they claim."""
    created = await _unless(CONFLICT, client.CoreV1Api(api).create_namespaced_config_map(namespace, cast(Any, body)))
    return None if created is None else dict(api.sanitize_for_serialization(created))


async def patch_configmap(api: client.ApiClient, namespace: str, name: str,
                          patch: dict[str, Any]) -> dict[str, Any] | None:
    """Merge-patch a ConfigMap (``data`` keys set to ``None`` are removed); the result as a plain dict,
    ``None`` when it is gone. A ``metadata.uid`` or ``resourceVersion`` in ``patch`` acts as a precondition:
    :class:`StaleObject` when the object is no longer that one (409, or 422 for an immutable uid)."""
    core: Any = client.CoreV1Api(api)  # untyped: the stubs do not know `_content_type`
    patched = await _unless_gone(core.patch_namespaced_config_map(name, namespace, patch, _content_type=MERGE_PATCH),
                                 f"configmaps/{name} is not the object it was", uid=True)
    return None if patched is None else dict(api.sanitize_for_serialization(patched))


async def patch_custom_metadata(api: client.ApiClient, group: str, version: str, plural: str, name: str,
                                namespace: str | None, metadata: dict[str, Any]) -> bool:
    """Merge-patch ``metadata`` (annotations: ``None`` removes a key) of a namespaced object, or of a
    cluster-scoped one (``namespace`` None). False when the object is gone."""
    objects: Any = client.CustomObjectsApi(api)  # `_content_type` is accepted, though not in the stubs
    if namespace is None:
        call = objects.patch_cluster_custom_object(group, version, plural, name, {"metadata": metadata},
                                                   _content_type=MERGE_PATCH)
    else:
        call = objects.patch_namespaced_custom_object(group, version, namespace, plural, name, {"metadata": metadata},
                                                      _content_type=MERGE_PATCH)
    return await _succeeds(NOT_FOUND, call)


def _json_patch_custom(api: client.ApiClient, group: str, version: str, plural: str, name: str,
                       namespace: str | None, patch: list[dict[str, Any]]) -> Awaitable[Any]:
    """A JSON patch of a namespaced object, or of a cluster-scoped one (``namespace`` None)."""
    objects: Any = client.CustomObjectsApi(api)
    if namespace is None:
        return cast(Awaitable[Any], objects.patch_cluster_custom_object(
            group, version, plural, name, patch, _content_type="application/json-patch+json"))
    return cast(Awaitable[Any], objects.patch_namespaced_custom_object(
        group, version, namespace, plural, name, patch, _content_type="application/json-patch+json"))


async def remove_finalizer(api: client.ApiClient, group: str, version: str, plural: str, name: str,
                           namespace: str | None, finalizer: str) -> bool:
    """Drop one finalizer (JSON patch guarded by a test of the list, so a concurrent change is never lost).
    False when the object or the finalizer is gone."""
    found = await get_custom(api, group, version, plural, name, namespace)
    finalizers = list(((found or {}).get("metadata") or {}).get("finalizers") or [])
    if finalizer not in finalizers:
        return False
    patch = [{"op": "test", "path": "/metadata/finalizers", "value": finalizers},
             {"op": "replace", "path": "/metadata/finalizers", "value": [f for f in finalizers if f != finalizer]}]
    return await _succeeds(NOT_FOUND, _json_patch_custom(api, group, version, plural, name, namespace, patch))


async def add_finalizer(api: client.ApiClient, group: str, version: str, plural: str, name: str,
                        namespace: str | None, finalizer: str) -> bool:
    """Add one finalizer (JSON patch guarded by a test of the list, as :func:`remove_finalizer`). False when the
    object is gone or already has it; :class:`StaleObject` when the list changed meanwhile."""
    found = await get_custom(api, group, version, plural, name, namespace)
    if found is None:
        return False
    finalizers = list((found.get("metadata") or {}).get("finalizers") or [])
    if finalizer in finalizers:
        return False
    patch: list[dict[str, Any]] = (
        [{"op": "test", "path": "/metadata/finalizers", "value": finalizers},
         {"op": "add", "path": "/metadata/finalizers/-", "value": finalizer}] if finalizers else
        [{"op": "add", "path": "/metadata/finalizers", "value": [finalizer]}])
    try:
        return await _succeeds(NOT_FOUND, _json_patch_custom(api, group, version, plural, name, namespace, patch))
    except ApiException as exc:
        if exc.status in (CONFLICT, 422):  # the test failed: someone changed the list since it was read
            raise StaleObject(f"{plural}/{name}: finalizers changed since they were read") from None
        raise


async def read_service(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    """The Service as a plain dict, ``None`` if missing."""
    found = await _unless(NOT_FOUND, client.CoreV1Api(api).read_namespaced_service(name, namespace))
    return None if found is None else dict(api.sanitize_for_serialization(found))


async def list_services(api: client.ApiClient, namespace: str) -> list[dict[str, Any]]:
    """The Services of `namespace` as plain dicts."""
    found = await client.CoreV1Api(api).list_namespaced_service(namespace)
    return [dict(api.sanitize_for_serialization(item)) for item in found.items]


# --- coordination.k8s.io Leases (one writer per Cloudflare tunnel) ------------------------------------
# Read and written raw (JSON dicts): MicroTime fields stay the strings the server sent.


async def _json(response: Any) -> dict[str, Any]:
    """The body of a raw (``_preload_content=False``) response; :class:`ApiException` for an error status, as
    the client raises for preloaded ones (it does not for raw ones)."""
    data = await response.read()
    if not 200 <= response.status <= 299:
        error = ApiException(status=response.status, reason=response.reason)
        error.body, error.headers = data.decode(errors="replace"), response.headers
        raise error
    return dict(json.loads(data))


async def _raw_json(call: Awaitable[Any]) -> dict[str, Any]:
    """:func:`_json` of the raw response `call` returns."""
    return await _json(await call)


async def read_lease(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    """The Lease as a plain JSON dict, ``None`` if missing."""
    leases: Any = client.CoordinationV1Api(api)  # untyped: `_preload_content=False` returns the raw response
    return await _unless(NOT_FOUND, _raw_json(leases.read_namespaced_lease(name, namespace, _preload_content=False)))


async def create_lease(api: client.ApiClient, namespace: str, body: dict[str, Any]) -> dict[str, Any] | None:
    """Create a Lease; the created object, ``None`` when one of that name exists (409)."""
    leases: Any = client.CoordinationV1Api(api)
    return await _unless(CONFLICT, _raw_json(leases.create_namespaced_lease(namespace, body, _preload_content=False)))


async def replace_lease(api: client.ApiClient, namespace: str, name: str,
                        body: dict[str, Any]) -> dict[str, Any] | None:
    """Replace a Lease, conditional on the ``metadata.resourceVersion`` in ``body`` (:class:`StaleObject`
    when it moved on); the new object, ``None`` when it is gone."""
    leases: Any = client.CoordinationV1Api(api)
    return await _unless_gone(_raw_json(leases.replace_namespaced_lease(name, namespace, body, _preload_content=False)),
                              f"leases/{name} changed since it was read")


# --- session Pods and labelled custom objects (the session-Pod front door) ----------------------------


async def list_pods(api: client.ApiClient, namespace: str, label_selector: str = "") -> list[dict[str, Any]]:
    """The Pods of a namespace as plain JSON dicts (API field names), filtered by the server.

    Read raw: building typed models for hundreds of Pods costs more than the request itself.
    """
    pods: Any = client.CoreV1Api(api)  # untyped: `_preload_content=False` returns the raw response
    options: dict[str, Any] = {"label_selector": label_selector} if label_selector else {}
    response = await pods.list_namespaced_pod(namespace, _preload_content=False, **options)
    listing = json.loads(await response.read())
    return [dict(item) for item in listing.get("items") or []]


async def list_pods_versioned(api: client.ApiClient, namespace: str,
                              label_selector: str = "") -> tuple[list[dict[str, Any]], str]:
    """:func:`list_pods`, with the listing's resourceVersion (where a watch of the namespace starts)."""
    pods: Any = client.CoreV1Api(api)
    options: dict[str, Any] = {"label_selector": label_selector} if label_selector else {}
    listing = await _json(await pods.list_namespaced_pod(namespace, _preload_content=False, **options))
    version = str((listing.get("metadata") or {}).get("resourceVersion") or "")
    return [dict(item) for item in listing.get("items") or []], version


async def watch_pods(api: client.ApiClient, namespace: str, label_selector: str, resource_version: str,
                     timeout_seconds: int = 240) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """The Pod events of one namespace from ``resource_version`` on, as (type, Pod as a plain JSON dict), until
    the server ends the watch (``timeout_seconds``). A watch too old to resume (410) or any other error event
    raises :class:`ApiException` with its code. BOOKMARK events carry only the resourceVersion reached."""
    pods: Any = client.CoreV1Api(api)  # untyped: `_preload_content=False` returns the raw response
    options: dict[str, Any] = {"label_selector": label_selector} if label_selector else {}
    response = await pods.list_namespaced_pod(
        namespace, watch=True, resource_version=resource_version, allow_watch_bookmarks=True,
        timeout_seconds=timeout_seconds, _preload_content=False, **options)
    try:
        if not 200 <= response.status <= 299:
            await _json(response)  # raises
        buffer = b""
        async for chunk in response.content.iter_any():  # lines may exceed a StreamReader's line limit
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if not line.strip():
                    continue
                event = json.loads(line)
                body = dict(event.get("object") or {})
                if event.get("type") == "ERROR":
                    raise ApiException(status=int(body.get("code") or 500),
                                       reason=f"{body.get('reason') or ''}: {body.get('message') or ''}")
                yield str(event.get("type") or ""), body
    finally:
        response.release()


async def list_custom_labelled(
    api: client.ApiClient, group: str, version: str, plural: str, namespace: str, label_selector: str
) -> list[dict[str, Any]]:
    listing = await client.CustomObjectsApi(api).list_namespaced_custom_object(
        group, version, namespace, plural, label_selector=label_selector
    )
    return [dict(item) for item in listing.get("items", [])]


async def create_custom(
    api: client.ApiClient, group: str, version: str, plural: str, namespace: str, body: dict[str, Any]
) -> bool:
    """Create a namespaced custom object; False when one of that name exists already (409)."""
    return await _succeeds(CONFLICT, client.CustomObjectsApi(api).create_namespaced_custom_object(
        group, version, namespace, plural, body))


async def patch_custom(
    api: client.ApiClient, group: str, version: str, plural: str, namespace: str, name: str, body: dict[str, Any]
) -> bool:
    """Merge-patch a namespaced custom object (lists in ``body`` replace the current ones); False when gone."""
    objects: Any = client.CustomObjectsApi(api)  # untyped: the stubs do not know `_content_type`
    return await _succeeds(NOT_FOUND, objects.patch_namespaced_custom_object(group, version, namespace, plural, name,
                                                                             body, _content_type=MERGE_PATCH))


async def delete_custom(
    api: client.ApiClient, group: str, version: str, plural: str, namespace: str, name: str
) -> bool:
    """Delete a namespaced custom object; False when it was already gone."""
    return await _succeeds(NOT_FOUND, client.CustomObjectsApi(api).delete_namespaced_custom_object(
        group, version, namespace, plural, name))


async def post_event(api: client.ApiClient, involved: dict[str, Any], type_: str, reason: str, message: str,
                     component: str = "chutes-operator") -> None:
    """Post a core v1 Event about ``involved`` (apiVersion, kind, metadata name/namespace/uid), from code
    running outside a kopf handler (kopf's own ``kopf.event`` only works inside one)."""
    meta = involved.get("metadata") or {}
    namespace = meta.get("namespace") or "default"
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"namespace": namespace, "generateName": f"{meta.get('name') or 'object'}."},
        "involvedObject": {"apiVersion": involved.get("apiVersion"), "kind": involved.get("kind"),
                           "name": meta.get("name"), "namespace": namespace, "uid": meta.get("uid")},
        "type": type_,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": component},
        "reportingComponent": component,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    await client.CoreV1Api(api).create_namespaced_event(namespace, cast(Any, body))
