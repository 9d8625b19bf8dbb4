"""The bad-input corpus's files (tests/data/bad-inputs/README.md): what the user must see, and the objects."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CORPUS = Path(__file__).resolve().parents[1] / "data" / "bad-inputs"
MAX_WARNINGS_PER_OBJECT = 3  # one per distinct problem: a bad object has one


@dataclass
class Entry:
    """One corpus file: what the user must see, and the objects (the first one is the subject)."""

    path: Path
    expect: dict[str, Any]
    objects: list[dict[str, Any]]
    before: list[dict[str, Any]] = field(default_factory=list)
    cloudflare: dict[str, Any] = field(default_factory=dict)
    bypass: dict[str, Any] = field(default_factory=dict)
    note: str = ""  # said after the file's name in failures
    raw: dict[str, Any] = field(default_factory=dict)  # the whole file (keys of one door's own, e.g. `entries`)

    @property
    def name(self) -> str:
        return str(self.path.relative_to(CORPUS)) + self.note

    @property
    def subject(self) -> dict[str, Any]:
        return self.objects[0]

    @property
    def via(self) -> str:
        return str(self.expect["via"])

    def bypassed(self) -> Entry:
        """What the operator must say when admission is bypassed (a CRD installed without its schema)."""
        return Entry(self.path, {"via": "condition", **self.bypass}, self.objects[:1], note=" (admission bypassed)")


def load(path: Path, values: dict[str, str]) -> Entry:
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"\$\{REPEAT:(.):(\d+)\}", lambda m: m.group(1) * int(m.group(2)), text)
    text = re.sub(r"\$\{([A-Z_]+)\}", lambda m: values.get(m.group(1), m.group(0)), text)
    doc = yaml.safe_load(text)
    return Entry(path, doc["expect"], doc["objects"], doc.get("before") or [], doc.get("cloudflare") or {},
                 doc.get("bypass") or {}, raw=doc)
