"""The orphan sweep: what is ours in Cloudflare that no source object of a front door wants any more.

:mod:`plan` decides (pure), :mod:`engine` lists, plans and deletes one scope per pass; each front door
provides its claims (fresh Kubernetes listings) and a kopf timer.
"""
