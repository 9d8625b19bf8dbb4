"""Conditions keep cert-manager semantics: transition time moves only when status changes."""

from __future__ import annotations

from chutes import conditions as c


def test_a_new_condition_is_appended_with_generation_and_time() -> None:
    result = c.set_condition([], c.READY, "False", c.PROGRESSING, "working", 3, timestamp="2026-01-01T00:00:00Z")
    assert result == [
        {"type": "Ready", "status": "False", "reason": "Progressing", "message": "working",
         "observedGeneration": 3, "lastTransitionTime": "2026-01-01T00:00:00Z"}
    ]


def test_same_status_keeps_the_transition_time_but_updates_reason_and_generation() -> None:
    first = c.set_condition([], c.READY, "False", c.PROGRESSING, "a", 1, timestamp="T1")
    second = c.set_condition(first, c.READY, "False", c.CONFIG_NOT_FOUND, "b", 2, timestamp="T2")
    assert second[0]["lastTransitionTime"] == "T1"
    assert (second[0]["reason"], second[0]["message"], second[0]["observedGeneration"]) == ("ConfigNotFound", "b", 2)
    assert first[0]["reason"] == "Progressing", "the input is not mutated"


def test_a_status_change_moves_the_transition_time_and_keeps_order() -> None:
    start = c.set_condition([], c.TUNNEL_READY, "True", c.RECONCILED, "", 1, timestamp="T1")
    start = c.set_condition(start, c.READY, "False", c.PROGRESSING, "", 1, timestamp="T1")
    flipped = c.set_condition(start, c.READY, "True", c.RECONCILED, "", 1, timestamp="T2")
    assert [x["type"] for x in flipped] == ["TunnelReady", "Ready"]
    assert flipped[1]["lastTransitionTime"] == "T2"
    assert c.is_true(flipped, c.READY) and not c.is_true(flipped, c.DNS_READY)
