"""How long the front doors wait before trying again, by cause, in seconds: the one set every door uses."""

from __future__ import annotations

from collections.abc import Sequence

MISSING_RETRY = 30.0  # a config, tenant, template, Secret or Service that may appear
CONFIG_RETRY = 5.0  # a ChuteConfig that exists but is not Ready yet
CONFLICT_RETRY = 60.0  # another source object holds the hostname (cheap: no Cloudflare call)
POLICY_RETRY = 60.0  # a reusable Access policy that may be created
FOREIGN_RETRY = 300.0  # an object in Cloudflare that is not ours is in the way
CREDENTIALS_RETRY = 120.0  # Cloudflare refused the API token
REJECTED_RETRY = 60.0  # Cloudflare refused a session pass (e.g. the tunnel or zone does not exist)
TRANSIENT_RETRY = 10.0  # the least wait after Cloudflare failed or limited us (also for `Retry-After: 0`)
LOST_RETRY = 5.0  # a claim that vanished under us: acquire it again soon
BLOCKED_RECHECK = 60.0  # a deletion only a person can unblock (a ChuteConfig its ChuteGateways still use)
BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0)  # a long-running task (the session passes, the Pod watch) failing again


def backoff(failures: int, steps: Sequence[float] = BACKOFF) -> float:
    """The wait after `failures` (≥ 1) failures in a row: that step of `steps`, its last one beyond."""
    return steps[min(failures, len(steps)) - 1]
