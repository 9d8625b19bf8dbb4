"""API discovery: resource definitions from CRD manifests, built-ins, and the discovery documents.

``crd_resources(manifest)`` turns a CustomResourceDefinition into kmock ``ResourceInfo`` entries (one per
served version). ``default_resources()`` is kmock's bundled k3s built-ins plus the third-party resources the
operator touches without owning their CRDs: Traefik (``traefik.io/v1alpha1``) and kopf peering
(``kopf.dev/v1``). The ``*_document`` functions render ``/api``, ``/apis``, ``/apis/G`` and ``/apis/G/V``.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import kmock
import yaml

CRD_VERBS = frozenset({'create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'})
SUBRESOURCE_VERBS = {'status': ['get', 'patch', 'update'], 'scale': ['get', 'patch', 'update']}
_VERSION = re.compile(r'^v(\d+)(?:(alpha|beta)(\d+))?$')

# Groups that a real cluster serves from CRDs (custom-resource semantics: no strategic merge patch,
# PUT needs a resourceVersion, DELETE answers with the object), even though kmock bundles some of them.
CRD_BACKED_GROUPS = frozenset({'traefik.io', 'kopf.dev', 'gateway.networking.k8s.io'})

# Third-party CRDs that the operator uses but does not ship: (group, version, plural, kind, namespaced, short names);
# every Traefik plural is its kind in lower case with an s.
TRAEFIK_KINDS = ('IngressRoute', 'IngressRouteTCP', 'IngressRouteUDP', 'Middleware', 'MiddlewareTCP',
                 'ServersTransport', 'ServersTransportTCP', 'TLSOption', 'TLSStore', 'TraefikService')
EXTRA_CUSTOM_RESOURCES: tuple[tuple[str, str, str, str, bool, tuple[str, ...]], ...] = (
    *(('traefik.io', 'v1alpha1', f'{kind.lower()}s', kind, True, ()) for kind in TRAEFIK_KINDS),
    ('kopf.dev', 'v1', 'clusterkopfpeerings', 'ClusterKopfPeering', False, ()),
    ('kopf.dev', 'v1', 'kopfpeerings', 'KopfPeering', True, ()),
)


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Sort key: GA before beta before alpha, higher numbers first, non-Kubernetes names last."""
    match = _VERSION.match(version)
    if not match:
        return (3, 0, 0, version)
    major, stage, minor = int(match[1]), match[2], int(match[3] or 0)
    return ({None: 0, 'beta': 1, 'alpha': 2}[stage], -major, -minor, version)


def crd_resources(manifest: Mapping[str, Any]) -> list[tuple[kmock.resource, kmock.ResourceInfo]]:
    """Discovery entries of a CustomResourceDefinition manifest, one per served version."""
    if manifest.get('kind') != 'CustomResourceDefinition':
        raise ValueError(f'not a CustomResourceDefinition: {manifest.get("kind")!r}')
    spec = manifest.get('spec') or {}
    names = spec.get('names') or {}
    group, plural, kind = spec.get('group'), names.get('plural'), names.get('kind')
    if not group or not plural or not kind:
        raise ValueError('a CRD needs spec.group, spec.names.plural and spec.names.kind')
    global_subresources = spec.get('subresources') or {}  # apiextensions.k8s.io/v1beta1 style
    result: list[tuple[kmock.resource, kmock.ResourceInfo]] = []
    for version in spec.get('versions') or [{'name': spec.get('version'), 'served': True}]:
        if not version.get('name') or not version.get('served', True):
            continue
        subresources = version.get('subresources') or global_subresources
        info = kmock.ResourceInfo(
            kind=kind,
            singular=names.get('singular') or kind.lower(),
            namespaced=spec.get('scope', 'Namespaced') == 'Namespaced',
            verbs=set(CRD_VERBS),
            shortnames=set(names.get('shortNames') or ()),
            categories=set(names.get('categories') or ()),
            subresources={name for name in ('status', 'scale') if name in subresources},
        )
        result.append((kmock.resource(group, version['name'], plural), info))
    return result


def crd_selectable_fields(manifest: Mapping[str, Any]) -> dict[kmock.resource, frozenset[str]]:
    """``selectableFields`` of each served version, as dotted paths usable in fieldSelector."""
    spec = manifest.get('spec') or {}
    group, plural = spec.get('group'), (spec.get('names') or {}).get('plural')
    return {
        kmock.resource(group, version['name'], plural): frozenset(
            str(field.get('jsonPath', '')).lstrip('.') for field in version.get('selectableFields') or ()
        )
        for version in spec.get('versions') or ()
        if version.get('name') and version.get('served', True)
    }


def load_crd_manifests(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Every CustomResourceDefinition document in the given YAML files or directories (sorted)."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob('*') if p.suffix in ('.yaml', '.yml', '.json')))
        else:
            files.append(path)
    manifests: list[dict[str, Any]] = []
    for file in files:
        stat = file.stat()
        manifests.extend(copy.deepcopy(_crds_in(file.resolve(), stat.st_mtime_ns, stat.st_size)))
    return manifests


@functools.lru_cache(maxsize=64)
def _crds_in(file: Path, mtime_ns: int, size: int) -> tuple[dict[str, Any], ...]:
    """The CRD documents of `file` as it is at (`mtime_ns`, `size`): parsed once per process (every sandbox a
    test suite starts reads the same files), copied by the caller."""
    loader = getattr(yaml, 'CSafeLoader', yaml.SafeLoader)
    with file.open(encoding='utf-8') as stream:
        docs = yaml.load_all(stream, Loader=loader)
        return tuple(doc for doc in docs if isinstance(doc, dict) and doc.get('kind') == 'CustomResourceDefinition')


def default_resources() -> dict[kmock.resource, kmock.ResourceInfo]:
    """kmock's bundled built-ins plus Traefik and kopf peering resources."""
    bundled = kmock.ResourcesArray()
    bundled.load_bundled()
    result: dict[kmock.resource, kmock.ResourceInfo] = {res: bundled[res] for res in bundled}
    for group, version, plural, kind, namespaced, shortnames in EXTRA_CUSTOM_RESOURCES:
        result[kmock.resource(group, version, plural)] = kmock.ResourceInfo(
            kind=kind, singular=kind.lower(), namespaced=namespaced, verbs=set(CRD_VERBS),
            shortnames=set(shortnames),
        )
    return result


def _groups(resources: Iterable[kmock.resource]) -> dict[str, list[str]]:
    versions: dict[str, set[str]] = {}
    for res in resources:
        if res.group and res.version:
            versions.setdefault(res.group, set()).add(res.version)
    return {group: sorted(found, key=version_priority) for group, found in sorted(versions.items())}


def _group_entry(group: str, versions: list[str]) -> dict[str, Any]:
    entries = [{'groupVersion': f'{group}/{version}', 'version': version} for version in versions]
    return {'name': group, 'versions': entries, 'preferredVersion': entries[0]}


def core_versions_document(host: str) -> dict[str, Any]:
    return {
        'kind': 'APIVersions',
        'versions': ['v1'],
        'serverAddressByClientCIDRs': [{'clientCIDR': '0.0.0.0/0', 'serverAddress': host}],
    }


def group_list_document(resources: Iterable[kmock.resource]) -> dict[str, Any]:
    groups = [_group_entry(group, versions) for group, versions in _groups(resources).items()]
    return {'kind': 'APIGroupList', 'apiVersion': 'v1', 'groups': groups}


def group_document(resources: Iterable[kmock.resource], group: str) -> dict[str, Any] | None:
    versions = _groups(resources).get(group)
    if not versions:
        return None
    return {'kind': 'APIGroup', 'apiVersion': 'v1', **_group_entry(group, versions)}


def resource_list_document(
        resources: Mapping[kmock.resource, kmock.ResourceInfo], group: str, version: str,
) -> dict[str, Any] | None:
    entries: list[dict[str, Any]] = []
    for res, info in sorted(resources.items(), key=lambda item: item[0].plural or ''):
        if res.group != group or res.version != version or not res.plural:
            continue
        kind = info.kind or res.plural.capitalize()
        entries.append({
            'name': res.plural,
            'singularName': info.singular or '',
            'namespaced': bool(info.namespaced),
            'kind': kind,
            'verbs': sorted(info.verbs),
            **({'shortNames': sorted(info.shortnames)} if info.shortnames else {}),
            **({'categories': sorted(info.categories)} if info.categories else {}),
        })
        for sub in sorted(info.subresources):
            entries.append({
                'name': f'{res.plural}/{sub}',
                'singularName': '',
                'namespaced': bool(info.namespaced),
                'kind': 'Scale' if sub == 'scale' else kind,
                'verbs': SUBRESOURCE_VERBS.get(sub, ['get']),
                **({'group': 'autoscaling', 'version': 'v1'} if sub == 'scale' else {}),
            })
    if not entries:
        return None
    return {
        'kind': 'APIResourceList',
        'apiVersion': 'v1',
        'groupVersion': f'{group}/{version}' if group else version,
        'resources': entries,
    }
