"""What the operator tells the outside world about itself: Prometheus metrics and readiness.

``metrics`` holds the operator-level metrics (per front door); the Cloudflare core keeps its own
(requests by operation and status, budget left) in :mod:`chutes.cloudflare_core.metrics`, and the router-hosts
core its calls by RPC and code in :mod:`chutes.hosts_core.metrics`. ``server``
serves ``/metrics`` and ``/readyz`` on the metrics port; kopf's liveness endpoint serves ``/healthz``.
"""
