"""What the doors check the same way in the specs and annotations they read: a refusal (:class:`SpecError`, with
its condition reason), DNS names, integers, the email addresses and domains an Access allow policy includes. Pure:
no I/O."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, TypeGuard

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")  # the ChuteGateway CRD's pattern


class SpecError(ValueError):
    """The object cannot be served as it is; ``reason`` is a condition reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def is_int(value: object) -> TypeGuard[int]:
    """An integer that is not a boolean (``True`` is an ``int`` to Python, never a port or a count here)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_hostname(name: str) -> bool:
    """Whether `name` is a lower-case DNS name (no wildcard, no trailing dot)."""
    return len(name) <= 253 and all(_LABEL.match(label) for label in name.split("."))


def is_dns_name(name: str) -> bool:
    """Whether `name` is a lower-case DNS name of two labels or more (no wildcard, no trailing dot)."""
    return "." in name and is_hostname(name)


def malformed(emails: Iterable[str], domains: Iterable[str]) -> list[str]:
    """The entries of an allow list that are not an email address (`emails`) or a domain (`domains`)."""
    return [e for e in emails if not _EMAIL.match(e)] + [x for x in domains if not is_dns_name(x)]


def email_include(emails: Iterable[str], domains: Iterable[str]) -> list[dict[str, Any]]:
    """An allow policy's include rules: one per email, one per email domain."""
    return [{"email": {"email": email}} for email in emails] + [
        {"email_domain": {"domain": domain}} for domain in domains]
