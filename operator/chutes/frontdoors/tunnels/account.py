"""Read a (Cluster)Tunnel's credentials and find its account and zone: the Secret's API token (key
``CLOUDFLARE_API_TOKEN`` or the name ``spec.cloudflare`` gives it), the account by ``accountId`` or else
``accountName``, the zone named exactly ``cloudflare.domain`` in that account."""

from __future__ import annotations

from dataclasses import dataclass

from kubernetes_asyncio import client

from chutes import conditions as c
from chutes import kube
from chutes.cloudflare_core import CloudflareCore, CloudflareError, Zone, token_defect
from chutes.cores import CorePool
from chutes.frontdoors.problems import Problem, problem_from_cloudflare
from chutes.frontdoors.retries import CREDENTIALS_RETRY, MISSING_RETRY
from chutes.frontdoors.tunnels.model import Credentials, TunnelSpec


@dataclass(frozen=True)
class Account:
    account_id: str
    zone: Zone
    core: CloudflareCore


async def read_token(api: client.ApiClient, credentials: Credentials) -> str:
    """The API token in the Secret; a global API key (with ``email``) is refused with a message saying so."""
    where = f"Secret {credentials.namespace}/{credentials.secret}"
    try:
        token = await kube.read_secret_value(api, credentials.namespace, credentials.secret, credentials.token_key)
    except KeyError:
        token = ""
    if token is None:
        raise Problem(c.SECRET_NOT_FOUND, f"{where} does not exist", MISSING_RETRY)
    token = token.strip()
    if not token:
        try:
            key = await kube.read_secret_value(api, credentials.namespace, credentials.secret, credentials.key_key)
        except KeyError:
            key = None
        if key:
            raise Problem(c.CREDENTIALS_INVALID, f"{where} holds {credentials.key_key} (a global API key) but no "
                          f"{credentials.token_key}: chutes-operator needs an API token (Account/Cloudflare "
                          "Tunnel:Edit, Zone/DNS:Edit, Access:Edit)", CREDENTIALS_RETRY)
        raise Problem(c.SECRET_KEY_MISSING, f"{where} has no key {credentials.token_key!r} (nor "
                      f"{credentials.key_key!r})", MISSING_RETRY)
    defect = token_defect(token)
    if defect is not None:  # the message names no character of it
        raise Problem(c.CREDENTIALS_INVALID, f"{where} key {credentials.token_key!r}: the API token {defect}",
                      CREDENTIALS_RETRY)
    return token


async def load_account(api: client.ApiClient, cores: CorePool, spec: TunnelSpec, *, verify: bool = True) -> Account:
    """The core for the tunnel's token, its account id and its zone; a domain that is not a zone of the account,
    or an account name the token does not reach, is an InvalidSpec problem (a spec change fixes it). `verify`:
    prove the token reaches the account's tunnels too (the Tunnel's reconcile does; its bindings rely on that, so
    200 bindings cost no 200 listings: the zone lookup is cached per process)."""
    token = await read_token(api, spec.credentials)
    core = cores.core_for(token)
    try:
        zone = await core.find_zone(spec.domain)
    except CloudflareError as exc:
        raise problem_from_cloudflare(exc, f"finding the zone {spec.domain}") from exc
    if zone is None:
        raise Problem(c.INVALID_SPEC, f"spec.cloudflare.domain {spec.domain!r} is not a zone the API token reaches",
                      None)
    if spec.account_id:
        if zone.account_id and zone.account_id != spec.account_id:
            raise Problem(c.INVALID_SPEC, f"spec.cloudflare.domain {spec.domain!r} is not a zone of account "
                          f"{spec.account_id}", None)
        account_id = spec.account_id
    else:
        if zone.account_name != spec.account_name:
            raise Problem(c.INVALID_SPEC, f"spec.cloudflare.accountName {spec.account_name!r} is not the account of "
                          f"zone {spec.domain} that the API token reaches", None)
        account_id = zone.account_id
    if not verify:
        return Account(account_id=account_id, zone=zone, core=core)
    try:
        await core.verify_access(account_id, zone.id)
    except CloudflareError as exc:
        raise problem_from_cloudflare(exc, f"checking account {account_id} and zone {spec.domain}") from exc
    return Account(account_id=account_id, zone=zone, core=core)
