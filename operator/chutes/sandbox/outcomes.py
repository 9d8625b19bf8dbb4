"""A source object's outcome as ``chutes plan`` reports it (a ChuteGateway, an HTTPRoute, a HostMapping...)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    """`ready` None: the object has no Ready condition (e.g. an HTTPRoute that is not enabled); `settled` False:
    the operator is still working on it; `detail`: what a Ready object got, when worth saying."""

    kind: str
    namespace: str | None
    name: str
    ready: bool | None
    reason: str = ""
    message: str = ""
    settled: bool = True
    detail: str = ""

    @property
    def ref(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"
