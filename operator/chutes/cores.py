"""One Cloudflare core per credential (an API token; for the Tunnel door, also a global API key with its email),
shared by every front door of a running operator.

Cores (and with them the request budget, the tunnel-config writers and the DNS writers) are keyed by a
fingerprint of the credential, never the credential itself, and closed when the operator stops.
"""

from __future__ import annotations

import hashlib

from chutes.cloudflare_core import ApiCredentials, CloudflareCore, RequestBudget, TunnelLock
from chutes.settings import Settings


def fingerprint(api_token: str | ApiCredentials) -> str:
    """A short, non-reversible name for a token (or credentials), safe for logs and dictionary keys."""
    if isinstance(api_token, ApiCredentials):
        return api_token.fingerprint
    return hashlib.sha256(api_token.encode()).hexdigest()[:12]


class CorePool:
    """Lazily built :class:`CloudflareCore` objects, one per token (or global API key and email).

    `tunnel_lock` (settable after construction) is handed to every core built from then on: the lock held
    around each flush of a tunnel's configuration (see `CloudflareCore`). Set it before the first core.
    """

    def __init__(self, settings: Settings, tunnel_lock: TunnelLock | None = None) -> None:
        self._settings = settings
        self._cores: dict[str, CloudflareCore] = {}
        self.tunnel_lock = tunnel_lock

    @property
    def owner_id(self) -> str:
        """The installation's owner id (every core's)."""
        return self._settings.owner_id

    def core_for(self, api_token: str | ApiCredentials) -> CloudflareCore:
        key = fingerprint(api_token)
        core = self._cores.get(key)
        if core is None:
            budget = RequestBudget(limit=self._settings.rate_limit, window=self._settings.rate_window)
            core = CloudflareCore(
                api_token,
                base_url=self._settings.cloudflare_base_url,
                owner_id=self._settings.owner_id,
                budget=budget,
                policy=self._settings.policy,
                dry_run=self._settings.dry_run,
                tunnel_lock=self.tunnel_lock,
                resync_interval=self._settings.resync_interval,
            )
            self._cores[key] = core
        return core

    def __len__(self) -> int:
        return len(self._cores)

    async def aclose(self) -> None:
        cores, self._cores = list(self._cores.values()), {}
        for core in cores:
            await core.aclose()
