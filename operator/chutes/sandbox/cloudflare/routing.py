"""Route table: OpenAPI-style path templates mapped to operation names and handlers."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .config import TokenSeed
from .envelope import ApiError, Reply
from .state import State, ZoneInfo


@dataclass
class Ctx:
    """What a handler sees: path parameters, query, parsed JSON body, state and caller."""

    state: State
    token: TokenSeed
    params: dict[str, str]
    query: Mapping[str, str]
    body: Any

    @property
    def account_id(self) -> str:
        return self.params["account_id"]

    @property
    def zone(self) -> ZoneInfo:
        return self.state.zones[self.params["zone_id"]]

    def json_object(self, error_code: int) -> dict[str, Any]:
        """The body as a JSON object, or a 400 in the resource family's error code."""
        if self.body is None:
            return {}
        if not isinstance(self.body, dict):
            raise ApiError(400, error_code, "The request body must be a JSON object")
        return self.body


Handler = Callable[[Ctx], Reply]


@dataclass(frozen=True)
class Route:
    method: str
    template: str  # same spelling as the OpenAPI path template, e.g. /zones/{zone_id}/dns_records
    op: str
    handler: Handler
    mutates: bool = False

    @property
    def pattern(self) -> re.Pattern[str]:
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.template)
        return re.compile(f"^{regex}/?$")


def collection_routes(template: str, item: str, op: str, *, create: Handler, list_: Handler, get: Handler,
                      delete: Handler, update: Handler | None = None, edit: Handler | None = None) -> list[Route]:
    """The routes of one collection: create (POST) and list (GET) at `template`, get (GET), update (PUT), edit
    (PATCH) and delete (DELETE) at ``template/{item}``; operations named ``<op>.create``, ``<op>.list``..."""
    one = f"{template}/{{{item}}}"
    optional = (("PUT", "update", update), ("PATCH", "edit", edit))
    return [
        Route("POST", template, f"{op}.create", create, mutates=True),
        Route("GET", template, f"{op}.list", list_),
        Route("GET", one, f"{op}.get", get),
        *(Route(method, one, f"{op}.{name}", handler, mutates=True) for method, name, handler in optional if handler),
        Route("DELETE", one, f"{op}.delete", delete, mutates=True),
    ]


@dataclass(frozen=True)
class Match:
    route: Route | None
    params: dict[str, str]
    method_allowed: bool


class Router:
    def __init__(self, routes: list[Route]) -> None:
        self.routes = routes
        self._compiled = [(r, r.pattern) for r in routes]

    def match(self, method: str, path: str) -> Match:
        path_known = False
        for route, pattern in self._compiled:
            found = pattern.match(path)
            if found is None:
                continue
            path_known = True
            if route.method == method:
                return Match(route, dict(found.groupdict()), True)
        return Match(None, {}, not path_known)
