"""Start the operator of a test world with settings of the test's choosing (policy, dry_run, resync_interval,
owner_id...), as `chutes run` builds them from its flags: the ChuteGateway world of test_gateways_operator
and the HTTPRoute world of httproutes_harness."""

from __future__ import annotations

from typing import Any

from chutes.sandbox.runner import OperatorThread
from chutes.settings import load_settings


def start_gateways(world: Any, **overrides: Any) -> None:
    """The ChuteGateway front door alone (`World.start` with settings)."""
    settings = load_settings({}, standalone=True, cloudflare_base_url=world.cf.base_url, httproutes=False,
                             sessions=False, **overrides)
    world.operator = OperatorThread(settings, {}).start()


def start_routes(world: Any, **overrides: Any) -> None:
    """The HTTPRoute front door alone (`httproutes_harness.World.start` with settings)."""
    from httproutes_harness import OPNS

    settings = load_settings({}, standalone=True, cloudflare_base_url=world.cf.base_url, chutes=False,
                             sessions=False, httproutes=True, **overrides)
    world.operator = OperatorThread(settings, {"OPERATOR_NAMESPACE": OPNS}).start()
