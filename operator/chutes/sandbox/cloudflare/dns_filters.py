"""DNS record list filters: ``name``/``content``/``comment``/``tag`` with operator keys
(``.exact|.contains|.startswith|.endswith``, ``.present|.absent``), ``type``, ``proxied``,
``search``, ``match``/``tag_match`` and ``order``/``direction``. Text comparisons ignore case."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .envelope import ApiError, parse_bool

VALIDATION = 1004
TEXT_OPS: dict[str, Callable[[str, str], bool]] = {
    "exact": lambda value, wanted: value == wanted,
    "contains": lambda value, wanted: wanted in value,
    "startswith": lambda value, wanted: value.startswith(wanted),
    "endswith": lambda value, wanted: value.endswith(wanted),
}
ORDER_KEYS = ("type", "name", "content", "ttl", "proxied")

Test = Callable[[dict[str, Any]], bool]


def _choice(query: Mapping[str, str], key: str, allowed: tuple[str, ...], default: str) -> str:
    value = query.get(key, default)
    if value not in allowed:
        raise ApiError(400, VALIDATION, f"Invalid '{key}' parameter: {value!r} (one of {', '.join(allowed)})")
    return value


def _field_test(field: str, check: Callable[[str, str], bool], wanted: str) -> Test:
    return lambda r: r[field] is not None and check(str(r[field]).lower(), wanted)


def _presence_test(present: bool) -> Test:
    return lambda r: bool(r["comment"]) is present


def _equal_test(field: str, wanted: object) -> Test:
    return lambda r: bool(r[field] == wanted)


def _tag_presence_test(name: str, present: bool) -> Test:
    return lambda r: any(tn == name for tn, _ in _tag_pairs(r)) is present


def _tag_value_test(name: str, check: Callable[[str, str], bool], wanted: str) -> Test:
    return lambda r: any(tn == name and check(tv, wanted) for tn, tv in _tag_pairs(r))


def _text_tests(query: Mapping[str, str], field: str) -> list[Test]:
    tests: list[Test] = []
    for key, wanted in query.items():
        op = "exact" if key == field else key[len(field) + 1 :] if key.startswith(field + ".") else None
        if op is None:
            continue
        wanted_l = wanted.lower().rstrip(".") if field == "name" else wanted.lower()
        if op in TEXT_OPS:
            tests.append(_field_test(field, TEXT_OPS[op], wanted_l))
        elif op in ("present", "absent") and field == "comment":
            tests.append(_presence_test(op == "present"))
        else:
            raise ApiError(400, VALIDATION, f"Unknown filter '{key}'")
    return tests


def _split_tag(text: str) -> tuple[str, str | None]:
    name, sep, value = text.partition(":")
    return name.lower(), (value.lower() if sep else None)


def _tag_pairs(record: dict[str, Any]) -> list[tuple[str, str]]:
    return [(n, v or "") for n, v in (_split_tag(t) for t in record["tags"])]


def _tag_tests(query: Mapping[str, str]) -> list[Test]:
    tests: list[Test] = []
    for key, wanted in query.items():
        if key != "tag" and not key.startswith("tag."):
            continue
        name, value = _split_tag(wanted)
        op = key[4:] if key != "tag" else ("exact" if value is not None else "present")
        if op in ("present", "absent"):
            tests.append(_tag_presence_test(name, op == "present"))
        elif op in TEXT_OPS:
            tests.append(_tag_value_test(name, TEXT_OPS[op], value or ""))
        else:
            raise ApiError(400, VALIDATION, f"Unknown filter '{key}'")
    return tests


def select(records: list[dict[str, Any]], query: Mapping[str, str]) -> list[dict[str, Any]]:
    match = _choice(query, "match", ("all", "any"), "all")
    tag_match = _choice(query, "tag_match", ("all", "any"), "all")
    order = _choice(query, "order", ORDER_KEYS, "type")
    direction = _choice(query, "direction", ("asc", "desc"), "asc")
    tests = _text_tests(query, "name") + _text_tests(query, "content") + _text_tests(query, "comment")
    if "type" in query:
        tests.append(_equal_test("type", query["type"].upper()))
    proxied = parse_bool(query, "proxied", VALIDATION)
    if proxied is not None:
        tests.append(_equal_test("proxied", proxied))
    tag_tests = _tag_tests(query)
    if tag_tests:
        combine_tags = any if tag_match == "any" else all
        tests.append(lambda r: combine_tags(t(r) for t in tag_tests))
    combine = any if match == "any" else all
    search = query.get("search", "").lower()
    found = [
        r
        for r in records
        if (not tests or combine(t(r) for t in tests))
        and (not search or any(search in str(r[k] or "").lower() for k in ("name", "content", "comment")))
    ]
    found.sort(key=lambda r: (str(r[order]), r["name"], r["created_on"]), reverse=direction == "desc")
    return found
