"""The Cloudflare core: the only code of chutes-operator that talks to the Cloudflare API.

Front doors hold one `CloudflareCore` (in kopf's memo) and call its find-or-create,
delete and list methods; every failure is one of the exceptions in `errors`.
"""

from __future__ import annotations

from . import models
from .budget import RequestBudget, shared_budget
from .client import CloudflareClient
from .coalescing import in_flight
from .core import CloudflareCore
from .credentials import ApiCredentials, token_defect
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
from .models import *  # noqa: F403  (the value objects: models.__all__, exported below)
from .ownership import Ownership, is_ours, legacy_marker, marker, marker_fits, marks, parse
from .tunnel_config import (
    Edit,
    RemoveRule,
    RulePredicate,
    RuleSync,
    SetDefaults,
    SetRule,
    SyncRules,
    TunnelConfigWriter,
    TunnelLock,
    merge_ingress,
)

__all__ = [
    "ApiCredentials",
    "CloudflareClient",
    "CloudflareCore",
    "CloudflareError",
    "Conflict",
    "CredentialsInvalid",
    "DnsSync",
    "DnsWriter",
    "DryRunStop",
    "Edit",
    "InvalidInput",
    "MarkerTooLong",
    "NotFound",
    "OutcomeUnknown",
    "Ownership",
    "RateLimited",
    "RemoveRule",
    "RequestBudget",
    "RulePredicate",
    "RuleSync",
    "SetDefaults",
    "SetRule",
    "SyncRules",
    "TransientError",
    "TunnelConfigWriter",
    "TunnelLock",
    "Unroutable",
    "in_flight",
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
]
__all__ += models.__all__  # the value objects and their naming helpers, listed once (in models)
__all__.sort()
