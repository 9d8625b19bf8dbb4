"""Prometheus metrics of the Cloudflare core (default registry)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

__all__ = ["BUDGET_REMAINING", "CHANGES_SKIPPED", "DRIFT_REPAIRS", "REQUESTS", "TUNNEL_CONFIG_RACES"]

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
CHANGES_SKIPPED = Counter(
    "chutes_cloudflare_changes_skipped",
    "Cloudflare changes not made, by reason (policy: forbidden by the upsert-only or create-only policy; "
    "dry_run: only logged), object (dns_record, tunnel_rule, access_app, access_policy, service_token, "
    "tunnel, identity_provider) and change (create, update, delete).",
    ["reason", "object", "change"],
)
DRIFT_REPAIRS = Counter(
    "chutes_drift_repairs",
    "Cloudflare writes made by a reconcile that no spec change caused (a resync found an object of ours "
    "changed or gone and put it back), by front door and object.",
    ["front_door", "object"],
)
TUNNEL_CONFIG_RACES = Counter(
    "chutes_tunnel_config_races",
    "Tunnel configuration writes of ours that found another writer had written between our read and our write "
    "(the PUT's version was not the read version + 1): what that writer wrote in between was overwritten. By "
    "tunnel id.",
    ["tunnel"],
)
