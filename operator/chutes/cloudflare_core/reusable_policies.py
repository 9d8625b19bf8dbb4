"""Reusable Access policies by name, per account: one listing answers every name asked for a while.

A front door that attaches reusable policies by name (the HTTPRoute door's ``existingPolicyNames``) asks for
their ids on every publish. The names are answered from the account's last listing while it is younger than
`ttl` (`POLICY_CACHE_SECONDS`, at most half the resync interval: a resync always sees a listing made in that
pass, so a renamed or deleted policy fails closed at the next one). A name the listing does not hold lists
again at once: a policy created just now is seen. Listings of one account are taken one at a time, and whoever
waited for one uses it.
"""

from __future__ import annotations

import asyncio
import time

from . import access
from .client import CloudflareClient

__all__ = ["POLICY_CACHE_SECONDS", "ReusablePolicies"]

POLICY_CACHE_SECONDS = 30.0


class ReusablePolicies:
    def __init__(self, client: CloudflareClient, account_id: str, ttl: float = POLICY_CACHE_SECONDS) -> None:
        self._client = client
        self.account_id = account_id
        self.ttl = ttl
        self._listed: tuple[float, dict[str, str]] = (float("-inf"), {})
        self._lock = asyncio.Lock()

    async def ids(self, names: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(the ids of the policies named `names`, in that order; the names not found)."""
        async with self._lock:
            listed_at, by_name = self._listed
            if time.monotonic() - listed_at >= self.ttl or any(name not in by_name for name in names):
                began = time.monotonic()
                policies = await access.list_reusable_policies(self._client, self.account_id)
                by_name = {policy.name: policy.id for policy in policies}
                self._listed = (began, by_name)
        missing = tuple(name for name in names if name not in by_name)
        return tuple(by_name[name] for name in names if name in by_name), missing
