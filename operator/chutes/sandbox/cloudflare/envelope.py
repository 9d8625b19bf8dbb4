"""Cloudflare's response envelope, API errors and page-number pagination."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


class ApiError(Exception):
    """An API failure: rendered as a non-2xx envelope with ``result: null``."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        chain: Sequence[tuple[int, str]] = (),
        pointer: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.code = code
        self.message = message
        self.chain = tuple(chain)
        self.pointer = pointer
        self.headers = dict(headers or {})

    def error_object(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.chain:
            error["error_chain"] = [{"code": c, "message": m} for c, m in self.chain]
        if self.pointer is not None:
            error["source"] = {"pointer": self.pointer}
        return error


@dataclass
class Reply:
    """A successful answer from a handler."""

    result: Any
    status: int = 200
    result_info: dict[str, int] | None = None
    headers: dict[str, str] = field(default_factory=dict)


def success_body(reply: Reply) -> dict[str, Any]:
    body: dict[str, Any] = {"success": True, "errors": [], "messages": [], "result": reply.result}
    if reply.result_info is not None:
        body["result_info"] = reply.result_info
    return body


def error_body(error: ApiError) -> dict[str, Any]:
    return {"success": False, "errors": [error.error_object()], "messages": [], "result": None}


@dataclass(frozen=True)
class PageRules:
    """Per-resource pagination defaults; ``bad_request`` builds the family's 400 error."""

    default_per_page: int
    max_per_page: int
    min_per_page: int = 1
    error_code: int = 1001


def paginate(items: Sequence[Any], query: Mapping[str, str], rules: PageRules) -> Reply:
    """Slice ``items`` by ``page``/``per_page``; pages past the end are ``[]`` (never an error)."""
    page = _positive_int(query, "page", 1, rules)
    per_page = _positive_int(query, "per_page", rules.default_per_page, rules)
    per_page = max(rules.min_per_page, min(per_page, rules.max_per_page))
    start = (page - 1) * per_page
    chunk = list(items[start : start + per_page])
    info = {
        "page": page,
        "per_page": per_page,
        "count": len(chunk),
        "total_count": len(items),
        "total_pages": math.ceil(len(items) / per_page),
    }
    return Reply(result=chunk, result_info=info)


def _positive_int(query: Mapping[str, str], key: str, default: int, rules: PageRules) -> int:
    raw = query.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not value.is_integer() or value < 1:
        raise ApiError(400, rules.error_code, f"Invalid '{key}' parameter: {raw!r} is not a positive integer")
    return int(value)


def parse_bool(query: Mapping[str, str], key: str, error_code: int) -> bool | None:
    raw = query.get(key)
    if raw is None:
        return None
    lowered = raw.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise ApiError(400, error_code, f"Invalid '{key}' parameter: {raw!r} is not a boolean")
