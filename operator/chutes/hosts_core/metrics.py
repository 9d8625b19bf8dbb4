"""Prometheus metrics of the router-hosts client (default registry)."""

from __future__ import annotations

from prometheus_client import Counter

__all__ = ["CALLS"]

CALLS = Counter(
    "chutes_router_hosts_calls",
    "RPCs sent to the router-hosts server, each attempt counted, by RPC (AddHost, GetHost, UpdateHost, DeleteHost, "
    "ListHosts, SearchHosts) and gRPC status code (OK, NOT_FOUND, UNAVAILABLE, DEADLINE_EXCEEDED...).",
    ["rpc", "code"],
)
