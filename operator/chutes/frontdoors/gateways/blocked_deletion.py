"""A ChuteConfig whose deletion its ChuteGateways block: only a person can change that (by deleting or
re-pointing them), so its cleanup is re-checked every ``retries.BLOCKED_RECHECK`` seconds, not every few, and the
Warning Event is sent once per distinct message. When a gateway that referenced it is deleted, the waiting
cleanup is woken at once.

The wake-up clears the ``delayed`` time of kopf's persisted progress record of the cleanup handler (kopf's
annotation progress storage, under the operator's prefix): kopf then sees the object change, finds the handler
no longer delayed and runs it. Should kopf's record ever look different (or the gateway go while the cleanup
is between its check and recording its delay for longer than the last look, ≈ 7.5 s), nothing is woken
and the re-check still comes.
"""

from __future__ import annotations

import asyncio
import datetime
import json
from collections.abc import Mapping
from typing import Any

from chutes import kube
from chutes.frontdoors.gateways import desired as d

WAKE_PAUSES = (0.5, 1.0, 2.0, 4.0)  # looking again for a delay the cleanup has not recorded yet
CLEANUP_HANDLER = "cleanup"  # the id of the ChuteConfig's delete handler
PROGRESS_KEY = f"{d.GROUP}/{CLEANUP_HANDLER}"  # kopf's AnnotationsProgressStorage(prefix=GROUP) key


def blocked_message(users: list[str]) -> str:
    return "still referenced by ChuteGateway " + ", ".join(users)


def newly_blocked(conditions: Any, condition_type: str, message: str) -> bool:
    """Whether `message` is news: the Warning Event is sent when the blocking gateways change, not per check."""
    for condition in conditions or ():
        if isinstance(condition, Mapping) and condition.get("type") == condition_type:
            return condition.get("status") != "True" or condition.get("message") != message
    return True


def woken_progress(config: Mapping[str, Any], now: datetime.datetime) -> str | None:
    """The cleanup handler's progress record, due `now`, when it waits (delayed, later than now) on a ChuteConfig
    being deleted; else None (nothing to wake)."""
    meta = config.get("metadata") or {}
    if not meta.get("deletionTimestamp"):
        return None
    try:
        record = json.loads((meta.get("annotations") or {}).get(PROGRESS_KEY) or "")
        delayed = datetime.datetime.fromisoformat(record["delayed"])
    except (ValueError, TypeError, KeyError):
        return None
    if delayed.tzinfo is None:
        delayed = delayed.replace(tzinfo=datetime.UTC)
    if record.get("success") or record.get("failure") or delayed <= now:
        return None
    return json.dumps({**record, "delayed": now.isoformat(timespec="microseconds")})


async def wake_cleanup(api: Any, config_name: str) -> bool:
    """Wake the waiting cleanup of ChuteConfig `config_name` (a gateway that referenced it is gone). The cleanup
    may be between its check (which still saw the gateway) and recording its delay: while the ChuteConfig is being
    deleted and no delay is recorded yet, look again after each of :data:`WAKE_PAUSES`."""
    for pause in (0.0, *WAKE_PAUSES):
        await asyncio.sleep(pause)
        config = await kube.get_custom(api, d.GROUP, d.VERSION, d.CONFIG_PLURAL, config_name)
        if config is None or not (config.get("metadata") or {}).get("deletionTimestamp"):
            return False
        progress = woken_progress(config, datetime.datetime.now(datetime.UTC))
        if progress is not None:
            return await kube.patch_custom_metadata(api, d.GROUP, d.VERSION, d.CONFIG_PLURAL, config_name, None,
                                                    {"annotations": {PROGRESS_KEY: progress}})
    return False
