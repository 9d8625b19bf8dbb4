"""A ChuteConfig whose deletion its gateways block: the decisions of its rare re-check and of its wake-up."""

from __future__ import annotations

import datetime
import json

from chutes.frontdoors.gateways import blocked_deletion

NOW = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.UTC)
BLOCKED = [{"type": "DeletionBlocked", "status": "True", "message": "still referenced by ChuteGateway a/x"}]


def test_the_warning_is_news_only_when_the_blocking_gateways_change() -> None:
    assert blocked_deletion.newly_blocked(None, "DeletionBlocked", "still referenced by ChuteGateway a/x")
    assert not blocked_deletion.newly_blocked(BLOCKED, "DeletionBlocked", "still referenced by ChuteGateway a/x")
    assert blocked_deletion.newly_blocked(BLOCKED, "DeletionBlocked", "still referenced by ChuteGateway a/x, b/y")


def config(progress: dict[str, object] | None, deleting: bool = True) -> dict[str, object]:
    meta: dict[str, object] = {"name": "default", "annotations": {}}
    if progress is not None:
        meta["annotations"] = {blocked_deletion.PROGRESS_KEY: json.dumps(progress)}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T11:59:00Z"
    return {"metadata": meta}


def test_only_a_waiting_cleanup_of_a_config_being_deleted_is_woken() -> None:
    later = (NOW + datetime.timedelta(seconds=55)).isoformat()
    waiting = {"started": "2026-01-01T11:59:00+00:00", "delayed": later, "retries": 1, "success": False,
               "failure": False, "purpose": "delete"}
    woken = blocked_deletion.woken_progress(config(waiting), NOW)
    assert woken is not None
    assert json.loads(woken) == {**waiting, "delayed": NOW.isoformat(timespec="microseconds")}
    assert blocked_deletion.woken_progress(config(waiting, deleting=False), NOW) is None
    due = (NOW - datetime.timedelta(seconds=1)).isoformat()
    assert blocked_deletion.woken_progress(config({**waiting, "delayed": due}), NOW) is None  # already due
    assert blocked_deletion.woken_progress(config({**waiting, "success": True}), NOW) is None
    assert blocked_deletion.woken_progress(config(None), NOW) is None
    assert blocked_deletion.woken_progress({"metadata": {"deletionTimestamp": "x", "annotations": {
        blocked_deletion.PROGRESS_KEY: "not json"}}}, NOW) is None
