"""What a Cloudflare API token may look like: checked where a token is read, before anything sends it.

A token is printable ASCII without whitespace. Anything else (an inner CR/LF, a tab, a non-ASCII
character) would become a malformed ``Authorization`` header whose text HTTP libraries quote in their
errors and debug logs; it is refused instead, with a message that never echoes any of its characters.
"""

from __future__ import annotations

import re

__all__ = ["TOKEN_SHAPE", "token_defect"]

TOKEN_SHAPE = "printable ASCII without whitespace"
_TOKEN = re.compile(r"[\x21-\x7e]+")


def token_defect(token: str) -> str | None:
    """None for a well-formed token; else what is wrong with it (e.g. "is empty"), naming no character of it."""
    if not token:
        return "is empty"
    if not _TOKEN.fullmatch(token):
        return f"holds a character other than {TOKEN_SHAPE} (e.g. a line break inside it)"
    return None
