"""The Cloudflare core: the only code of chutes-operator that talks to the Cloudflare API.

Front doors hold one `CloudflareCore` (in kopf's memo) and call its find-or-create,
delete and list methods; every failure is one of the exceptions in `errors`.
"""

from __future__ import annotations

from .budget import RequestBudget, shared_budget
from .client import CloudflareClient
from .core import CloudflareCore
from .credentials import token_defect
from .dns import DnsSync, DnsWriter
from .drift import repairing
from .errors import (
    CloudflareError,
    Conflict,
    CredentialsInvalid,
    DryRunStop,
    InvalidInput,
    MarkerTooLong,
    NotFound,
    OutcomeUnknown,
    RateLimited,
    TransientError,
    Unroutable,
    translate,
)
from .models import (
    AccessApp,
    AccessAppSpec,
    AppPolicySpec,
    DesiredRecord,
    DnsRecord,
    IdentityProvider,
    IngressRule,
    Policy,
    Recorded,
    ServiceToken,
    Tunnel,
    Zone,
    cname_target,
    tunnel_of,
)
from .ownership import Ownership, is_ours, legacy_marker, marker, marker_fits, marks, parse
from .tunnel_config import (
    Edit,
    RemoveRule,
    RulePredicate,
    RuleSync,
    SetRule,
    SyncRules,
    TunnelConfigWriter,
    TunnelLock,
    merge_ingress,
)

__all__ = [
    "AccessApp",
    "AccessAppSpec",
    "AppPolicySpec",
    "CloudflareClient",
    "CloudflareCore",
    "CloudflareError",
    "Conflict",
    "CredentialsInvalid",
    "DesiredRecord",
    "DnsRecord",
    "DnsSync",
    "DnsWriter",
    "DryRunStop",
    "Edit",
    "IdentityProvider",
    "IngressRule",
    "InvalidInput",
    "MarkerTooLong",
    "NotFound",
    "OutcomeUnknown",
    "Ownership",
    "Policy",
    "RateLimited",
    "Recorded",
    "RemoveRule",
    "RequestBudget",
    "RulePredicate",
    "RuleSync",
    "ServiceToken",
    "SetRule",
    "SyncRules",
    "TransientError",
    "Tunnel",
    "TunnelConfigWriter",
    "TunnelLock",
    "Unroutable",
    "Zone",
    "cname_target",
    "is_ours",
    "legacy_marker",
    "marker",
    "marker_fits",
    "marks",
    "merge_ingress",
    "parse",
    "repairing",
    "shared_budget",
    "token_defect",
    "translate",
    "tunnel_of",
]
