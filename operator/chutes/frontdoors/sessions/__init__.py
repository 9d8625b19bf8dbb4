"""The session-Pod front door (seed 000, opencode-cloudflare-operator v1): one public hostname per session Pod."""
