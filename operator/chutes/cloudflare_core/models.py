"""Frozen value objects the Cloudflare core takes and returns (no SDK types leak out)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

from .errors import InvalidInput

__all__ = [
    "AccessApp",
    "AccessAppSpec",
    "AppPolicySpec",
    "DesiredRecord",
    "DnsRecord",
    "IdentityProvider",
    "IngressRule",
    "Policy",
    "Recorded",
    "ServiceToken",
    "Tunnel",
    "Zone",
    "cname_target",
    "normalize_name",
    "parse_time",
    "tunnel_of",
]

_HOSTNAME = re.compile(r"^(\*\.)?([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")
_SERVICE = re.compile(
    r"^((https?|unix|unix\+tls|tcp|ssh|rdp|smb)://\S+|http_status:[1-5][0-9]{2}|hello_world|bastion|socks5)$"
)
# snake_case spellings accepted for originRequest keys; the wire (and the result) uses camelCase.
_ORIGIN_REQUEST_KEYS = {
    "ca_pool": "caPool",
    "connect_timeout": "connectTimeout",
    "disable_chunked_encoding": "disableChunkedEncoding",
    "http2_origin": "http2Origin",
    "http_host_header": "httpHostHeader",
    "keep_alive_connections": "keepAliveConnections",
    "keep_alive_timeout": "keepAliveTimeout",
    "match_sn_ito_host": "matchSNItoHost",
    "match_sni_to_host": "matchSNItoHost",
    "no_happy_eyeballs": "noHappyEyeballs",
    "no_tls_verify": "noTLSVerify",
    "origin_server_name": "originServerName",
    "proxy_type": "proxyType",
    "tcp_keep_alive": "tcpKeepAlive",
    "tls_timeout": "tlsTimeout",
    "aud_tag": "audTag",
    "team_name": "teamName",
}


def normalize_name(name: str) -> str:
    """A DNS name as Cloudflare reports it: lower case, no trailing dot."""
    return name.strip().rstrip(".").lower()


TUNNEL_CNAME_SUFFIX = ".cfargotunnel.com"


def cname_target(tunnel_id: str) -> str:
    """What a proxied CNAME points to so that its hostname goes through tunnel `tunnel_id`."""
    return f"{tunnel_id}{TUNNEL_CNAME_SUFFIX}"


def tunnel_of(content: str) -> str | None:
    """The tunnel id a CNAME target ``<id>.cfargotunnel.com`` routes to (:func:`cname_target`), else None."""
    target = normalize_name(content)
    if not target.endswith(TUNNEL_CNAME_SUFFIX):
        return None
    tunnel = target.removesuffix(TUNNEL_CNAME_SUFFIX)
    return tunnel if tunnel and "." not in tunnel else None


def _camel_keys(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {_ORIGIN_REQUEST_KEYS.get(key, key): _camel_keys(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_camel_keys(item) for item in value]
    return value


def _frozen(value: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    return None if value is None else MappingProxyType(dict(value))


def parse_time(value: str) -> datetime:
    """An ISO 8601 / RFC 3339 time as an aware UTC datetime (``Z`` or an offset; none means UTC;
    fractions beyond microseconds, as some Cloudflare timestamps have, are cut). ValueError if not one."""
    text = value.strip()
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


# How much earlier than the recorded intent Cloudflare's clock may date an object we created.
CREATE_SKEW = timedelta(seconds=60)


@dataclass(frozen=True)
class Recorded:
    """What this installation's ledger says about one object: its id once created, and when the intent
    to create it was recorded (before the create).

    The proof asked of an object found by its natural key (tunnel name, app domain + name, token name):
    it is ours when its id is `id`, or, while `id` is None (a crash between the create and recording its
    id), when `since` is set and the object was created at or after `since` minus `CREATE_SKEW`.
    A create needs `since` (the intent is recorded first).
    """

    id: str | None = None
    since: str | None = None  # ISO 8601 UTC

    def __post_init__(self) -> None:
        if self.since is not None:
            try:
                parse_time(self.since)
            except ValueError:
                raise InvalidInput(f"recorded intent time {self.since!r} is not an ISO 8601 time") from None

    def covers(self, object_id: str, created_at: str | None) -> bool:
        """Whether this record proves the object `object_id`, created at `created_at`, is the one it
        records."""
        if self.id:
            return object_id == self.id
        if self.since is None or not created_at:
            return False
        try:
            created = parse_time(created_at)
        except ValueError:
            return False
        return created >= parse_time(self.since) - CREATE_SKEW


@dataclass(frozen=True)
class Tunnel:
    """`connected`: the tunnel had active connector connections when read; `remote_config`: its configuration is
    managed in Cloudflare (False: by a local config file; None: not said)."""

    id: str
    name: str
    account_id: str
    deleted: bool = False
    created_at: str | None = None
    connected: bool = False
    remote_config: bool | None = None


@dataclass(frozen=True)
class IngressRule:
    """One rule of a remotely-managed tunnel configuration; key = (hostname, path)."""

    hostname: str
    service: str
    path: str | None = None
    origin_request: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        hostname = normalize_name(self.hostname)
        if not _HOSTNAME.match(hostname) or len(hostname) > 253:
            raise InvalidInput(f"invalid ingress hostname {self.hostname!r}")
        if not _SERVICE.match(self.service):
            raise InvalidInput(f"invalid ingress service {self.service!r}")
        object.__setattr__(self, "hostname", hostname)
        object.__setattr__(self, "path", self.path or None)
        if self.origin_request is not None:
            object.__setattr__(self, "origin_request", _frozen(_camel_keys(self.origin_request)))

    @property
    def key(self) -> tuple[str, str | None]:
        return (self.hostname, self.path)

    def to_wire(self) -> dict[str, Any]:
        rule: dict[str, Any] = {"hostname": self.hostname}
        if self.path:
            rule["path"] = self.path
        rule["service"] = self.service
        if self.origin_request:
            rule["originRequest"] = _plain(self.origin_request)
        return rule


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


@dataclass(frozen=True)
class DnsRecord:
    id: str
    name: str
    type: str
    content: str
    proxied: bool
    ttl: int
    comment: str | None = None


@dataclass(frozen=True)
class DesiredRecord:
    """A record we want; `source` (e.g. `Pod/ns/name`) goes into the ownership marker.

    `adopt`: a record of the same name and type without any chutes-operator marker is taken over
    (updated to this, with our marker) instead of being a `Conflict`; never under create-only.
    """

    name: str
    type: str
    content: str
    proxied: bool = True
    ttl: int = 1
    source: str = field(kw_only=True)
    adopt: bool = field(default=False, kw_only=True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", normalize_name(self.name))
        object.__setattr__(self, "type", self.type.upper())
        if self.type in ("CNAME", "NS", "MX", "PTR"):
            object.__setattr__(self, "content", normalize_name(self.content))
        if not self.name or not _HOSTNAME.match(self.name):
            raise InvalidInput(f"invalid DNS name {self.name!r}")
        if self.proxied and self.type not in ("A", "AAAA", "CNAME"):
            raise InvalidInput(f"a {self.type} record cannot be proxied")
        if self.ttl != 1 and not 30 <= self.ttl <= 86400:
            raise InvalidInput(f"invalid TTL {self.ttl} (1 = automatic, else 30-86400)")
        if not self.source:
            raise InvalidInput("a desired record needs a source")

    @property
    def effective_ttl(self) -> int:
        """Proxied records always use automatic TTL (1)."""
        return 1 if self.proxied else self.ttl


@dataclass(frozen=True)
class Zone:
    id: str
    name: str
    account_id: str
    plan: str  # the plan's legacy id: "free", "pro", "business", "enterprise" (or its name)
    account_name: str = ""  # the name of the account holding the zone (as the zone listing says)

    @property
    def is_free(self) -> bool:
        return self.plan in ("free", "") or "free" in self.plan


@dataclass(frozen=True)
class Policy:
    id: str
    name: str
    decision: str
    include: tuple[Mapping[str, Any], ...] = ()
    exclude: tuple[Mapping[str, Any], ...] = ()
    require: tuple[Mapping[str, Any], ...] = ()
    precedence: int | None = None
    reusable: bool = False


@dataclass(frozen=True)
class AppPolicySpec:
    """An app-scoped Access policy, found again by `name` among the app's policies."""

    name: str
    decision: str = "allow"
    include: tuple[Mapping[str, Any], ...] = ()
    exclude: tuple[Mapping[str, Any], ...] = ()
    require: tuple[Mapping[str, Any], ...] = ()
    precedence: int = 1

    def __post_init__(self) -> None:
        if self.decision not in ("allow", "deny", "non_identity", "bypass"):
            raise InvalidInput(f"invalid Access policy decision {self.decision!r}")
        if not self.include:
            raise InvalidInput(f"Access policy {self.name!r} needs at least one include rule")
        for name in ("include", "exclude", "require"):
            object.__setattr__(self, name, tuple(dict(rule) for rule in getattr(self, name)))


@dataclass(frozen=True)
class AccessApp:
    id: str
    aud: str
    name: str
    domain: str
    type: str = "self_hosted"
    session_duration: str | None = None
    allowed_idps: tuple[str, ...] = ()
    auto_redirect_to_identity: bool = False
    policies: tuple[str, ...] = ()  # ids of the policies attached (reusable and exclusive)
    created_at: str | None = None
    app_policies: tuple[Policy, ...] = ()  # the exclusive (app-scoped) ones, as the app's answer embeds them


@dataclass(frozen=True)
class AccessAppSpec:
    """A self-hosted Access application, found again by `domain` (and owned by `name`).

    `adopt`: when no app named `name` protects the domain and exactly one other app does (not one of
    another owner's: see `CloudflareCore.ensure_access_app`), it is taken over: renamed to `name`, given
    these settings. Without it (or under create-only) such an app is a `Conflict`.
    """

    name: str
    domain: str
    session_duration: str = "24h"
    allowed_idps: tuple[str, ...] = ()
    auto_redirect_to_identity: bool = False
    policies: tuple[str, ...] = ()  # reusable policy ids, in precedence order
    extra: Mapping[str, Any] = field(default_factory=dict)  # other settings, sent as given
    adopt: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "domain", self.domain.strip().lower())
        object.__setattr__(self, "allowed_idps", tuple(self.allowed_idps))
        object.__setattr__(self, "policies", tuple(self.policies))
        object.__setattr__(self, "extra", MappingProxyType(dict(self.extra)))
        if not self.name or not self.domain:
            raise InvalidInput("an Access application needs a name and a domain")


@dataclass(frozen=True)
class IdentityProvider:
    id: str
    name: str
    type: str


@dataclass(frozen=True)
class ServiceToken:
    """`client_secret` is only known right after creation (or rotation); never in repr."""

    id: str
    name: str
    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    expires_at: str | None = None
    created_at: str | None = None
