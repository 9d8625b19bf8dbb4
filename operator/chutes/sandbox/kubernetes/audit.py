"""Who asked for what: every request the emulator serves, as an RBAC authorizer would see it.

The emulator accepts any bearer token, so a token names a client: tests give the operator a token of
its own (``KubeSandbox.operator_kubeconfig``) and read back exactly the API calls the operator made,
to check them against the Helm chart's RBAC rules. Calls are counted, not listed, so memory stays
bounded however long the emulator runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from chutes.sandbox.kubernetes.paths import ApiPath, Level

TRUE = frozenset({'true', '1'})


@dataclass(frozen=True, order=True)
class ApiCall:
    """One request in RBAC terms. ``namespace`` is None for cluster-scope requests (cluster-scoped
    resources, and namespaced resources across all namespaces); ``url`` is set for non-resource URLs
    (discovery, /version), where group, resource and namespace are empty."""

    user: str  # the bearer token ('' when none was sent)
    verb: str  # get list watch create update patch delete deletecollection
    group: str
    resource: str
    subresource: str = ''
    namespace: str | None = None
    name: str | None = None
    url: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def bearer_token(headers: Mapping[str, str]) -> str:
    value = next((v for k, v in headers.items() if k.lower() == 'authorization'), '')
    scheme, _, token = value.partition(' ')
    return token.strip() if scheme.lower() == 'bearer' else ''


def describe(method: str, path: ApiPath, url_path: str, query: Mapping[str, str],
             headers: Mapping[str, str]) -> ApiCall:
    """The RBAC attributes of a request (verbs as kube-apiserver derives them from method and URL)."""
    user = bearer_token(headers)
    method = method.upper()
    if path.level not in (Level.COLLECTION, Level.OBJECT):
        return ApiCall(user=user, verb=method.lower(), group='', resource='', url=url_path or '/')
    watch = method == 'GET' and query.get('watch', '').lower() in TRUE
    if path.level is Level.COLLECTION:
        verb = {'GET': 'watch' if watch else 'list', 'POST': 'create', 'DELETE': 'deletecollection'}.get(
            method, method.lower())
    else:
        verb = {'GET': 'watch' if watch else 'get', 'PUT': 'update', 'PATCH': 'patch', 'DELETE': 'delete'}.get(
            method, method.lower())
    return ApiCall(user=user, verb=verb, group=path.group or '', resource=path.plural or '',
                   subresource=path.subresource or '', namespace=path.namespace, name=path.name)
