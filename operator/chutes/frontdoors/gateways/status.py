"""The gateway's and config's status writer (shared beside the doors: :mod:`chutes.frontdoors.status_writer`)."""

from chutes.frontdoors.status_writer import MAX_CONFLICTS, StaleWrite, StatusWriter

__all__ = ["MAX_CONFLICTS", "StaleWrite", "StatusWriter"]
