"""What the core authenticates with, and what a credential may look like: checked where it is read, before
anything sends it.

Two kinds, as Cloudflare has them: an API token (``Authorization: Bearer``), which every front door uses, and a
global API key with its account's email (``X-Auth-Key`` + ``X-Auth-Email``), which the Tunnel door accepts as
adyanth's operator does. :class:`ApiCredentials` holds either; its ``repr`` and its fingerprint name no character
of the secret.

A token or key is printable ASCII without whitespace. Anything else (an inner CR/LF, a tab, a non-ASCII character)
would become a malformed header whose text HTTP libraries quote in their errors and debug logs; it is refused
instead, with a message that never echoes any of its characters.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

__all__ = ["TOKEN_SHAPE", "ApiCredentials", "email_defect", "token_defect"]

TOKEN_SHAPE = "printable ASCII without whitespace"
_TOKEN = re.compile(r"[\x21-\x7e]+")
_EMAIL = re.compile(r"[\x21-\x3f\x41-\x7e]+@[\x21-\x3f\x41-\x7e]+\.[\x21-\x3f\x41-\x7e]+")


def token_defect(token: str) -> str | None:
    """None for a well-formed token; else what is wrong with it (e.g. "is empty"), naming no character of it."""
    if not token:
        return "is empty"
    if not _TOKEN.fullmatch(token):
        return f"holds a character other than {TOKEN_SHAPE} (e.g. a line break inside it)"
    return None


def email_defect(email: str) -> str | None:
    """None for an email address that fits the ``X-Auth-Email`` header; else what is wrong with it."""
    if not email:
        return "is empty"
    if not _EMAIL.fullmatch(email):
        return f"is not an email address ({TOKEN_SHAPE}, one @)"
    return None


@dataclass(frozen=True, repr=False)
class ApiCredentials:
    """An API token, or a global API key and the email of its account (exactly one of `token` and `key`)."""

    token: str | None = None
    key: str | None = None
    email: str | None = None

    def __post_init__(self) -> None:
        if (self.token is None) == (self.key is None):
            raise ValueError("ApiCredentials: exactly one of an API token and a global API key")
        if self.key is not None and self.email is None:
            raise ValueError("ApiCredentials: a global API key needs its account's email")

    @classmethod
    def of(cls, credentials: str | ApiCredentials) -> ApiCredentials:
        """`credentials` as ApiCredentials (a string is an API token)."""
        return credentials if isinstance(credentials, ApiCredentials) else cls(token=credentials)

    @property
    def is_key(self) -> bool:
        return self.key is not None

    @property
    def secret(self) -> str:
        """The secret part (the token or the key): what must never be shown."""
        return self.token if self.token is not None else str(self.key)

    @property
    def kind(self) -> str:
        return "global API key" if self.is_key else "API token"

    @property
    def fingerprint(self) -> str:
        """A short, non-reversible name, safe for logs, metrics and dictionary keys (a token's is the first 12 hex
        digits of its sha256)."""
        material = self.secret if self.token is not None else f"{self.email}\n{self.key}"
        return hashlib.sha256(material.encode()).hexdigest()[:12]

    def defect(self) -> str | None:
        """None when well-formed; else what is wrong (``the API token is empty``...), naming no secret character."""
        secret = token_defect(self.secret)
        if secret is not None:
            return f"the Cloudflare {self.kind} {secret}"
        if self.is_key:
            email = email_defect(self.email or "")
            if email is not None:
                return f"the email of the Cloudflare global API key {email}"
        return None

    def __repr__(self) -> str:
        return f"ApiCredentials({self.kind}, fingerprint={self.fingerprint})"
