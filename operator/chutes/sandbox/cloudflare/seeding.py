"""Pre-existing ("foreign") objects from the seed: tunnels per account, DNS records per zone.
They go through the same validation as API calls, so a bad seed fails loudly at start."""

from __future__ import annotations

from . import dns_records, tunnels
from .config import SandboxConfig
from .envelope import ApiError
from .state import State, TunnelConfig, now_iso


def seed_state(state: State, cfg: SandboxConfig) -> None:
    try:
        for account in cfg.accounts:
            for spec in account.tunnels:
                tunnel = tunnels.create_tunnel(state, account.id, dict(spec))
                if spec.get("config") is not None:
                    tunnels.validate_config(spec["config"])
                    state.tunnel_configs[tunnel.id] = TunnelConfig(1, dict(spec["config"]), now_iso())
        for zone_seed in cfg.zones:
            zone = state.zones[zone_seed.id]
            for record in zone_seed.records:
                dns_records.create(zone, state.dns[zone.id], dict(record))
    except ApiError as error:
        raise ValueError(f"invalid sandbox seed: {error.message} ({error.code})") from None
