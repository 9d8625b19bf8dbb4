"""Read a (Cluster)Tunnel's credentials and find its account and zone.

Credentials, as adyanth's operator reads them (at HEAD): the Secret ``spec.cloudflare.secret`` (a Tunnel's in its
namespace, a ClusterTunnel's in the cluster resource namespace); its key ``CLOUDFLARE_API_TOKEN`` (or the name
``spec.cloudflare.CLOUDFLARE_API_TOKEN`` gives it), an API token, is used when present and non-empty; otherwise its
key ``CLOUDFLARE_API_KEY`` (or the overridden name), a global API key, with ``spec.cloudflare.email`` (sent as
``X-Auth-Key`` + ``X-Auth-Email``, for every call). The token or key is never shown: no message names any of its
characters.

The account is ``accountId``, else the account of the zone whose name is ``accountName`` (Cloudflare's zone listing
names each zone's account: no ``GET /accounts?name=`` call is made; an ``accountName`` that is not the account of the
zone ``cloudflare.domain`` is refused, naming the account that zone is in). The zone is the one named exactly
``cloudflare.domain`` that the credentials reach.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubernetes_asyncio import client

from chutes import conditions as c
from chutes import kube
from chutes.cloudflare_core import ApiCredentials, CloudflareCore, CloudflareError, Zone
from chutes.cloudflare_core.credentials import email_defect
from chutes.cores import CorePool
from chutes.frontdoors.problems import Problem, problem_from_cloudflare
from chutes.frontdoors.retries import CREDENTIALS_RETRY, MISSING_RETRY
from chutes.frontdoors.tunnels.model import Credentials, TunnelSpec


@dataclass(frozen=True)
class Account:
    account_id: str
    zone: Zone
    core: CloudflareCore


async def _read(api: client.ApiClient, credentials: Credentials, key: str) -> str | None:
    """The Secret's value at `key`, stripped ("" when the key is absent); None when the Secret does not exist."""
    try:
        value = await kube.read_secret_value(api, credentials.namespace, credentials.secret, key)
    except KeyError:
        return ""
    return None if value is None else value.strip()


async def read_credentials(api: client.ApiClient, credentials: Credentials) -> ApiCredentials:
    """The API token in the Secret, else its global API key with ``spec.cloudflare.email``; a Problem (the
    condition and Warning the user sees) when neither is usable."""
    where = f"Secret {credentials.namespace}/{credentials.secret}"
    token = await _read(api, credentials, credentials.token_key)
    if token is None:
        raise Problem(c.SECRET_NOT_FOUND, f"{where} does not exist", MISSING_RETRY)
    if token:
        found = ApiCredentials(token=token)
        key_name = credentials.token_key
    else:
        key = await _read(api, credentials, credentials.key_key)
        if not key:
            raise Problem(c.SECRET_KEY_MISSING, f"{where} has no key {credentials.token_key!r} (an API token) nor "
                          f"{credentials.key_key!r} (a global API key)", MISSING_RETRY)
        if not credentials.email:
            raise Problem(c.CREDENTIALS_INVALID, f"{where} holds {credentials.key_key!r} (a global API key) and no "
                          f"{credentials.token_key!r}: a global API key needs spec.cloudflare.email, the email of "
                          "its Cloudflare account, which is missing", CREDENTIALS_RETRY)
        if email_defect(credentials.email) is not None:
            raise Problem(c.INVALID_SPEC, f"spec.cloudflare.email {credentials.email!r} is not an email address "
                          "(the global API key is sent with it)", None)
        found = ApiCredentials(key=key, email=credentials.email)
        key_name = credentials.key_key
    defect = found.defect()
    if defect is not None:  # the message names no character of it
        raise Problem(c.CREDENTIALS_INVALID, f"{where} key {key_name!r}: {defect}", CREDENTIALS_RETRY)
    return found


async def load_account(api: client.ApiClient, cores: CorePool, spec: TunnelSpec, *, verify: bool = True) -> Account:
    """The core for the tunnel's credentials, its account id and its zone; a domain that is not a zone of the
    account, or an account name that is not the zone's account, is an InvalidSpec problem (a spec change fixes it).
    `verify`: prove the credentials reach the account's tunnels too (the Tunnel's reconcile does; its bindings rely
    on that, so 200 bindings cost no 200 listings: the zone lookup is cached per process)."""
    core = cores.core_for(await read_credentials(api, spec.credentials))
    try:
        zone = await core.find_zone(spec.domain)
    except CloudflareError as exc:
        raise problem_from_cloudflare(exc, f"finding the zone {spec.domain}") from exc
    if zone is None:
        raise Problem(c.INVALID_SPEC, f"spec.cloudflare.domain {spec.domain!r} is not a zone the "
                      f"{core.client.credentials.kind} reaches", None)
    if spec.account_id:
        if zone.account_id and zone.account_id != spec.account_id:
            raise Problem(c.INVALID_SPEC, f"spec.cloudflare.domain {spec.domain!r} is not a zone of account "
                          f"{spec.account_id}", None)
        account_id = spec.account_id
    else:
        if zone.account_name != spec.account_name:
            # Found through the zone: the account a zone is in is named in its listing (no GET /accounts?name=).
            raise Problem(c.INVALID_SPEC, f"spec.cloudflare.accountName {spec.account_name!r} is not the account of "
                          f"zone {spec.domain} ({zone.account_name!r}); the account is found by the zone "
                          "spec.cloudflare.domain names: give that zone's account name, or spec.cloudflare.accountId",
                          None)
        account_id = zone.account_id
    if not verify:
        return Account(account_id=account_id, zone=zone, core=core)
    try:
        await core.verify_access(account_id, zone.id)
    except CloudflareError as exc:
        raise problem_from_cloudflare(exc, f"checking account {account_id} and zone {spec.domain}") from exc
    return Account(account_id=account_id, zone=zone, core=core)
