"""Where a secret must never be found: the operator's log records, Events, and every object in the cluster but the
Secrets meant to hold it; each secret looked for as is and base64-encoded."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pytest


def forms(secret: str) -> set[str]:
    raw = secret.encode()
    return {secret, base64.b64encode(raw).decode(), base64.b64encode(raw).decode().rstrip("=")}


# Threads that are not the operator: the test itself (whose own clients may log what they read) and the
# emulators. Everything else (the operator's thread and any thread it starts) is the operator's.
NOT_THE_OPERATOR = frozenset({"MainThread", "kube-sandbox", "cloudflare-sandbox"})


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    """Every log record of the operator: message, exception and every attribute."""
    parts = []
    formatter = logging.Formatter()
    for record in caplog.records:
        if record.threadName in NOT_THE_OPERATOR:
            continue
        parts.append(record.getMessage())
        if record.exc_info:
            parts.append(formatter.formatException(record.exc_info))
        parts.append(json.dumps({k: repr(v) for k, v in vars(record).items() if k not in ("msg", "args")}))
    return "\n".join(parts)


def cluster_text(kube: Any) -> tuple[str, str]:
    """(every Event, every other object except Secrets), as JSON."""
    async def dump() -> tuple[list[Any], list[Any]]:
        events, others = [], []
        for (resource, _namespace, _name), obj in kube.emulator.store.live():
            if resource.plural == "events":
                events.append(obj)
            elif resource.plural != "secrets":
                others.append(obj)
        return events, others

    events, others = kube.call(dump())
    return json.dumps(events), json.dumps(others)


def assert_nowhere(secrets: dict[str, str], logs: str, events: str, objects: str) -> None:
    leaks = [f"{what} in {where}" for what, secret in secrets.items() for form in forms(secret)
             for where, text in (("logs", logs), ("Events", events), ("objects", objects)) if form in text]
    assert not leaks, "secret material leaked: " + ", ".join(sorted(set(leaks)))
