"""The router-hosts server's validation rules (reference §5.2), pure, with the server's own messages.

The door checks a spec with these before any call, so a bad spec is reported on its object instead of being
sent (and refused with INVALID_ARGUMENT); the emulator (``chutes.sandbox.routerhosts``) refuses with the same
rules and texts. ``tests/test_hosts_validation.py`` holds the table of inputs both are checked against.

- An IP is what Go's ``net.ParseIP`` accepts: dotted-quad IPv4 without leading zeros, IPv6 (also with an
  embedded IPv4, so IPv4-mapped addresses pass), never a zone (``%eth0``), never surrounding whitespace.
- A hostname is 1-253 bytes of dot-separated labels matching ``[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?``:
  no leading or trailing dot or hyphen, no empty label, no ``_``; a single label (``nas``) passes.
- Aliases: at most 50; each is not an IP, is a hostname, differs from the canonical hostname and from every
  other alias (both without regard to case).
- Tags and comments are not validated at all.
"""

from __future__ import annotations

import ipaddress
import re

__all__ = ["MAX_ALIASES", "alias_problems", "hostname_problem", "ip_problem"]

MAX_ALIASES = 50
_LABEL = re.compile(r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?")


def ip_problem(ip: str) -> str | None:
    """None when the server accepts `ip`, else its message (``invalid IP address: <ip>``)."""
    if not _parses_as_go_ip(ip):
        return f"invalid IP address: {ip}"
    return None


def _parses_as_go_ip(text: str) -> bool:
    # Python's parser agrees with Go's net.ParseIP (no leading zeros, no octal or hex, ASCII digits only,
    # embedded IPv4 in IPv6) except that it accepts an IPv6 zone: Go's ParseIP never does.
    if "%" in text:
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def hostname_problem(name: str) -> str | None:
    """None when the server accepts `name` as a hostname, else the first rule it breaks (the server's text)."""
    if name == "":
        return "hostname cannot be empty"
    if len(name.encode("utf-8")) > 253:  # Go counts bytes
        return "hostname exceeds maximum length of 253 characters"
    if name.startswith(".") or name.endswith("."):
        return "hostname cannot start or end with dot"
    if name.startswith("-") or name.endswith("-"):
        return "hostname cannot start or end with hyphen"
    for label in name.split("."):
        if label == "":
            return "hostname cannot contain consecutive dots"
        if not _LABEL.fullmatch(label):  # fullmatch: Go's `$` never matches before a trailing newline
            return f"invalid label '{label}' in hostname"
    return None


def alias_problems(hostname: str, aliases: tuple[str, ...] | list[str]) -> list[str]:
    """Every problem of `aliases` for an entry named `hostname`, in the server's order and words; [] when none.
    The server reports only the first one, as ``validation failed: alias validation: <first>``."""
    if len(aliases) > MAX_ALIASES:
        return [f"too many aliases: {len(aliases)} exceeds maximum of {MAX_ALIASES}"]
    problems: list[str] = []
    seen: set[str] = set()
    for alias in aliases:
        if _parses_as_go_ip(alias):
            problems.append(f"alias '{alias}' cannot be an IP address")
            continue
        problem = hostname_problem(alias)
        if problem is not None:
            problems.append(f"invalid alias '{alias}': {problem}")
            continue
        if alias.lower() == hostname.lower():
            problems.append(f"alias '{alias}' matches canonical hostname")
        if alias.lower() in seen:
            problems.append(f"duplicate alias '{alias}' in entry")
        seen.add(alias.lower())
    return problems
