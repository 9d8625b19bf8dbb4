"""The HTTPRoute front door's problems: the shared :mod:`chutes.frontdoors.problems` and
:mod:`chutes.frontdoors.retries`, re-exported."""

from chutes.frontdoors.problems import (
    EventSink,
    Post,
    Problem,
    already_said,
    problem_from_cloudflare,
    step,
    to_kopf,
)
from chutes.frontdoors.retries import CONFLICT_RETRY, CREDENTIALS_RETRY, FOREIGN_RETRY, MISSING_RETRY, POLICY_RETRY

__all__ = [
    "CONFLICT_RETRY",
    "CREDENTIALS_RETRY",
    "FOREIGN_RETRY",
    "MISSING_RETRY",
    "POLICY_RETRY",
    "EventSink",
    "Post",
    "Problem",
    "already_said",
    "problem_from_cloudflare",
    "step",
    "to_kopf",
]
