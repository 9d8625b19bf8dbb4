"""A locally configured tunnel's ``config.yaml`` as adyanth writes it, and its ``credentials.json`` (pure: no I/O).

The document: ``tunnel``, ``ingress``, the top-level ``originRequest`` (``noTLSVerify``, ``caPool``),
``credentials-file``, ``metrics``, ``no-autoupdate`` (key order as adyanth's Go struct). Regenerating it replaces
``tunnel`` and ``ingress`` only: every other key stays, in its place. The ingress: the rules (exact hostnames before
wildcards, longer paths first), then the catch-all. The checksum is adyanth's: the md5 of the text."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from chutes import conditions as c
from chutes.cloudflare_core.models import IngressRule, Tunnel
from chutes.frontdoors.tunnels import model as m

CONFIG_KEY = "config.yaml"
CHECKSUM = "cfargotunnel.com/checksum"
CONFIG_DIR = "/etc/cloudflared/config"
CREDENTIALS_DIR = "/etc/cloudflared/creds"
CREDENTIALS_KEY = "credentials.json"
METRICS = "0.0.0.0:2000"

# The fields of a hostname claim's ``tunnel_rule`` entry for a rule in a ConfigMap (with tunnel, account, service,
# path and originRequest as :func:`rule_fields` gives them): the (Cluster)Tunnel whose ConfigMap holds
# it, and that ConfigMap (``<namespace>/<name>``).
ENTRY_TUNNEL = "local"
ENTRY_CONFIG = "configmap"


# --- the document (pure) -----------------------------------------------------------------------------------------


def initial_config(tunnel_id: str, fallback: str, origin_request: Mapping[str, Any]) -> dict[str, Any]:
    """adyanth's initial ``config.yaml``, key order as its Go struct."""
    document: dict[str, Any] = {"tunnel": tunnel_id, "ingress": [{"service": fallback}]}
    if origin_request:
        document["originRequest"] = dict(origin_request)
    document.update({"credentials-file": f"{CREDENTIALS_DIR}/{CREDENTIALS_KEY}", "metrics": METRICS,
                     "no-autoupdate": True})
    return document


def parse_config(text: str) -> dict[str, Any]:
    """``config.yaml`` as a mapping; :class:`ValueError` when it is not one."""
    try:
        document = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise ValueError(f"not YAML: {exc}") from None
    if not isinstance(document, dict):
        raise ValueError("not a YAML mapping")
    return document


def render(document: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(document), sort_keys=False, default_flow_style=False)


def checksum(text: str) -> str:
    """adyanth's ``cfargotunnel.com/checksum``: the lowercase hex md5 of ``config.yaml``."""
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


ORIGIN = "originRequest"  # a rule's options, as a claim's entry records them


def rule_fields(rule: IngressRule) -> dict[str, Any]:
    """What a claim's entry records of a rule beyond tunnel and account: service, path, originRequest."""
    fields: dict[str, Any] = {"service": rule.service}
    if rule.path:
        fields["path"] = rule.path
    wire = rule.to_wire()
    if "originRequest" in wire:
        fields[ORIGIN] = wire["originRequest"]
    return fields


def entry_rule(hostname: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    """The ingress rule a claim's local ``tunnel_rule`` entry records."""
    rule: dict[str, Any] = {"hostname": hostname}
    if entry.get("path"):
        rule["path"] = str(entry["path"])
    rule["service"] = str(entry.get("service") or "")
    if isinstance(entry.get(ORIGIN), Mapping) and entry[ORIGIN]:
        rule["originRequest"] = dict(entry[ORIGIN])
    return rule


def _order(rule: Mapping[str, Any]) -> tuple[bool, str, int, str]:
    hostname, path = str(rule.get("hostname") or ""), str(rule.get("path") or "")
    return hostname.startswith("*"), hostname.lstrip("*."), -len(path), path


def ingress(rules: Iterable[Mapping[str, Any]], catch_all: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The whole ingress: `rules` (exact hostnames before wildcards, longer paths first), then `catch_all`."""
    return [*(dict(rule) for rule in sorted(rules, key=_order)), dict(catch_all)]


def regenerated(document: Mapping[str, Any], tunnel_id: str, rules: Iterable[Mapping[str, Any]],
                fallback: str | None) -> dict[str, Any]:
    """`document` with ``tunnel`` and ``ingress`` replaced (every other key kept, in its place). The catch-all:
    `fallback`, else the one there (keeping its options), else ``http_status:404``."""
    current = [rule for rule in document.get("ingress") or [] if isinstance(rule, Mapping)]
    last = dict(current[-1]) if current and not current[-1].get("hostname") and not current[-1].get("path") \
        else None
    catch_all = {**(last or {}), "service": fallback} if fallback else last or {"service": m.DEFAULT_FALLBACK}
    result = dict(document)
    result["tunnel"] = tunnel_id
    result["ingress"] = ingress(rules, catch_all)
    return result if "tunnel" in document else {"tunnel": tunnel_id, **result}


def credentials_json(account_id: str, tunnel: Tunnel, file: str | None, secret: str | None, where: str,
                     keys: tuple[str, str] = ("CLOUDFLARE_TUNNEL_CREDENTIAL_FILE",
                                              "CLOUDFLARE_TUNNEL_CREDENTIAL_SECRET")) -> str:
    """``credentials.json``: `file` verbatim (it must be this tunnel's), else adyanth's object built from the tunnel
    `secret`; :class:`m.SpecError` when neither is given (`keys`: the Secret keys they were read from) or the file
    is another tunnel's. No message names a character of either."""
    if file and file.strip():
        try:
            parsed = json.loads(file)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict) or not parsed.get("TunnelSecret"):
            raise m.SpecError(c.CREDENTIALS_INVALID, f"{where}: the tunnel credentials file is not a JSON object "
                              "with a TunnelSecret")
        if parsed.get("TunnelID") not in (None, tunnel.id):
            raise m.SpecError(c.CREDENTIALS_INVALID, f"{where}: the tunnel credentials file is tunnel "
                              f"{parsed.get('TunnelID')}'s, not {tunnel.name} ({tunnel.id})'s")
        return file
    if secret and secret.strip():
        return json.dumps({"AccountTag": account_id, "TunnelID": tunnel.id, "TunnelName": tunnel.name,
                           "TunnelSecret": secret.strip()}, sort_keys=True, separators=(",", ":"))
    raise m.SpecError(c.SECRET_KEY_MISSING, f"{where}: tunnel {tunnel.name} ({tunnel.id}) is locally configured "
                      f"(a config file): its credentials are needed, under the key {keys[0]} (the credentials file) or "
                      f"{keys[1]} (the tunnel secret)")
