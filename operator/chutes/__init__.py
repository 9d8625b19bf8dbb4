"""chutes-operator: publish Kubernetes workloads through Cloudflare Tunnels, DNS and Access."""

__version__ = "0.1.0"
