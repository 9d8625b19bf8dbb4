"""The orphan sweep: what is ours in Cloudflare that no source object of a front door wants any more.

:mod:`verdict` judges (pure), :mod:`engine` lists, judges and deletes one scope per pass; each front door
provides its claims (fresh Kubernetes listings) and a kopf timer.
"""
