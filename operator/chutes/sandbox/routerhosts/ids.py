"""ULIDs as the server makes and reads them: 26 upper-case Crockford base32 characters, monotonic in one process.

Parsing follows oklog/ulid's messages (``invalid ID "<id>": ulid: ...``); ids are compared upper-cased, as the
server decodes lower-case letters to the same ULID. One deliberate strictness: the server's non-strict parse turns
characters outside the alphabet (``I L O U`` and punctuation) into some other id, which then is not found; the
emulator refuses them with INVALID_ARGUMENT, so a client that mangles ids is caught here.
"""

from __future__ import annotations

import secrets
import threading
import time

__all__ = ["ALPHABET", "UlidGenerator", "canonical_id", "id_problem"]

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_VALID = frozenset(ALPHABET + ALPHABET.lower())


class UlidGenerator:
    """Each id is greater than the previous one (same millisecond: the random part goes up by one). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0

    def new(self) -> str:
        with self._lock:
            value = (int(time.time() * 1000) << 80) | secrets.randbits(80)
            if value <= self._last:
                value = self._last + 1
            self._last = value
        return _encode(value)


def _encode(value: int) -> str:
    chars = []
    for _ in range(26):
        chars.append(ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def id_problem(text: str) -> str | None:
    """None for a well-formed ULID, else the server's reason (without the ``invalid ID "<id>": `` prefix)."""
    if len(text) != 26:
        return "ulid: bad data size when unmarshaling"
    if not _VALID.issuperset(text):
        return "ulid: bad data characters when parsing"
    if text[0] > "7":
        return "ulid: overflow when unmarshaling"
    return None


def canonical_id(text: str) -> str:
    return text.upper()
