"""The DNS ownership marker in the record comment (≤ 100 characters on Free plans), pure."""

from __future__ import annotations

import pytest

from chutes.cloudflare_core import InvalidInput, Ownership, is_ours, marker, parse


def test_marker_round_trips() -> None:
    comment = marker("cluster-a", "Pod/default/session-1")
    assert comment == "chutes-operator owner=cluster-a src=Pod/default/session-1"
    assert parse(comment) == Ownership("cluster-a", "Pod/default/session-1")
    assert is_ours(comment, "cluster-a")
    assert not is_ours(comment, "cluster-b")


@pytest.mark.parametrize(
    "source",
    ["ChuteGateway/" + "n" * 15 + "/" + "x" * 200, "HTTPRoute/ns/name with spaces\nand newline"],
)
def test_long_or_odd_sources_are_shortened_stably(source: str) -> None:
    comment = marker("a" * 32, source)
    assert len(comment) <= 100
    assert "\n" not in comment and " src=" in comment
    assert comment == marker("a" * 32, source)  # stable
    assert comment != marker("a" * 32, source + "y")  # distinct sources stay distinct
    assert is_ours(comment, "a" * 32)


@pytest.mark.parametrize("owner", ["", "Upper", "-lead", "a" * 33, "a b"])
def test_invalid_owner_ids_are_refused(owner: str) -> None:
    with pytest.raises(InvalidInput):
        marker(owner, "Pod/ns/name")


@pytest.mark.parametrize(
    "comment",
    [None, "", "managed by someone else", "chutes-operator owner=Cluster src=x", "chutes-operator owner=a"],
)
def test_foreign_comments_are_not_ours(comment: str | None) -> None:
    assert parse(comment) is None
    assert not is_ours(comment, "a")
