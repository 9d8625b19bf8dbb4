"""Status conditions with cert-manager semantics, and every condition type, condition reason and Event reason
in one place (one name per meaning, whichever front door says it).

``lastTransitionTime`` changes only when a condition's status changes; ``observedGeneration`` is always
set. Functions are pure: they return new lists and never mutate their input.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

Status = Literal["True", "False", "Unknown"]
Condition = dict[str, Any]

# Condition types
READY = "Ready"
TUNNEL_READY = "TunnelReady"
ACCESS_READY = "AccessReady"
DNS_READY = "DNSReady"
CONNECTOR_READY = "ConnectorReady"
CREDENTIALS_READY = "CredentialsReady"
IDENTITY_PROVIDER_READY = "IdentityProviderReady"
DELETION_BLOCKED = "DeletionBlocked"

# Reasons (CamelCase, stable: users alert on them)
RECONCILED = "Reconciled"
PROGRESSING = "Progressing"
PENDING = "Pending"
PUBLIC = "Public"
CONFIG_NOT_FOUND = "ConfigNotFound"
CONFIG_NOT_READY = "ConfigNotReady"
SECRET_NOT_FOUND = "SecretNotFound"
SECRET_KEY_MISSING = "SecretKeyMissing"
CREDENTIALS_INVALID = "CredentialsInvalid"
ACCOUNT_UNREACHABLE = "AccountUnreachable"
HOSTNAME_OUTSIDE_ZONE = "HostnameOutsideZone"
HOSTNAME_CONFLICT = "HostnameConflict"
HOSTNAME_NOT_AUTHORIZED = "HostnameNotAuthorized"  # outside the operator's hostname rules
SERVICE_NOT_FOUND = "ServiceNotFound"
INVALID_SPEC = "InvalidSpec"
IMAGE_NOT_ALLOWED = "ImageNotAllowed"  # a cloudflared image outside the operator's allowed repositories
OBJECT_NOT_OURS = "ObjectNotOurs"  # a Secret or Deployment of the name exists without our labels
RATE_LIMITED = "RateLimited"
CLOUDFLARE_UNAVAILABLE = "CloudflareUnavailable"
CLOUDFLARE_REJECTED = "CloudflareRejected"
CONNECTORS_UNAVAILABLE = "ConnectorsUnavailable"
CONNECTORS_AVAILABLE = "ConnectorsAvailable"
GATEWAYS_REMAIN = "GatewaysRemain"
DELETING = "Deleting"
LEDGER_UNAVAILABLE = "LedgerUnavailable"  # the ledger namespace (claims) does not exist
DRY_RUN = "DryRun"  # dry-run: a Cloudflare object the next step needs would have been created
POLICY_FORBIDS_UPDATE = "PolicyForbidsUpdate"  # create-only: what exists differs from the spec, left as it is


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def find(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions or () if c.get("type") == type_), None)


def set_condition(
    conditions: Sequence[Mapping[str, Any]] | None,
    type_: str,
    status: Status,
    reason: str,
    message: str,
    generation: int | None,
    *,
    timestamp: str | None = None,
) -> list[Condition]:
    """A copy of ``conditions`` with ``type_`` set; other conditions keep their order."""
    previous = find(conditions, type_)
    transition = (
        previous["lastTransitionTime"]
        if previous is not None and previous.get("status") == status and previous.get("lastTransitionTime")
        else timestamp or now()
    )
    updated: Condition = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": transition,
    }
    result = [dict(c) for c in conditions or ()]
    for index, condition in enumerate(result):
        if condition.get("type") == type_:
            result[index] = updated
            return result
    result.append(updated)
    return result


def is_true(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> bool:
    condition = find(conditions, type_)
    return condition is not None and condition.get("status") == "True"


# Reasons of the HTTPRoute front door (CloudflareZeroTrustTenant / -Template)
TENANT_NOT_FOUND = "TenantNotFound"
TENANT_INVALID = "TenantInvalid"
TEMPLATE_NOT_FOUND = "TemplateNotFound"
POLICY_NOT_FOUND = "PolicyNotFound"
LOAD_BALANCER_PENDING = "LoadBalancerPending"

# Reasons of the session-Pod front door
INVALID_SESSION_HASH = "InvalidSessionHash"  # the Pod's session hash label is not one

# The router-hosts front door (HostMapping, Traefik IngressRoute/IngressRouteTCP hosts). The condition type and
# reasons upstream's HostMapping status has (`Synced`), kept for its users' alerts:
SYNCED = "Synced"
CREATED = "Created"
UPDATED = "Updated"
ALREADY_IN_SYNC = "AlreadyInSync"
CREATE_FAILED = "CreateFailed"
UPDATE_FAILED = "UpdateFailed"
DELETE_FAILED = "DeleteFailed"
PREFLIGHT_READ_FAILED = "PreflightReadFailed"  # the server could not be read before deciding
ADOPTION_REFUSED = "AdoptionRefused"  # an entry of this very ip and hostname exists without our comment
# ... and ours:
INVALID_HOSTNAME = "InvalidHostname"  # a route's Host(...) the server would refuse: skipped
INVALID_ANNOTATION = "InvalidAnnotation"  # a host-ids annotation that is not a JSON map: rebuilt
INGRESS_IP_MISSING = "IngressIPMissing"  # routes with hosts, and no CHUTES_DEFAULT_INGRESS_IP

# Event reasons beyond the condition reasons above (Warning Events say a problem with its condition reason).
# A Cloudflare or Kubernetes object made, or seen in place, for a source object (Normal):
# IDENTITY_PROVIDER_READY and TUNNEL_READY above, and
ACCESS_APPLICATION_READY = "AccessApplicationReady"
ACCESS_POLICY_READY = "AccessPolicyReady"
TUNNEL_RULE_READY = "TunnelRuleReady"  # formerly TunnelRouteReady on ChuteGateways (README: renames)
DNS_RECORD_READY = "DNSRecordReady"
SERVICE_TOKEN_READY = "ServiceTokenReady"
SERVICE_TOKEN_ROTATED = "ServiceTokenRotated"
PUBLISHED = "Published"
# ... and removed (Normal):
ACCESS_APPLICATION_REMOVED = "AccessApplicationRemoved"
ACCESS_POLICY_REMOVED = "AccessPolicyRemoved"
TUNNEL_RULE_REMOVED = "TunnelRuleRemoved"  # formerly TunnelRouteRemoved on ChuteGateways
DNS_RECORD_REMOVED = "DNSRecordRemoved"
SERVICE_TOKEN_REMOVED = "ServiceTokenRemoved"
TUNNEL_REMOVED = "TunnelRemoved"
HOSTNAME_REMOVED = "HostnameRemoved"  # a hostname the source object no longer asks for
HOSTNAME_HANDED_OVER = "HostnameHandedOver"  # released to the sources that were refused it
UNPUBLISHED = "Unpublished"
HOST_ENTRY_CREATED = "HostEntryCreated"  # a router-hosts entry (Normal)
HOST_ENTRY_UPDATED = "HostEntryUpdated"
RECREATED = "Recreated"  # upstream's: an entry deleted behind our back, made again
HOST_ENTRY_REMOVED = "HostEntryRemoved"
# The orphan sweep (on the scope object: a ChuteConfig, a tenant, the operator's Pod)
ORPHANS_REMOVED = "OrphansRemoved"
SWEEP_CAP_REACHED = "SweepCapReached"  # Warning: the deletion cap held removals back
