"""The soak's end-state checks, all by reading the emulators: our Cloudflare objects compared with a clean run's
(the same final source objects on fresh emulators, no fault, no kill: the reference), keyed by natural key, so
that each is present exactly once with the reference's content (else missing, duplicate, orphan or different);
every foreign object byte-identical (the shared tunnel's foreign rules kept, in their order, with their
catch-all last); and no canary (API tokens, tunnel tokens, any Secret's value; the router-hosts client key, from
:mod:`harness.soak_hosts`, which checks the router-hosts side) in the replicas' logs, the Events, any status,
annotation or ledger ConfigMap."""

from __future__ import annotations

import base64
import json
from collections import Counter
from typing import Any

from chutes.sandbox.cloudflare.tunnels import connector_token
from harness.soak_world import CANARY_TOKEN, FOREIGN_TOKEN, NAMESPACES, Foreign, Kube

VOLATILE = frozenset({"id", "uid", "aud", "created_at", "updated_at", "created_on", "modified_on", "version",
                      "deleted_at", "connections", "tunnel_secret", "client_id", "client_secret", "expires_at",
                      "last_seen_at", "account_id", "zone_id", "zone_name", "meta", "app_id", "policy_links",
                      "comment_modified_on", "tags_modified_on"})
Item = tuple[str, str, str]  # (kind, natural key, content)


def _names(state: dict[str, Any]) -> dict[str, str]:
    """Every id of the state -> a name that does not depend on the run (ids differ between runs)."""
    ids = {k: f"<tunnel {v['name']}>" for k, v in state["tunnels"].items()}
    ids |= {k: f"<app {v['name']}>" for k, v in state["access_apps"].items()}
    ids |= {k: f"<policy {v['name']}>" for k, v in state["access_policies"].items()}
    ids |= {k: f"<idp {v['name']}>" for k, v in state["identity_providers"].items()}
    ids |= {k: f"<token {v['name']}>" for k, v in state["service_tokens"].items()}
    return ids


def _normal(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _normal(v, ids) for k, v in sorted(value.items()) if k not in VOLATILE}
    if isinstance(value, list):
        return [_normal(v, ids) for v in value]
    if isinstance(value, str):
        head, dot, tail = value.partition(".")
        if head in ids and dot:
            return ids[head] + dot + tail  # a CNAME's target: <tunnel id>.cfargotunnel.com
        return ids.get(value, value)
    return value


def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def ours(state: dict[str, Any], foreign: Foreign) -> list[Item]:
    """Our objects in `state` as (kind, natural key, content): everything not in the foreign record of the
    world (foreign objects are checked on their own, byte for byte)."""
    ids = _names(state)
    zones = {z["id"]: z["name"] for z in state["zones"]}
    items: list[Item] = []
    for zone_id, records in state["dns_records"].items():
        for r in records:
            if r["id"] not in foreign.records:
                items.append(("record", f"{zones.get(zone_id)} {r['name']} {r['type']}", _dump(_normal(r, ids))))
    foreign_rules = [_dump(rule) for rule in foreign.foreign_rules]
    for tunnel_id, tunnel in state["tunnels"].items():
        if tunnel.get("deleted_at") or (tunnel_id in foreign.tunnels and tunnel_id != foreign.shared):
            continue
        name = ids[tunnel_id]
        if tunnel_id not in foreign.tunnels:
            items.append(("tunnel", name, _dump(_normal(tunnel, ids))))
        config = (state["tunnel_configs"].get(tunnel_id) or {}).get("config") or {}
        for position, rule in enumerate(config.get("ingress") or []):
            if tunnel_id == foreign.shared and _dump(rule) in foreign_rules:
                continue
            key = f"{name} {rule.get('hostname', '<catch-all>')} {rule.get('path', '')}".rstrip()
            last = position == len(config["ingress"]) - 1
            items.append(("rule", key, _dump(_normal(rule, ids)) + (" (last)" if last else "")))
        if tunnel_id not in foreign.tunnels:
            rest = {k: v for k, v in config.items() if k != "ingress"}
            items.append(("tunnel config", name, _dump(_normal(rest, ids))))
    for app_id, app in state["access_apps"].items():
        if app_id not in foreign.apps:
            items.append(("access app", str(app.get("domain")), _dump(_normal(app, ids))))
    for policy_id, policy in state["access_policies"].items():
        if policy_id not in foreign.policies:
            owner = ids.get(str(policy.get("app_id")), "<reusable>")
            items.append(("access policy", f"{owner} {policy['name']}", _dump(_normal(policy, ids))))
    for token_id, token in state["service_tokens"].items():
        if token_id not in foreign.tokens:
            items.append(("service token", token["name"], _dump(_normal(token, ids))))
    for idp_id, idp in state["identity_providers"].items():
        if idp_id not in foreign.idps:
            items.append(("identity provider", idp["name"], _dump(_normal(idp, ids))))
    return items


def compare(soak: list[Item], reference: list[Item]) -> dict[str, list[str]]:
    """duplicates, orphans (ours, in the soak, not in the reference), missing, different (content)."""
    keys = Counter((kind, key) for kind, key, _ in soak)
    ref_keys = Counter((kind, key) for kind, key, _ in reference)
    contents = {(kind, key): content for kind, key, content in soak}
    ref_contents = {(kind, key): content for kind, key, content in reference}
    different = [f"{kind} {key}: {contents[kind, key]} != reference {ref_contents[kind, key]}"
                 for kind, key in sorted(keys) if (kind, key) in ref_keys and contents[kind, key] != ref_contents[
                     kind, key]]
    return {
        "duplicates": [f"{kind} {key} x{n}" for (kind, key), n in sorted(keys.items())
                       if n > ref_keys.get((kind, key), 1)],
        "orphans": [f"{kind} {key}: {contents[kind, key]}" for kind, key in sorted(keys)
                    if (kind, key) not in ref_keys],
        "missing": [f"{kind} {key}: {ref_contents[kind, key]}" for kind, key in sorted(ref_keys)
                    if (kind, key) not in keys],
        "different": different,
    }


def foreign_changes(state: dict[str, Any], foreign: Foreign) -> list[str]:
    """Every foreign object not byte-identical to what it was (the shared tunnel's configuration: its foreign rules,
    as the foreign writer last left them, in order, and its catch-all last)."""
    found = []
    records = {r["id"]: r for zone in state["dns_records"].values() for r in zone}
    for kind, before, now in [("record", foreign.records, records), ("tunnel", foreign.tunnels, state["tunnels"]),
                              ("access app", foreign.apps, state["access_apps"]),
                              ("access policy", foreign.policies, state["access_policies"]),
                              ("service token", foreign.tokens, state["service_tokens"]),
                              ("identity provider", foreign.idps, state["identity_providers"]),
                              ("tunnel configuration", foreign.configs, state["tunnel_configs"])]:
        for object_id, was in before.items():
            if object_id not in now:
                found.append(f"{kind} {was.get('name', object_id)} deleted")
            elif _dump(now[object_id]) != _dump(was):
                found.append(f"{kind} {was.get('name', object_id)} changed: {_dump(was)} -> {_dump(now[object_id])}")
    ingress = ((state["tunnel_configs"].get(foreign.shared) or {}).get("config") or {}).get("ingress") or []
    kept = [rule for rule in ingress if rule in foreign.foreign_rules]
    if kept != foreign.foreign_rules:
        found.append(f"shared tunnel's foreign rules {foreign.foreign_rules} -> {kept}")
    if not ingress or ingress[-1] != foreign.foreign_rules[-1]:
        found.append(f"shared tunnel's catch-all {foreign.foreign_rules[-1]} not last: {ingress[-1:]}")
    return found


def canaries(cf: Any, k: Kube) -> dict[str, str]:
    """Every secret value there is (label -> value): the API tokens, every tunnel's connector token the emulator
    ever made, every Secret's values in the cluster (service-token secrets among them: the emulator keeps only
    their hash)."""
    values = {"API token": CANARY_TOKEN, "foreign API token": FOREIGN_TOKEN}
    with cf.state.lock:
        for tunnel in cf.state.tunnels.values():
            values[f"tunnel token of {tunnel.name}"] = connector_token(tunnel)
    for namespace in NAMESPACES:
        for secret in k.core.list_namespaced_secret(namespace).items:
            for key, value in (secret.data or {}).items():
                decoded = base64.b64decode(value).decode(errors="replace")
                if len(decoded) >= 16:
                    values[f"Secret {namespace}/{secret.metadata.name} {key}"] = decoded
    return values


def exposed_text(k: Kube) -> dict[str, str]:
    """Where no secret may show (label -> text): every Event, every custom object's status and annotations, every
    Service's and Pod's annotations, the ledger's ConfigMaps."""
    texts: dict[str, str] = {}
    for namespace in NAMESPACES:
        for event in k.core.list_namespaced_event(namespace).items:
            texts[f"Event {namespace}/{event.metadata.name}"] = f"{event.reason} {event.message}"
        for cm in k.core.list_namespaced_config_map(namespace).items:
            texts[f"ConfigMap {namespace}/{cm.metadata.name}"] = _dump(cm.data or {}) + _dump(
                cm.metadata.annotations or {})
    for group, version, plural in [("chutes.troubleshat.com", "v1alpha1", "chutegateways"),
                                   ("gateway.networking.k8s.io", "v1", "httproutes"),
                                   ("networking.cfargotunnel.com", "v1alpha1", "tunnelbindings"),
                                   ("networking.cfargotunnel.com", "v1alpha2", "tunnels"),
                                   ("cfzt.cloudflare.com", "v1alpha1", "cloudflarezerotrusttenants"),
                                   ("router-hosts.fzymgc.house", "v1alpha1", "hostmappings"),
                                   ("traefik.io", "v1alpha1", "ingressroutes"),
                                   ("traefik.io", "v1alpha1", "ingressroutetcps")]:
        for item in k.custom.list_cluster_custom_object(group, version, plural)["items"]:
            meta = item["metadata"]
            texts[f"{plural} {meta.get('namespace')}/{meta['name']}"] = _dump(item.get("status") or {}) + _dump(
                meta.get("annotations") or {})
    for config in k.custom.list_cluster_custom_object("chutes.troubleshat.com", "v1alpha1", "chuteconfigs")["items"]:
        texts[f"chuteconfig {config['metadata']['name']}"] = _dump(config.get("status") or {})
    for namespace in NAMESPACES:
        for obj in [*k.core.list_namespaced_service(namespace).items, *k.core.list_namespaced_pod(namespace).items]:
            texts[f"{obj.kind or 'object'} {namespace}/{obj.metadata.name}"] = _dump(obj.metadata.annotations or {})
    return texts


def leaks(secrets: dict[str, str], texts: dict[str, str]) -> list[str]:
    """Each (secret, place) where a secret's value, or its base64, shows."""
    found = []
    for label, value in secrets.items():
        forms = {value, base64.b64encode(value.encode()).decode()}
        for place, text in texts.items():
            if any(form in text for form in forms):
                found.append(f"{label} in {place}")
    return found
