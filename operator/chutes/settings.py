"""The operator's own settings: ``CHUTES_*`` environment variables, overridden by ``chutes run`` flags.

The seeds' variables (``CF_API_TOKEN``, ``DOMAIN``...) keep their names and belong to the front door
that reads them; this module only decides whether that front door is switched on.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import socket
import time
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ENV_PREFIX = "CHUTES_"
OWNER_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
NAMESPACE_PATTERN = re.compile(r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)?$")  # "" means unset

# The variables whose presence switches the session-Pod front door on (its seed's required ones).
SESSION_ENV = ("CF_API_TOKEN", "CF_ZONE_ID", "CF_TUNNEL_ID", "DOMAIN")

FrontDoor = Literal["chutes", "httproutes", "sessions", "hosts", "tunnels"]

# The router-hosts front door's client certificate: all three files, or the door refuses to start (no plaintext).
ROUTER_HOSTS_TLS = ("router_hosts_tls_ca", "router_hosts_tls_cert", "router_hosts_tls_key")


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names it."""


class Settings(BaseModel):
    """Everything ``chutes run`` needs beyond the cluster and the Cloudflare credentials."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    owner_id: str = Field(
        default="default",
        description="Names this installation in the ownership marker of every Cloudflare object it creates.",
    )
    resync_interval: float = Field(default=300.0, gt=0, description="Seconds between drift checks.")
    sweep_interval: float = Field(default=600.0, gt=0, description="Seconds between orphan sweeps.")
    sweep_max_deletions: int = Field(
        default=50,
        ge=0,
        description="Most Cloudflare objects one orphan sweep pass may delete per scope (session Pods: per "
        "sweep_interval); more waits for the next pass and a Warning Event says so (a misconfiguration cannot wipe "
        "a zone). 0: report orphans only.",
    )
    policy: Literal["sync", "upsert-only", "create-only"] = Field(
        default="sync",
        description="As external-dns: sync creates, updates and deletes; upsert-only never deletes; create-only "
        "never updates nor deletes.",
    )
    dry_run: bool = Field(
        default=False, description="Compute and log every Cloudflare change without making it (reads still happen)."
    )
    hostname_rules: str | None = Field(
        default=None,
        description="YAML file of namespace -> hostname pattern rules (chart value hostnameRules); unset: every "
        "namespace may publish any hostname in its zone but a wildcard (*.example.com needs a rule allowing it).",
    )
    allow_adoption: bool = Field(
        default=False,
        description="Honour every source's request to adopt an unmarked Cloudflare object (annotation or "
        "spec.adopt). Off: only where a hostname rule says adopt: true.",
    )
    ledger_namespace: str | None = Field(
        default=None,
        description="Namespace of the ledger (claim ConfigMaps, tunnel Leases); unset: OPERATOR_NAMESPACE, else "
        "the Pod's own namespace, else default.",
    )
    namespaces: tuple[str, ...] = Field(default=(), description="Namespaces to watch; empty means all.")
    cloudflared_images: tuple[str, ...] = Field(
        default=("cloudflare/cloudflared",),
        description="The image repositories a ChuteGateway's spec.cloudflared.image may come from (comma-separated): "
        "a repository matches itself whatever the tag or digest (cloudflare/cloudflared is "
        "docker.io/cloudflare/cloudflared), an entry ending with / every repository below it, * any image. Another "
        "image is refused (ImageNotAllowed) and nothing is deployed.",
    )
    cloudflare_base_url: str | None = Field(
        default=None, description="Cloudflare API base URL; the SDK's CLOUDFLARE_BASE_URL is the fallback."
    )
    rate_limit: int = Field(
        default=1200,
        gt=0,
        description="Cloudflare requests this process may make per token per window. Per process, not shared: "
        "processes using one token split Cloudflare's 1,200 per 5 minutes between them (the chart divides it).",
    )
    rate_window: float = Field(default=300.0, gt=0, description="Seconds of the rate-limit window.")
    max_reconciles: int = Field(
        default=64,
        ge=0,
        description="Most source objects this process reconciles at once (kopf's create, update, resume, resync and "
        "delete handlers of every door but the session Pods', which work in passes); the others wait their turn in "
        "their order of arrival. Bounds the memory of thousands of objects arriving at once (a mass creation, a "
        "restart): each reconcile in flight holds ~30 KB, and the Python allocator keeps what it grew to. 0: no "
        "limit.",
    )
    chutes: bool = Field(default=True, description="Serve ChuteConfig/ChuteGateway.")
    httproutes: bool = Field(default=True, description="Serve annotated HTTPRoutes.")
    tunnels: bool = Field(default=True, description="Serve Tunnel/ClusterTunnel/TunnelBinding (adyanth's API).")
    cluster_resource_namespace: str | None = Field(
        default=None, description="Where a ClusterTunnel's Secret and cloudflared live (adyanth's "
        "--cluster-resource-namespace); None: the operator's namespace."
    )
    shared_tunnel_targets: tuple[str, ...] = Field(
        default=(),
        description="Hosts a TunnelBinding's subject target may reach through a ClusterTunnel besides the binding's "
        "own namespace's Services (comma-separated, e.g. traefik.traefik.svc; * any: adyanth's behaviour). Another "
        "target is refused (InvalidSpec).",
    )
    sessions: bool | None = Field(
        default=None, description="Serve session Pods; None means: when the seed's variables are set."
    )
    router_hosts_address: str | None = Field(
        default=None,
        description="host:port of a router-hosts server (gRPC over mutual TLS); set: serve HostMappings and Traefik "
        "IngressRoute/IngressRouteTCP hosts into it.",
    )
    router_hosts_tls_ca: str | None = Field(
        default=None, description="PEM file of the CA that signed the router-hosts server's certificate."
    )
    router_hosts_tls_cert: str | None = Field(default=None, description="PEM file of our client certificate.")
    router_hosts_tls_key: str | None = Field(default=None, description="PEM file of our client certificate's key.")
    default_ingress_ip: str = Field(
        default="",
        description="The IP registered for Traefik route hostnames; empty: routes with hosts are refused "
        "(IngressIPMissing), nothing registered for them.",
    )
    standalone: bool = Field(default=False, description="Run without kopf peering (no leader election).")
    peering: str | None = Field(
        default=None,
        description="kopf peering object for leader election; when set, its CRD must exist (mandatory peering). "
        "Unset: kopf's default peering when the cluster has kopf's peering CRDs, else none.",
    )
    priority: int | Literal["auto"] = Field(
        default=0,
        description="kopf peering priority of this instance; the highest live one is active. Replicas with equal "
        "priorities all pause (kopf's rule), so replicas of one Deployment use 'auto': a negative number derived "
        "from the process's start time, so that the longest-running replica ranks highest (a new Pod of a rolling "
        "update waits on standby until the old one has gone), the Pod's name (POD_ID, else the hostname) breaking "
        "ties.",
    )
    liveness_endpoint: str | None = Field(default=None, description="e.g. http://0.0.0.0:8080/healthz")
    stop_grace: float = Field(
        default=2.0, ge=0,
        description="Seconds a stop gives the handling of each object under way (a handler, or its wait before a "
        "retry) to finish before it is cancelled (kopf's queueing.exit_timeout).",
    )
    metrics_port: int = Field(
        default=0, ge=0, le=65535, description="Port serving /metrics and /readyz on every interface; 0 = off."
    )
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("owner_id")
    @classmethod
    def _owner_id_shape(cls, value: str) -> str:
        if not OWNER_ID_PATTERN.match(value):
            raise ValueError("must be 1-32 lower-case letters, digits or dashes, starting with a letter or digit")
        return value

    @field_validator("ledger_namespace")
    @classmethod
    def _ledger_namespace_shape(cls, value: str | None) -> str | None:
        if value is not None and not NAMESPACE_PATTERN.match(value):
            raise ValueError("must be a namespace name: up to 63 lower-case letters, digits or dashes")
        return value or None

    @field_validator("namespaces", "shared_tunnel_targets", mode="before")
    @classmethod
    def _split_namespaces(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("cloudflared_images", mode="before")
    @classmethod
    def _split_images(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = tuple(part.strip() for part in value.split(",") if part.strip())
        if not value:
            raise ValueError("must name at least one image repository (or *)")
        return value

    @field_validator("router_hosts_address", *ROUTER_HOSTS_TLS, mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("default_ingress_ip")
    @classmethod
    def _an_ip(cls, value: str) -> str:
        value = value.strip()
        if value:
            try:
                ipaddress.ip_address(value)
            except ValueError:
                raise ValueError("must be an IPv4 or IPv6 address") from None
            if "%" in value:
                raise ValueError("must be an IP address without a zone")
        return value

    @model_validator(mode="after")
    def _router_hosts_tls_complete(self) -> Settings:
        if self.router_hosts_address:
            missing = [name for name in ROUTER_HOSTS_TLS if not getattr(self, name)]
            if missing:
                named = ", ".join(f"{ENV_PREFIX}{name.upper()}" for name in missing)
                raise ValueError(f"{named} must be set with {ENV_PREFIX}ROUTER_HOSTS_ADDRESS: the router-hosts server "
                                 "takes mutual TLS only (a CA, a client certificate and its key)")
        return self

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    def peering_priority(self, environ: Mapping[str, str], started: float | None = None) -> int:
        """The priority to run with: the configured number, or for 'auto' one derived from `started` (the
        process's start, epoch seconds; now by default) and the Pod name. See :func:`auto_priority`."""
        if self.priority != "auto":
            return self.priority
        identity = environ.get("POD_ID") or environ.get("HOSTNAME") or socket.gethostname()
        return auto_priority(time.time() if started is None else started, identity)

    def front_doors(self, environ: Mapping[str, str]) -> tuple[FrontDoor, ...]:
        """The front doors this run serves, in a stable order."""
        doors: list[FrontDoor] = []
        if self.chutes:
            doors.append("chutes")
        if self.httproutes:
            doors.append("httproutes")
        sessions = self.sessions if self.sessions is not None else all(environ.get(k) for k in SESSION_ENV)
        if sessions:
            doors.append("sessions")
        if self.router_hosts_address:
            doors.append("hosts")
        if self.tunnels:
            doors.append("tunnels")
        return tuple(doors)


AUTO_PRIORITY_BASE = 1704067200.0  # 2024-01-01T00:00:00Z: 'auto' priorities count milliseconds from there
_AUTO_MS_LIMIT = 2**41  # milliseconds, ~69 years
_AUTO_TIE_BITS = 21


def auto_priority(started: float, identity: str) -> int:
    """kopf peering priority of a replica started at `started` (epoch seconds) named `identity`: the earlier
    start ranks higher (to the millisecond), so a Pod started during a rolling update stays below the running
    one and takes over only once that one has left the peering (or its keep-alive expired). Two replicas
    started in the same millisecond are told apart by a hash of their names (a tie, which pauses both, is a
    1-in-2-million event). Always negative: below any explicit priority (0 by default) and below the
    Pod-name-only 'auto' priorities of earlier versions (1..2**31-1), so the rolling update to this version
    keeps the old Pod active too. Within int64 (|priority| < 2**62)."""
    elapsed = min(max(int((started - AUTO_PRIORITY_BASE) * 1000), 0), _AUTO_MS_LIMIT - 1)
    tie = int.from_bytes(hashlib.sha256(identity.encode()).digest()[:4], "big") % (1 << _AUTO_TIE_BITS)
    return tie - ((elapsed + 1) << _AUTO_TIE_BITS)


_BOOL_TRUE = {"1", "true", "yes", "on"}
_BOOL_FALSE = {"0", "false", "no", "off", ""}


def _env_value(name: str, raw: str, annotation: Any) -> Any:
    if annotation in (bool, bool | None):
        lowered = raw.strip().lower()
        if lowered in _BOOL_TRUE:
            return True
        if lowered in _BOOL_FALSE:
            return False
        raise SettingsError(f"{ENV_PREFIX}{name.upper()}: expected true or false, got {raw!r}")
    return raw


def load_settings(environ: Mapping[str, str], **overrides: Any) -> Settings:
    """Build settings from ``CHUTES_*`` variables, then flags (``overrides``; ``None`` = not given)."""
    values: dict[str, Any] = {}
    for name, field in Settings.model_fields.items():
        raw = environ.get(f"{ENV_PREFIX}{name.upper()}")
        if raw is not None:
            values[name] = _env_value(name, raw, field.annotation)
    if "cloudflare_base_url" not in values and environ.get("CLOUDFLARE_BASE_URL"):
        values["cloudflare_base_url"] = environ["CLOUDFLARE_BASE_URL"]
    values.update({key: value for key, value in overrides.items() if value is not None})
    try:
        return Settings(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{ENV_PREFIX}{'.'.join(str(p) for p in err['loc']).upper()} (--{str(err['loc'][0]).replace('_', '-')}): "
            f"{err['msg']}" if err["loc"] else str(err["msg"]).removeprefix("Value error, ")  # a rule across settings
            for err in exc.errors()
        )
        raise SettingsError(f"invalid settings: {problems}") from None
