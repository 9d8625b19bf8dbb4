"""A strict, stateful emulator of the Cloudflare v4 API subset the operator uses.

Tunnels (+ configuration, token), zones, DNS records (+ batch), Access applications, policies,
identity providers and service tokens, behind Cloudflare's envelope, token auth, a per-token rate
limit and injectable faults. ``python -m chutes.sandbox.cloudflare --help`` runs it standalone.

Where Cloudflare's behaviour is not established, the sandbox's choices are documented in the
module of each resource: ``server`` (auth: unknown token 403/10000, missing/malformed header
400/6003 + 6111, X-Auth-Email/Key 403/10000; routing 404/7000, 405/7001, 404/7003; 429/971;
injected failures 1000), ``tunnels`` (1001/1002/1013/1022/1055/1056), ``dns_records`` and
``dns_batch`` (9xxx, 81044/81045/81053/81054/81058, 1004), ``access_base`` and the ``access_*``
modules (12130/12131), ``service_tokens``.
"""

from .config import SandboxConfig
from .log import RequestRecord, ResponseEvent
from .sandbox import CloudflareSandbox, SandboxThread

__all__ = ["CloudflareSandbox", "RequestRecord", "ResponseEvent", "SandboxConfig", "SandboxThread"]
