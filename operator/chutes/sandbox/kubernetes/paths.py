"""URL parsing for the Kubernetes REST API, including the core Namespace URLs that kmock 0.8 mis-parses.

``/api/v1/namespaces`` and ``/api/v1/namespaces/NAME[/status|/finalize]`` address the Namespace
resource itself; ``/api/v1/namespaces/NS/PLURAL/...`` addresses namespaced objects inside NS.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass

import kmock

NAMESPACE_SUBRESOURCES = frozenset({'status', 'finalize'})


@functools.lru_cache(maxsize=4096)
def resource_key(group: str | None, version: str | None, plural: str | None) -> kmock.resource:
    """A cached ``kmock.resource``: its constructor runs slow runtime-protocol checks on every call."""
    return kmock.resource(group=group, version=version, plural=plural)


class Level(enum.Enum):
    """Which part of the API tree a URL points to."""

    OTHER = 'other'  # /, /version, /healthz, /openapi/... : not a resource URL
    CORE_VERSIONS = 'core-versions'  # /api
    GROUPS = 'groups'  # /apis
    GROUP = 'group'  # /apis/GROUP
    GROUP_VERSION = 'group-version'  # /api/v1, /apis/GROUP/VERSION
    COLLECTION = 'collection'  # .../PLURAL
    OBJECT = 'object'  # .../PLURAL/NAME[/SUBRESOURCE]


@dataclass(frozen=True)
class Target:
    """A resource addressed by group, version and plural name."""

    group: str
    version: str
    plural: str

    @property
    def resource(self) -> kmock.resource:
        return resource_key(self.group, self.version, self.plural)

    @property
    def api_version(self) -> str:
        return f'{self.group}/{self.version}' if self.group else self.version

    @property
    def qualified(self) -> str:
        """The name used in apiserver messages: ``widgets.example.com`` or ``secrets``."""
        return f'{self.plural}.{self.group}' if self.group else self.plural

    @classmethod
    def of(cls, resource: kmock.resource) -> Target:
        return cls(resource.group or '', resource.version or '', resource.plural or '')


@dataclass(frozen=True)
class ApiPath:
    level: Level
    group: str | None = None
    version: str | None = None
    plural: str | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None

    @property
    def target(self) -> Target:
        if self.group is None or self.version is None or self.plural is None:
            raise ValueError(f'not a resource path: {self!r}')
        return Target(self.group, self.version, self.plural)


def parse_path(path: str) -> ApiPath:
    parts = [part for part in path.split('/') if part]
    if not parts or parts[0] not in ('api', 'apis'):
        return ApiPath(Level.OTHER)
    if parts[0] == 'api':
        if len(parts) == 1:
            return ApiPath(Level.CORE_VERSIONS)
        group, version, rest = '', parts[1], parts[2:]
    else:
        if len(parts) == 1:
            return ApiPath(Level.GROUPS)
        if len(parts) == 2:
            return ApiPath(Level.GROUP, group=parts[1])
        group, version, rest = parts[1], parts[2], parts[3:]

    if not rest:
        return ApiPath(Level.GROUP_VERSION, group=group, version=version)
    namespace: str | None = None
    if rest[0] == 'namespaces' and not (len(rest) <= 2 or (len(rest) == 3 and rest[2] in NAMESPACE_SUBRESOURCES)):
        namespace, rest = rest[1], rest[2:]
    plural = rest[0]
    if len(rest) == 1:
        return ApiPath(Level.COLLECTION, group, version, plural, namespace)
    subresource = '/'.join(rest[2:]) or None
    return ApiPath(Level.OBJECT, group, version, plural, namespace, rest[1], subresource)
