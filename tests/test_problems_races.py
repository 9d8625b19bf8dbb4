"""A race lost on the cluster inside a handler (found by the soak, issue 16 §1: two replicas and kopf itself writing
the same objects): a ledger claim released or taken under the pass (ClaimLost), or an object changed between our read
and our write (StaleObject, HTTP 409). Nothing is wrong with the source: the pass is retried within seconds, with no
Warning Event, never after kopf's 60 s default for an unexpected exception (and its traceback in the log)."""

from __future__ import annotations

from typing import Any

import kopf
import pytest

from chutes import kube
from chutes.claims import ClaimLost
from chutes.frontdoors import problems
from chutes.frontdoors.retries import LOST_RETRY

BODY: dict[str, Any] = {"apiVersion": "networking.cfargotunnel.com/v1alpha1", "kind": "TunnelBinding",
                        "metadata": {"name": "b1", "namespace": "apps", "uid": "u1"}}


@pytest.mark.parametrize("race", [ClaimLost("hostname a.example.com: the claim of TunnelBinding/apps/b1 is gone"),
                                  kube.StaleObject("tunnelbindings/b1: finalizers changed since they were read")],
                         ids=["claim lost", "object changed"])
def test_a_race_lost_inside_a_handler_is_retried_within_seconds_without_a_warning(
        race: Exception, monkeypatch: pytest.MonkeyPatch) -> None:
    posted: list[Any] = []
    monkeypatch.setattr(kopf, "event", lambda *args, **kwargs: posted.append((args, kwargs)))
    with pytest.raises(kopf.TemporaryError) as raised, problems.said(BODY, "tunnels"):
        raise race
    assert raised.value.delay is not None and raised.value.delay <= LOST_RETRY
    assert str(race) in str(raised.value)
    assert posted == []
