"""The suite's long tests, started first so that no worker is still running one when the others are done.

`make test` runs the suite under pytest-xdist with ``--dist worksteal``: each worker gets an equal share of the
collection, in order, and a worker with nothing left takes half of what another one has not started yet. A long
test that starts late still ends the run late, so :func:`order` puts the tests of :data:`SLOW` at the head of the
workers' shares, spread over them longest first (the workers' shares are cut as worksteal cuts them), and the
other tests after them in collection order. Without xdist, the long tests simply come first.

The figures are seconds on a quiet two-core machine under ``make test``, six workers (the slowest are listed at the
end of its output). A key names a test file (its tests stay together: a module-scoped fixture, as the demo's run or
the plan's first plan, is made once) or a test, parametrized ones by any prefix of their ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

SLOW: dict[str, float] = {
    "tests/test_soak.py": 67.0,
    "tests/test_bad_inputs.py::test_every_bad_input_gets_its_reason_and_the_valid_ones_are_published": 30.0,
    "tests/test_plan.py": 39.0,  # its first plan (module fixture) and two replans
    "tests/test_demo.py": 19.0,  # the demo's run (module fixture)
    "tests/test_ownership_cross_door.py::test_a_route_in_another_namespace_cannot_take_a_protected_gateways_"
    "hostname": 11.0,
    "tests/test_tunnels_resync_economy.py": 25.0,
    "tests/test_chart_rbac.py::test_namespaced_operator_with_peering_publishes_and_removes_a_gateway": 13.0,
    "tests/test_authorization_operator.py::test_a_gateway_outside_the_rules_is_refused_and_claims_nothing": 13.0,
    "tests/test_bad_inputs_tunnels.py::test_every_bad_tunnel_input_gets_its_reason_and_the_valid_ones_are_"
    "published": 17.5,
    "tests/test_kill_at_write.py::test_a_kill_right_after_a_write_converges_to_the_same_end_state[gateway-3]": 11.4,
    "tests/test_httproutes_confinement.py::test_a_colliding_state_name_is_refused_and_the_other_route_is_never_"
    "touched": 11.2,
    "tests/test_ownership_kinds.py": 9.0,
    "tests/test_core_policy.py::test_sync_deletes_every_object": 9.0,
    "tests/test_ownership_httproutes.py::test_two_installations_with_one_owner_id_and_split_namespaces_never_"
    "delete_each_others_objects": 7.0,
    "tests/test_sweep_operator.py::test_two_owner_ids_on_one_account_zone_and_tunnel_never_touch_each_other": 7.0,
    "tests/test_ownership_sessions.py::test_a_failed_rule_write_leaves_nothing_unprovable_and_the_next_pass_"
    "converges": 6.0,
    "tests/test_ownership_gateways.py::test_a_failed_hostname_change_keeps_the_old_claim_retries_and_removes_the_"
    "old_app": 6.0,
}


class Item(Protocol):
    nodeid: str


T = TypeVar("T", bound=Item)


def key_of(nodeid: str) -> str | None:
    """The key of :data:`SLOW` that `nodeid` falls under, if any (the longest that matches)."""
    found = [key for key in SLOW if nodeid == key or nodeid.startswith(key if "::" in key else f"{key}::")]
    return max(found, key=len, default=None)


def order(items: Sequence[T], workers: int) -> list[T]:
    """`items` with the long ones (:data:`SLOW`) at the head of the shares of `workers` workers (1: at the head),
    each key's tests together, the others in their order after them."""
    units: dict[str, list[T]] = {}
    rest: list[T] = []
    for item in items:
        key = key_of(item.nodeid)
        (units.setdefault(key, []) if key is not None else rest).append(item)
    lanes: list[list[T]] = [[] for _ in range(max(1, workers))]
    load = [0.0] * len(lanes)
    for key in sorted(units, key=lambda k: -SLOW[k]):  # longest first, each to the least loaded worker
        lane = load.index(min(load))
        lanes[lane] += units[key]
        load[lane] += SLOW[key]
    ordered: list[T] = []
    left = len(items)
    for index, lane in enumerate(lanes):
        share = left // (len(lanes) - index)  # worksteal's cut: what is left, evenly over the workers left
        take = max(0, share - len(lane))
        ordered += lane + rest[:take]
        rest = rest[take:]
        left -= len(lane) + take
    return ordered + rest
