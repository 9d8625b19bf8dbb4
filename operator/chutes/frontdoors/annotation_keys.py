"""Which annotation keys under the operator's prefixes a front door knows. A key under ``cfzt.cloudflare.com/``
or ``chutes.troubleshat.com/`` that is neither one a door reads nor one the operator or kopf writes is a typo
(``access.enable`` for ``access.enabled``): the door refuses the object (``InvalidSpec``, naming the key and the
closest known one) instead of publishing it as if the key were absent. Pure.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from chutes.frontdoors.adoption import ADOPT_ANNOTATION

PREFIX = "chutes.troubleshat.com/"  # the operator's own (and kopf's storage prefix: see runtime.configure_kopf)

# Written by kopf's storages under that prefix: the Kopf marker, the diff base, the touch key of a retry.
KOPF_NAMES = ("kopf-managed", "last-handled-configuration", "touch-dummy")

# Keys users write under that prefix on the objects the doors read (HTTPRoutes, ChuteGateways, session Pods).
INPUT_KEYS = frozenset({ADOPT_ANNOTATION})

UNKNOWN = "unknown annotation"  # how every message about such a key starts


def kopf_keys(handler_ids: Iterable[str]) -> frozenset[str]:
    """What kopf may write under :data:`PREFIX` on an object whose change handlers have `handler_ids` (their
    progress, while a handler is retried)."""
    names = [*KOPF_NAMES, *(handler_id.replace("/", ".") for handler_id in handler_ids)]
    return frozenset(PREFIX + name for name in names)


def own_keys(handler_ids: Iterable[str]) -> frozenset[str]:
    """Every key under :data:`PREFIX` a door accepts on an object with kopf change handlers `handler_ids`."""
    return INPUT_KEYS | kopf_keys(handler_ids)


def unknown_keys(annotations: Mapping[str, Any] | None, prefixes: Collection[str], known: Collection[str]) -> list[str]:
    """The keys under `prefixes` that are not `known`, sorted."""
    return sorted(key for key in (annotations or {}) if key.startswith(tuple(prefixes)) and key not in known)


def closest(key: str, candidates: Collection[str]) -> str | None:
    """The candidate under the same prefix `key` was most likely meant to be (case ignored), if any is close."""
    prefix, _, name = key.rpartition("/")
    by_name = {c.rpartition("/")[2].lower(): c for c in candidates if c.rpartition("/")[0] == prefix}
    found = difflib.get_close_matches(name.lower(), list(by_name), n=1, cutoff=0.7)
    return by_name[found[0]] if found else None


def problem(key: str, inputs: Collection[str]) -> str:
    """``unknown annotation <key>``, with the closest of `inputs` (the keys users write) when there is one."""
    meant = closest(key, inputs)
    return f"{UNKNOWN} {key}" + (f" (did you mean {meant}?)" if meant else "")


def problems(annotations: Mapping[str, Any] | None, prefixes: Collection[str], known: Collection[str],
             inputs: Collection[str]) -> list[str]:
    """One message per unknown key under `prefixes` (see :func:`problem`), and one for an ``adopt`` value that is
    neither true nor false (``maybe`` must not mean no without a word, any more than a misspelt key)."""
    found = [problem(key, inputs) for key in unknown_keys(annotations, prefixes, known)]
    value = (annotations or {}).get(ADOPT_ANNOTATION)
    if PREFIX in prefixes and value is not None and not (
            isinstance(value, str) and value.strip().lower() in ("true", "false")):
        found.append(f"{ADOPT_ANNOTATION}: expected \"true\" or \"false\", got {value!r}")
    return found
