"""The Tunnel / ClusterTunnel / TunnelBinding front door: adyanth/cloudflare-operator's API, served."""
