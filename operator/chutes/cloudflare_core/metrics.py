"""Prometheus metrics of the Cloudflare core (default registry)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

__all__ = ["BUDGET_REMAINING", "REQUESTS"]

REQUESTS = Counter(
    "chutes_cloudflare_requests",
    "Cloudflare API requests sent, by operation and HTTP status ('error' when no response came back).",
    ["operation", "status"],
)
BUDGET_REMAINING = Gauge(
    "chutes_cloudflare_budget_remaining",
    "Requests left in the client-side Cloudflare request budget (1,200 per 5 minutes per token), by token "
    "fingerprint (the first 12 hex digits of the token's SHA-256, never the token).",
    ["token"],
)
