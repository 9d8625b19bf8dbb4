"""Which namespaces may publish which hostnames: the operator's hostname rules (``CHUTES_HOSTNAME_RULES``,
chart value ``hostnameRules``). Pure: no I/O beyond reading the rules file in :meth:`HostnameRules.load`.

The file (YAML)::

    rules:
      - namespaces: ["team-a", "team-*"]      # exact names or fnmatch globs; "*" = every namespace
        hostnames: ["*.{namespace}.example.com", "app.example.com"]
        adopt: true                           # optional, default false

``{namespace}`` is replaced by the claiming namespace. A hostname pattern ``*.x.y`` matches one or more
labels under ``x.y`` (not ``x.y`` itself), a lone ``*`` matches every hostname, anything else matches
exactly; case does not matter and a trailing dot is ignored. Without a file every namespace may publish
any hostname but a wildcard; with one, a (namespace, hostname) that no rule allows is refused.

**Wildcard hostnames** (``*.example.com``) cover every name under them that has no record of its own, names
other sources hold included (the hostname claim is one exact key): one may be published only where a rules
file is configured and a rule applying to the namespace allows it explicitly, with a lone ``*`` or a ``*.``
pattern covering it (``*.example.com`` allows ``*.example.com`` and ``*.a.example.com``). Without a file,
or without such a rule, it is refused (``HostnameNotAuthorized``, :meth:`HostnameRules.explain` says why).
Only the whole first label may be ``*``; any other use of ``*`` in a hostname is refused.

``adopt: true`` lets the namespaces of a rule adopt unmarked Cloudflare objects at its hostnames, when a
source asks to (see :mod:`chutes.frontdoors.adoption`); adoption is otherwise the installation's setting
``allow_adoption`` alone, off by default.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PLACEHOLDER = "{namespace}"
_NAMESPACE_GLOB = re.compile(r"^[a-z0-9*?\[\]!-]+$")
_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?$")
_SAMPLE_NAMESPACE = "ns"  # stands in for {namespace} when a pattern's shape is checked


class HostnameRulesError(ValueError):
    """The hostname rules are malformed; the message names the file (when read from one) and the entry."""


def normalize(hostname: str) -> str:
    return hostname.strip().lower().rstrip(".")


def is_wildcard(hostname: str) -> bool:
    """Whether `hostname` has a ``*`` anywhere (a wildcard, well-formed or not)."""
    return "*" in hostname


def _wildcard_allowed(pattern: str, hostname: str) -> bool:
    """Whether a normalized pattern allows the normalized wildcard `hostname` explicitly: a lone ``*``, or a
    ``*.`` pattern covering every name the wildcard covers. Only ``*.<name without *>`` is a wildcard at all."""
    if not hostname.startswith("*.") or "*" in hostname[2:]:
        return False
    return pattern == "*" or (pattern.startswith("*.") and pattern_matches(pattern, hostname))


@dataclass(frozen=True)
class Rule:
    namespaces: tuple[str, ...]
    hostnames: tuple[str, ...]
    adopt: bool = False  # the namespaces may adopt unmarked objects at these hostnames

    def applies_to(self, namespace: str) -> bool:
        return any(fnmatch.fnmatchcase(namespace, pattern) for pattern in self.namespaces)

    def patterns_for(self, namespace: str) -> tuple[str, ...]:
        return tuple(normalize(pattern.replace(PLACEHOLDER, namespace)) for pattern in self.hostnames)

    def matches(self, namespace: str, hostname: str) -> bool:
        """Whether this rule applies to `namespace` and one of its patterns matches `hostname` (a wildcard
        hostname: allows it explicitly, see the module docstring)."""
        name = normalize(hostname)
        matcher = _wildcard_allowed if is_wildcard(name) else pattern_matches
        return bool(name) and self.applies_to(namespace) and any(
            matcher(pattern, name) for pattern in self.patterns_for(namespace))


def pattern_matches(pattern: str, hostname: str) -> bool:
    """Whether a normalized hostname pattern (``{namespace}`` already replaced) matches a normalized hostname."""
    if pattern == "*":
        return bool(hostname)
    if pattern.startswith("*."):
        suffix = pattern[1:]  # ".x.y"
        return hostname.endswith(suffix) and len(hostname) > len(suffix)
    return hostname == pattern


class HostnameRules:
    """The rules; ``HostnameRules.allow_all()`` when none are configured."""

    def __init__(self, rules: Iterable[Rule] | None) -> None:
        self._rules = None if rules is None else tuple(rules)

    @classmethod
    def allow_all(cls) -> HostnameRules:
        return cls(None)

    @classmethod
    def from_data(cls, data: Any) -> HostnameRules:
        """Rules from the parsed YAML document; raises :class:`HostnameRulesError` naming what is wrong."""
        if not isinstance(data, Mapping):
            raise HostnameRulesError(f"expected a mapping with a 'rules' list, got {_kind(data)}")
        unknown = sorted(str(key) for key in data if key != "rules")
        if unknown:
            raise HostnameRulesError(f"unknown key(s) {', '.join(unknown)}: only 'rules' is allowed")
        entries = data.get("rules")
        if not isinstance(entries, list):
            raise HostnameRulesError(f"'rules' must be a list, got {_kind(entries)}")
        return cls(_rule(index, entry) for index, entry in enumerate(entries))

    @classmethod
    def load(cls, path: str | Path) -> HostnameRules:
        """Rules from a YAML file; raises :class:`HostnameRulesError` naming the file."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise HostnameRulesError(f"{path}: cannot read the hostname rules: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise HostnameRulesError(f"{path}: the hostname rules are not UTF-8 text") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            raise HostnameRulesError(f"{path}: the hostname rules are not valid YAML{where}") from None
        try:
            return cls.from_data(data)
        except HostnameRulesError as exc:
            raise HostnameRulesError(f"{path}: {exc}") from None

    @property
    def configured(self) -> bool:
        """False for allow-all (no rules file)."""
        return self._rules is not None

    @property
    def rules(self) -> tuple[Rule, ...]:
        return self._rules or ()

    def patterns_for(self, namespace: str) -> tuple[str, ...]:
        """The hostname patterns `namespace` may publish (``{namespace}`` replaced), without duplicates."""
        found: dict[str, None] = {}
        for rule in self.rules:
            if rule.applies_to(namespace):
                found.update(dict.fromkeys(rule.patterns_for(namespace)))
        return tuple(found)

    def allows(self, namespace: str, hostname: str) -> bool:
        """Whether `namespace` may publish `hostname`: without rules any hostname but a wildcard; with rules,
        one a rule applying to the namespace matches (a wildcard only where a rule allows it explicitly)."""
        name = normalize(hostname)
        if self._rules is None:
            return not is_wildcard(name)
        matcher = _wildcard_allowed if is_wildcard(name) else pattern_matches
        return bool(name) and any(matcher(pattern, name) for pattern in self.patterns_for(namespace))

    def may_adopt(self, namespace: str, hostname: str) -> bool:
        """Whether a rule with ``adopt: true`` applies to `namespace` and matches `hostname` (never without
        rules: adoption is then the installation's setting alone)."""
        return any(rule.adopt and rule.matches(namespace, hostname) for rule in self.rules)

    def explain(self, namespace: str, hostname: str) -> str:
        """Why `namespace` may not publish `hostname` (the refusal's message; stable for one rules file)."""
        name = normalize(hostname)
        patterns = self.patterns_for(namespace)
        if is_wildcard(name):
            rules = (f"it may publish {', '.join(patterns)}" if patterns else "no rule allows it any hostname"
                     ) if self.configured else "none are configured"
            return (f"namespace {namespace} may not publish the wildcard hostname {name}: a wildcard covers names "
                    "other sources may hold, so wildcards need an explicit hostname rule (a '*' or '*.domain' "
                    f"pattern covering it) (operator hostname rules: {rules})")
        allowed = f"it may publish {', '.join(patterns)}" if patterns else "no rule allows it any hostname"
        return f"namespace {namespace} may not publish {name} (operator hostname rules: {allowed})"

    def __repr__(self) -> str:
        return "HostnameRules.allow_all()" if self._rules is None else f"HostnameRules({list(self._rules)!r})"


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


def _strings(where: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        raise HostnameRulesError(f"{where} must be a non-empty list of strings, got {_kind(value)}")
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise HostnameRulesError(f"{where}[{index}] must be a non-empty string, got {item!r}")
    return [item.strip() for item in value]


def _rule(index: int, entry: Any) -> Rule:
    where = f"rules[{index}]"
    if not isinstance(entry, Mapping):
        raise HostnameRulesError(f"{where} must be a mapping with 'namespaces' and 'hostnames', got {_kind(entry)}")
    unknown = sorted(str(key) for key in entry if key not in ("namespaces", "hostnames", "adopt"))
    if unknown:
        raise HostnameRulesError(f"{where}: unknown key(s) {', '.join(unknown)}: only 'namespaces', 'hostnames' "
                                 "and 'adopt'")
    for key in ("namespaces", "hostnames"):
        if key not in entry:
            raise HostnameRulesError(f"{where}.{key} is required")
    namespaces = _strings(f"{where}.namespaces", entry["namespaces"])
    for position, pattern in enumerate(namespaces):
        if not _NAMESPACE_GLOB.match(pattern):
            raise HostnameRulesError(f"{where}.namespaces[{position}] {pattern!r}: expected a namespace name or an "
                                     "fnmatch glob of one (lower-case letters, digits, '-', '*', '?', '[...]')")
    hostnames = _strings(f"{where}.hostnames", entry["hostnames"])
    for position, pattern in enumerate(hostnames):
        problem = _hostname_problem(pattern)
        if problem is not None:
            raise HostnameRulesError(f"{where}.hostnames[{position}] {pattern!r}: {problem}")
    adopt = entry.get("adopt", False)
    if not isinstance(adopt, bool):
        raise HostnameRulesError(f"{where}.adopt must be true or false, got {adopt!r}")
    return Rule(tuple(namespaces), tuple(hostnames), adopt)


def _hostname_problem(pattern: str) -> str | None:
    """Why `pattern` is not a hostname pattern, or None."""
    if pattern == "*":
        return None
    sample = normalize(pattern.replace(PLACEHOLDER, _SAMPLE_NAMESPACE))
    if "{" in sample or "}" in sample:
        return "the only placeholder is {namespace}"
    labels = sample.split(".")
    if labels[0] == "*":
        labels = labels[1:]
        if not labels:
            return "'*.' must be followed by a domain"
    if any("*" in label for label in labels):
        return "'*' may only stand alone or as the whole first label ('*.example.com')"
    if len(labels) < 2 and not pattern.startswith("*."):
        return "expected a DNS name with a domain, such as app.example.com or *.example.com"
    bad = next((label for label in labels if not _LABEL.match(label)), None)
    if bad is not None:
        return f"label {bad!r} is not a DNS label"
    return None
