"""The orphan sweep: what is ours in Cloudflare that no source object of a front door wants any more.

:mod:`verdict` judges (pure), :mod:`engine` lists, judges and deletes one scope per pass, :mod:`cap` is the deletion
cap every door's orphan removals obey (the session door, which removes in its own passes, included); each front door
provides what its live sources want (fresh Kubernetes listings) and a kopf timer.
"""
