"""Annotated Gateway API HTTPRoutes published through CloudflareZeroTrustTenant/-Template (seed 002)."""
