"""What a sweep pass tells the scope object (a ChuteConfig, a tenant) in Events: a Warning when the deletion
cap was hit (a misconfiguration cannot wipe a zone, and someone should look), and a Normal summary of what
was removed."""

from __future__ import annotations

from typing import Protocol

from chutes import conditions as c
from chutes.sweep.engine import SweepReport

__all__ = ["announce"]

SHOWN = 5


class Events(Protocol):
    def normal(self, reason: str, message: str) -> None: ...

    def warning(self, reason: str, message: str) -> None: ...


def announce(report: SweepReport | None, events: Events) -> None:
    if report is None or report.skipped is not None:
        return
    if report.deleted and report.enforced:
        shown = ", ".join(deletion.describe() for deletion in report.deleted[:SHOWN])
        more = f" and {len(report.deleted) - SHOWN} more" if len(report.deleted) > SHOWN else ""
        events.normal(c.ORPHANS_REMOVED, f"orphan sweep removed {shown}{more}")
    if report.capped:
        events.warning(c.SWEEP_CAP_REACHED, report.cap_message())
