"""The Tunnel door's credentials and account, as adyanth's operator reads them: the Secret's API token (preferred),
else its global API key with ``spec.cloudflare.email`` (X-Auth-Key + X-Auth-Email on every call), with the key-name
overrides; the account by ``accountId`` or by ``accountName`` (the account of the zone ``domain`` names). The real
operator against both emulators; the Cloudflare emulator holds a global key (a canary) besides its token."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from harness.leaks import assert_nowhere, cluster_text, log_text
from harness.tunnels import NS, World
from harness.waiting import wait_for

EMAIL = "admin@example.org"
CANARY_KEY = "ca9a7" * 7 + "ca"  # 37 hex digits, a global key's shape
WRONG_CANARY_KEY = "bad" * 12 + "b"  # the right shape, not a key Cloudflare knows


@pytest.fixture()
def cloudflare() -> Iterator[Any]:
    """The Cloudflare emulator with its token and the global key `CANARY_KEY` of `EMAIL` (overrides the plugin's)."""
    from chutes.sandbox.cloudflare import SandboxConfig, SandboxThread

    seed = {"global_keys": [{"name": "legacy", "email": EMAIL, "key": CANARY_KEY}]}
    with SandboxThread(SandboxConfig.from_dict(seed)) as sandbox:
        yield sandbox


@pytest.fixture(name="world")
def world_fixture(kube: Any, cloudflare: Any) -> Iterator[World]:
    yield from World.opened(kube, cloudflare, start=True)


def callers(world: World) -> set[str | None]:
    return {r.token_name for r in world.cf.requests}


def test_a_global_key_with_its_email_serves_a_tunnel_and_its_binding_and_is_never_shown(
        kube: Any, cloudflare: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    world = World(kube, cloudflare)
    try:
        world.start()
        world.api_secret(CLOUDFLARE_API_KEY=CANARY_KEY + "\n")  # as `kubectl create secret --from-file` leaves it
        world.tunnel(cloudflare=world.cloudflare(email=EMAIL))
        tunnel_id = str(world.ready_tunnel()["status"]["tunnelId"])
        world.service("whoami", 80)
        world.binding("whoami", [{"name": "whoami"}])
        world.ready_binding("whoami", hostnames="whoami.example.com")
        assert [r.get("hostname") for r in world.ingress(tunnel_id)] == ["whoami.example.com", None]
        assert len(world.records("whoami.example.com")) == 1
        assert callers(world) == {"legacy"}  # every call with the key and its email, none with a token

        # A second Tunnel whose key Cloudflare does not know: refused, and its key shown nowhere either.
        world.api_secret(name="wrong", CLOUDFLARE_API_KEY=WRONG_CANARY_KEY)
        world.tunnel("wrong", cloudflare=world.cloudflare(secret="wrong", email=EMAIL))
        refused = world.wait_reason("CredentialsInvalid", lambda: world.get_tunnel("wrong"))
        assert "Unknown X-Auth-Key or X-Auth-Email" in world.condition(refused)["message"]
        wait_for("a Warning", lambda: [e for e in world.events("wrong", NS) if e[:2] == ("Warning",
                                                                                        "CredentialsInvalid")])
        events, objects = cluster_text(kube)
    finally:
        world.close()
    assert "CredentialsInvalid" in events and tunnel_id in objects  # the dumps are not empty
    assert_nowhere({"global key": CANARY_KEY, "wrong key": WRONG_CANARY_KEY}, log_text(caplog), events, objects)


def test_a_global_key_without_an_email_is_a_condition_naming_the_missing_field(world: World) -> None:
    world.api_secret(CLOUDFLARE_API_KEY=CANARY_KEY)
    world.tunnel()
    tunnel = world.wait_reason("CredentialsInvalid", world.get_tunnel)
    ready = world.condition(tunnel)
    assert ready["status"] == "False" and "spec.cloudflare.email" in ready["message"]
    assert CANARY_KEY not in ready["message"]
    wait_for("a Warning", lambda: [e for e in world.events("web", NS) if e[:2] == ("Warning", "CredentialsInvalid")
                                   and "spec.cloudflare.email" in e[2]])
    assert world.cf.requests == [] and world.live_tunnels() == []


def test_the_token_is_preferred_and_the_key_names_can_be_overridden(world: World) -> None:
    # The token wins over a key (even one Cloudflare would refuse).
    world.api_secret(CLOUDFLARE_API_TOKEN=world.cf.token, CLOUDFLARE_API_KEY=WRONG_CANARY_KEY)
    world.tunnel(cloudflare=world.cloudflare(email=EMAIL))
    world.ready_tunnel()
    assert callers(world) == {"default"}
    # Overridden key names: a Secret whose key is under another name (and whose token key is empty).
    world.api_secret(name="renamed", MY_KEY=CANARY_KEY, MY_TOKEN="")
    world.cf.reset_log()
    world.tunnel("renamed", cloudflare=world.cloudflare(secret="renamed", email=EMAIL, CLOUDFLARE_API_KEY="MY_KEY",
                                                        CLOUDFLARE_API_TOKEN="MY_TOKEN"))
    world.ready_tunnel("renamed")
    assert callers(world) == {"legacy"}


def test_the_account_is_found_by_name_through_the_zone(world: World) -> None:
    world.api_secret()
    world.tunnel(cloudflare={"domain": "example.com", "secret": "cloudflare-secrets", "accountName": "Sandbox Account"})
    assert world.ready_tunnel()["status"]["accountId"] == world.account
    assert not [r for r in world.cf.requests if r.path.rstrip("/").endswith("/accounts")]  # no GET /accounts?name=
    world.tunnel("elsewhere", cloudflare={"domain": "example.com", "secret": "cloudflare-secrets",
                                          "accountName": "Another Account"})
    refused = world.wait_reason("InvalidSpec", lambda: world.get_tunnel("elsewhere"))
    assert world.condition(refused)["message"] == (
        "spec.cloudflare.accountName 'Another Account' is not the account of zone example.com ('Sandbox Account'); "
        "the account is found by the zone spec.cloudflare.domain names: give that zone's account name, or "
        "spec.cloudflare.accountId")
