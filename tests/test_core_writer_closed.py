"""A rule write cut off because its tunnel was deleted meanwhile (found by the soak, issue 16 §1): the tunnel's
configuration writer is closed by the delete, and what it still had queued or in flight fails. That failure is
transient (the caller's next pass resolves its tunnel again: a Tunnel restored gets a new one), never a rejection:
a door reports CloudflareRejected for those, waits 120 s and, for the Tunnel door, skips the resync."""

from __future__ import annotations

import asyncio

import pytest

from chutes.cloudflare_core import CloudflareCore, IngressRule, TransientError
from chutes.frontdoors import problems
from chutes.sandbox.cloudflare import CloudflareSandbox
from harness.core import intent, rules_at


async def test_a_rule_write_cut_off_by_its_tunnels_delete_is_transient(
        core: CloudflareCore, sandbox: CloudflareSandbox) -> None:
    account = sandbox.account_id
    tunnel = await core.ensure_tunnel(account, "soon-gone", intent())
    reading = asyncio.Event()

    async def slow_read() -> None:  # the write is still in flight when the delete closes its writer
        reading.set()
        await asyncio.sleep(1.0)

    sandbox.faults.before("tunnels.config.get", slow_read)
    write = asyncio.create_task(core.set_ingress_rule(account, tunnel.id, IngressRule("a.example.com", "http://a:80"),
                                                     rules_at("a.example.com")))
    await reading.wait()
    await core.delete_tunnel(account, tunnel.id, "soon-gone", connected_ok=False)

    with pytest.raises(TransientError) as raised:
        await write
    problem = problems.problem_from_cloudflare(raised.value, "writing the tunnel ingress rule")
    assert problem.reason == "CloudflareUnavailable" and problem.delay is not None and problem.delay <= 10.0

