"""Kubernetes label selectors (the string form): parsed, validated, matched against labels.

Grammar (as ``kubectl``): requirements joined by commas, each ``key``, ``!key``, ``key=value``,
``key==value``, ``key!=value``, ``key in (a,b)`` or ``key notin (a,b)``. The same string is sent to the
API server for server-side filtering; :meth:`LabelSelector.matches` filters again on our side.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_NAME = r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?"
_PREFIX = r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?"
_KEY = re.compile(rf"^({_PREFIX}/)?{_NAME}$")
_VALUE = re.compile(rf"^({_NAME})?$")
_REQUIREMENT = re.compile(
    r"^\s*(?:(?P<not>!)\s*(?P<absent>[^\s=!,()]+)"
    r"|(?P<key>[^\s=!,()]+)\s*(?:(?P<op>==|=|!=)\s*(?P<value>[^\s=!,()]*)"
    r"|\s+(?P<setop>in|notin)\s*\((?P<values>[^()]*)\))?)\s*$"
)


class SelectorError(ValueError):
    """The selector string is malformed."""


def valid_label_key(key: str) -> bool:
    return bool(_KEY.match(key)) and len(key.rpartition("/")[2]) <= 63


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # "exists", "!exists", "in", "notin" ("=" is "in" with one value)
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "exists":
            return self.key in labels
        if self.operator == "!exists":
            return self.key not in labels
        if self.operator == "in":
            return labels.get(self.key) in self.values
        return labels.get(self.key) not in self.values  # notin: an absent key matches too


def _split(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _parse_requirement(text: str) -> Requirement:
    found = _REQUIREMENT.match(text)
    if found is None:
        raise SelectorError(f"cannot parse {text.strip()!r}")
    key = found.group("absent") or found.group("key")
    if not valid_label_key(key):
        raise SelectorError(f"invalid label key {key!r}")
    if found.group("absent"):
        return Requirement(key, "!exists")
    if found.group("op"):
        values = [found.group("value")]
        operator = "notin" if found.group("op") == "!=" else "in"
    elif found.group("setop"):
        values = [value.strip() for value in found.group("values").split(",")]
        operator = found.group("setop")
        if not any(values):
            raise SelectorError(f"{key}: empty value set")
    else:
        return Requirement(key, "exists")
    for value in values:
        if not _VALUE.match(value):
            raise SelectorError(f"invalid label value {value!r} for {key}")
    return Requirement(key, operator, frozenset(values))


@dataclass(frozen=True)
class LabelSelector:
    text: str
    requirements: tuple[Requirement, ...]

    @classmethod
    def parse(cls, text: str) -> LabelSelector:
        stripped = text.strip()
        if not stripped:
            return cls("", ())
        return cls(stripped, tuple(_parse_requirement(part) for part in _split(stripped)))

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        return all(requirement.matches(labels or {}) for requirement in self.requirements)
