"""The ``cfzt.cloudflare.com/`` annotation keys (input and result), resource coordinates, object names,
and the parsers of annotation values. Every parser raises :class:`ValueProblem` with a message that names
the key and the value it refused; nothing here does I/O.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from chutes.cloudflare_core.ownership import DEFAULT_OWNER, owned_name
from chutes.frontdoors import annotation_keys

# --- resources ---------------------------------------------------------------------------------------
GROUP = "cfzt.cloudflare.com"
VERSION = "v1alpha1"
TENANT_PLURAL = "cloudflarezerotrusttenants"
TEMPLATE_PLURAL = "cloudflarezerotrusttemplates"
TENANT_KIND = "CloudflareZeroTrustTenant"
TEMPLATE_KIND = "CloudflareZeroTrustTemplate"
ROUTE_GROUP = "gateway.networking.k8s.io"
ROUTE_VERSION = "v1"
ROUTE_PLURAL = "httproutes"
ROUTE_KIND = "HTTPRoute"

# --- input annotations -------------------------------------------------------------------------------
PREFIX = f"{GROUP}/"
ENABLED = PREFIX + "enabled"
TENANT = PREFIX + "tenant"
HOSTNAME = PREFIX + "hostname"
TEMPLATE = PREFIX + "template"
TUNNEL_ID = PREFIX + "tunnelId"
DNS_IP = PREFIX + "dnsIp"
ORIGIN_URL = PREFIX + "origin.url"
ORIGIN_NO_TLS_VERIFY = PREFIX + "origin.noTLSVerify"
ACCESS_ENABLED = PREFIX + "access.enabled"
ACCESS_SESSION_DURATION = PREFIX + "access.sessionDuration"
ACCESS_ALLOW_GROUPS = PREFIX + "access.allowGroups"
ACCESS_ALLOW_EMAILS = PREFIX + "access.allowEmails"
ACCESS_EXISTING_POLICY_NAMES = PREFIX + "access.existingPolicyNames"
ACCESS_AUTO_REDIRECT = PREFIX + "access.autoRedirectToIdentity"
ACCESS_BINDING_COOKIE = PREFIX + "access.enableBindingCookie"
ACCESS_HTTP_ONLY_COOKIE = PREFIX + "access.httpOnlyCookieAttribute"
ACCESS_SAME_SITE_COOKIE = PREFIX + "access.sameSiteCookieAttribute"
ACCESS_SKIP_INTERSTITIAL = PREFIX + "access.skipInterstitial"
ACCESS_APP_LAUNCHER_VISIBLE = PREFIX + "access.appLauncherVisible"
ACCESS_SERVICE_AUTH_401 = PREFIX + "access.serviceAuth401Redirect"
SERVICE_TOKEN_ENABLED = PREFIX + "serviceToken.enabled"
SERVICE_TOKEN_DURATION = PREFIX + "serviceToken.duration"
INPUT_KEYS = frozenset({
    ENABLED, TENANT, HOSTNAME, TEMPLATE, TUNNEL_ID, DNS_IP, ORIGIN_URL, ORIGIN_NO_TLS_VERIFY, ACCESS_ENABLED,
    ACCESS_SESSION_DURATION, ACCESS_ALLOW_GROUPS, ACCESS_ALLOW_EMAILS, ACCESS_EXISTING_POLICY_NAMES,
    ACCESS_AUTO_REDIRECT, ACCESS_BINDING_COOKIE, ACCESS_HTTP_ONLY_COOKIE, ACCESS_SAME_SITE_COOKIE,
    ACCESS_SKIP_INTERSTITIAL, ACCESS_APP_LAUNCHER_VISIBLE, ACCESS_SERVICE_AUTH_401, SERVICE_TOKEN_ENABLED,
    SERVICE_TOKEN_DURATION,
})  # the seed's input keys, exactly

# --- result annotations (written back; excluded from the hash) --------------------------------------
HOSTNAME_ROUTE_ID = PREFIX + "hostnameRouteId"  # the tunnel id, as the seed writes it
CNAME_RECORD_ID = PREFIX + "cnameRecordId"
DNS_RECORD_ID = PREFIX + "dnsRecordId"
DNS_RECORD_IP = PREFIX + "dnsRecordIp"
ACCESS_APP_ID = PREFIX + "accessAppId"
ACCESS_POLICY_IDS = PREFIX + "accessPolicyIds"
SERVICE_TOKEN_ID = PREFIX + "serviceTokenId"
SERVICE_TOKEN_SECRET_NAME = PREFIX + "serviceTokenSecretName"
LAST_RECONCILE = PREFIX + "lastReconcile"  # excluded by the seed, never written (it looped)
CONDITIONS = PREFIX + "conditions"  # ours: the route's conditions as JSON (HTTPRoute status is not ours)

RESULT_KEYS = (
    HOSTNAME_ROUTE_ID,
    CNAME_RECORD_ID,
    DNS_RECORD_ID,
    DNS_RECORD_IP,
    ACCESS_APP_ID,
    ACCESS_POLICY_IDS,
    SERVICE_TOKEN_ID,
    SERVICE_TOKEN_SECRET_NAME,
)
OUTPUT_KEYS = frozenset({*RESULT_KEYS, LAST_RECONCILE, CONDITIONS})

# --- every other key under our prefixes is a typo (InvalidSpec, nothing published or changed) -------------
RECONCILE_HANDLER_ID = "cfzt-reconcile"  # the route's kopf change handler: its progress is kopf's, under ours
KNOWN_KEYS = INPUT_KEYS | OUTPUT_KEYS | annotation_keys.own_keys([RECONCILE_HANDLER_ID])
CHECKED_PREFIXES = (PREFIX, annotation_keys.PREFIX)

# --- other names ---------------------------------------------------------------------------------------
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "cfzt-operator"  # the seed's value: existing state ConfigMaps are found by it
LABEL_ROUTE_NAME = f"{GROUP}/httproute-name"
LABEL_ROUTE_NAMESPACE = f"{GROUP}/httproute-namespace"
LABEL_TENANT = f"{GROUP}/tenant"
LEGACY_FINALIZER = "kopf.zalando.org/KopfFinalizerMarker"  # left on routes by the seed (v0.2.13+)
CLIENT_ID_KEY = "CF_ACCESS_CLIENT_ID"
CLIENT_SECRET_KEY = "CF_ACCESS_CLIENT_SECRET"


NAME_PREFIX = "cfzt-"  # of every Access application and service token name


def app_name(hostname: str, owner_id: str = DEFAULT_OWNER) -> str:
    """The seed's ``cfzt-<hostname>``, owner-qualified for an owner id other than the default one."""
    return owned_name(f"{NAME_PREFIX}{hostname}", owner_id)


def allow_policy_name(hostname: str) -> str:
    return f"cfzt-{hostname}-allow"


def token_name(hostname: str, owner_id: str = DEFAULT_OWNER) -> str:
    return owned_name(f"{NAME_PREFIX}{hostname}", owner_id)


def secret_name(route_name: str) -> str:
    return f"cfzt-svctoken-{route_name}"


def state_name(route_namespace: str, route_name: str) -> str:
    return f"cfzt-{route_namespace}-{route_name}"


def base_template_name(tenant: str) -> str:
    return f"base-{tenant}"


def source(route_namespace: str, route_name: str) -> str:
    """The route as named in the ownership marker of its DNS record."""
    return f"{ROUTE_KIND}/{route_namespace}/{route_name}"


def enabled_problem(annotations: Mapping[str, str] | None) -> str | None:
    """Why the ``enabled`` annotation is neither ``"true"`` (the only value the seed, and kopf's filter, publish)
    nor a false value: a value such as ``maybe``, ``ture`` or ``yes`` must not leave the route silently
    unpublished. None when it is absent, ``"true"`` or false."""
    raw = (annotations or {}).get(ENABLED)
    if raw is None or raw == "true" or raw.strip().lower() in _FALSE:
        return None
    return f"{ENABLED}: expected \"true\" (publish) or \"false\", got {raw!r}: nothing is published"


def is_enabled(annotations: Mapping[str, str] | None) -> bool:
    """Exactly ``"true"``, as the seed's kopf filter: any other value means "not managed"."""
    return (annotations or {}).get(ENABLED) == "true"


def inputs(annotations: Mapping[str, str] | None) -> dict[str, str]:
    """The ``cfzt.cloudflare.com/`` annotations the user wrote (result annotations left out)."""
    return {k: v for k, v in (annotations or {}).items() if k.startswith(PREFIX) and k not in OUTPUT_KEYS}


def unknown_key_problems(annotations: Mapping[str, str] | None) -> list[str]:
    """One message per key under ``cfzt.cloudflare.com/`` or ``chutes.troubleshat.com/`` that the route's door
    neither reads nor writes (nor kopf), naming the closest key it reads."""
    return annotation_keys.problems(annotations, CHECKED_PREFIXES, KNOWN_KEYS,
                                    INPUT_KEYS | annotation_keys.INPUT_KEYS)


def checked(annotations: Mapping[str, str] | None) -> dict[str, str]:
    """The annotations under our prefixes that a change of deserves a look: kopf's own left out."""
    return {k: v for k, v in (annotations or {}).items()
            if k.startswith(CHECKED_PREFIXES) and k not in OUTPUT_KEYS and k not in _KOPF_KEYS}


_KOPF_KEYS = annotation_keys.kopf_keys([RECONCILE_HANDLER_ID])


# --- value parsers ---------------------------------------------------------------------------------------


class ValueProblem(ValueError):
    """One refused value; the message names where it came from."""


_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
_HOSTNAME = re.compile(r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_DURATION = re.compile(r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")
_ORIGIN_SCHEMES = frozenset({"http", "https", "tcp", "ssh", "rdp", "smb", "unix", "unix+tls"})
_SPECIAL_ORIGINS = re.compile(r"^(http_status:[1-5][0-9]{2}|hello_world)$")
SAME_SITE_VALUES = ("none", "lax", "strict")


def parse_bool(where: str, raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
        return raw.strip().lower() in _TRUE
    raise ValueProblem(f"{where}: expected true or false, got {raw!r}")


def parse_int(where: str, raw: object, low: int, high: int) -> int:
    value: int | None = None
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif isinstance(raw, str) and raw.strip().isdigit():
        value = int(raw.strip())
    if value is None or not low <= value <= high:
        raise ValueProblem(f"{where}: expected an integer from {low} to {high}, got {raw!r}")
    return value


def parse_csv(raw: str) -> tuple[str, ...]:
    """Comma-separated values, stripped, empties dropped (the seed's ``_split_csv``)."""
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def parse_list(where: str, raw: object) -> tuple[str, ...]:
    """A template list (or a CSV string) of non-empty strings."""
    if isinstance(raw, str):
        return parse_csv(raw)
    if isinstance(raw, list | tuple) and all(isinstance(item, str) for item in raw):
        return tuple(item.strip() for item in raw if item.strip())
    raise ValueProblem(f"{where}: expected a list of strings, got {raw!r}")


def parse_str(where: str, raw: object) -> str:
    if isinstance(raw, str):
        return raw
    raise ValueProblem(f"{where}: expected a string, got {raw!r}")


def parse_hostname(where: str, raw: object) -> str:
    value = parse_str(where, raw).strip().rstrip(".").lower()
    if len(value) > 253 or not _HOSTNAME.match(value):
        raise ValueProblem(f"{where}: {raw!r} is not a fully qualified host name such as app.example.com")
    return value


def parse_uuid(where: str, raw: object) -> str:
    value = parse_str(where, raw).strip().lower()
    if not _UUID.match(value):
        raise ValueProblem(f"{where}: {raw!r} is not a tunnel UUID")
    return value


def parse_ip(where: str, raw: object) -> str:
    text = parse_str(where, raw).strip()
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueProblem(f"{where}: {raw!r} is not an IPv4 or IPv6 address") from None


def parse_duration(where: str, raw: object) -> str:
    value = parse_str(where, raw).strip()
    if not _DURATION.match(value):
        raise ValueProblem(f"{where}: {raw!r} is not a duration such as 24h, 30m or 8760h")
    return value


def parse_origin(where: str, raw: object) -> str:
    """An origin service as cloudflared takes it: ``http(s)://host[:port]``, ``tcp://``, ``unix://``...,
    ``http_status:NNN`` or ``hello_world``."""
    value = parse_str(where, raw).strip()
    if _SPECIAL_ORIGINS.match(value):
        return value
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise ValueProblem(f"{where}: {raw!r} is not a URL") from None
    if parts.scheme not in _ORIGIN_SCHEMES:
        schemes = ", ".join(sorted(_ORIGIN_SCHEMES))
        raise ValueProblem(f"{where}: {raw!r} is not a URL with one of the schemes {schemes}")
    if not (parts.netloc or (parts.scheme.startswith("unix") and parts.path)) or any(c.isspace() for c in value):
        raise ValueProblem(f"{where}: {raw!r} is not a URL with a host")
    return value


def parse_same_site(where: str, raw: object) -> str:
    value = parse_str(where, raw).strip().lower()
    if value not in SAME_SITE_VALUES:
        raise ValueProblem(f"{where}: expected one of {', '.join(SAME_SITE_VALUES)}, got {raw!r}")
    return value
