"""A strict, stateful emulator of the Cloudflare v4 API subset the operator uses.

Tunnels (+ configuration, token), zones, DNS records (+ batch), Access applications, policies,
identity providers and service tokens, behind Cloudflare's envelope, token auth, per-token rate
limit and injectable faults. See ``python -m chutes.sandbox.cloudflare --help``.
"""

from .config import SandboxConfig
from .log import RequestRecord, ResponseEvent
from .sandbox import CloudflareSandbox, SandboxThread

__all__ = ["CloudflareSandbox", "RequestRecord", "ResponseEvent", "SandboxConfig", "SandboxThread"]
