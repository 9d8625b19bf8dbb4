"""The soak's router-hosts side (issue 16 §1): the emulator's faults, the foreign entries put in place before the
operator starts (kept to be compared byte for byte at the end; another admin edits one of them during the run), the
bodies of HostMappings and Traefik routes, and the end checks read from the server: every host a live HostMapping,
IngressRoute or IngressRouteTCP names is there exactly once, with the content it asks for, held by a source that
asks for it (or refused, when an older foreign entry holds the name), and no entry of ours that nothing asks for.

The session door's IngressRoutes (two per session, both naming the session's hostname) are served by the hosts door
too: two sources asking for one hostname, the oldest entry holds it. Which of the two is a race, so their comments
are compared as ``k8s-ingress:<ns>/<route>-*``."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import grpc

from harness.soak_world import HOSTS_NS, INGRESS_IP, Foreign, Kube

GROUP, VERSION = "router-hosts.fzymgc.house", "v1alpha1"
TRAEFIK = ("traefik.io", "v1alpha1")
ROUTE_PLURALS = {"IngressRoute": "ingressroutes", "IngressRouteTCP": "ingressroutetcps"}
ROUTE_TAGS = ["kubernetes", "traefik", "ingress"]
WRITES = ("AddHost", "UpdateHost", "DeleteHost")
_NAMES = re.compile(r"(?:Host|HostSNI)\(([^)]*)\)")
_QUOTED = re.compile(r"`([^`]*)`")
_SESSION_ROUTE = re.compile(r"^(k8s-ingress:.+)-(signin|app)$")


def faults_on(rh: Any, seed: int) -> None:
    """As the Cloudflare emulator's: 20 ms latency, ≈3 % UNAVAILABLE and ≈2 % INTERNAL (the server's sanitised
    error) before anything is done; ≈5 % of writes carried out and their answer lost (UNAVAILABLE: the client
    retries on it). Cloudflare loses ≈1 % of a soak's ~100 writes; the door writes a few dozen times a soak, so
    that a few lost answers happen in each."""
    rh.faults.delay(0.02)
    rh.faults.fail_randomly(0.03, seed=seed + 10)
    rh.faults.fail_randomly(0.02, code=grpc.StatusCode.INTERNAL, seed=seed + 11)
    rh.faults.fail_randomly(0.05, rpcs=WRITES, after=True, seed=seed + 12)


def count(rh: Any, calls: Any, faults: Any) -> None:
    """The router-hosts calls and the faults injected, into the report's counters."""
    for record in rh.requests:
        calls["router-hosts"] += 1
        if record.rpc in WRITES and record.code == "OK":
            calls["router-hosts writes"] += 1
        if record.injected == "failed":
            faults[f"router-hosts {record.code}"] += 1
        elif record.injected == "answer lost":
            faults["router-hosts write applied, answer lost"] += 1


def writes(rh: Any) -> int:
    return sum(1 for record in rh.requests if record.rpc in WRITES and record.code == "OK")


# -- the foreign entries ------------------------------------------------------------------------------------------

FOREIGN_ENTRIES: list[tuple[str, str, str | None, tuple[str, ...], tuple[str, ...]]] = [
    # (ip, hostname, comment, tags, aliases)
    ("192.168.1.1", "router.lan", None, (), ()),  # no comment
    ("192.168.1.20", "printer.lan", "managed by hand", ("manual",), ()),  # edited by another admin during the run
    ("192.168.1.10", "nas.lan", None, (), ("files.lan",)),  # aliases
    (INGRESS_IP, "ir1-old.lan", f"k8s-ingress:{HOSTS_NS}/ir1", ("kubernetes",), ()),  # ours but no proof tags
    (INGRESS_IP, "legacy-app.lan", f"k8s-ingress:{HOSTS_NS}/", tuple(ROUTE_TAGS), ()),  # shaped like ours, no name
    ("192.168.1.99", "hm3-b.lan", "hand-made", (), ()),  # holds a name HostMapping hm3 asks for as variant b
    (INGRESS_IP, "ir2-b.lan", None, tuple(ROUTE_TAGS), ()),  # the very entry route ir2 asks for as variant b
]


def put_foreign_entries(rh: Any, foreign: Foreign, ids: list[str] | None = None) -> list[str]:
    """The foreign entries, before the operator starts (with `ids`: the same ids, for the reference run); their
    ids. `foreign.entries` keeps them as the server's snapshot shows them."""
    made = []
    for n, (ip, hostname, comment, tags, aliases) in enumerate(FOREIGN_ENTRIES):
        made.append(rh.put_entry(ip, hostname, comment, tags=tags, aliases=aliases,
                                 host_id=ids[n] if ids else None))
    foreign.entries = {item["id"]: item for item in rh.snapshot() if item["id"] in made}
    return made


def edit_foreign_entry(rh: Any, foreign: Foreign, writes: int) -> None:
    """Another admin edits printer.lan (its IP and version change; what it leaves is what must stay)."""
    entry_id, entry = next((k, v) for k, v in foreign.entries.items() if v["hostname"] == "printer.lan")
    rh.put_entry(f"192.168.1.{21 + writes % 50}", entry["hostname"], entry["comment"], tags=tuple(entry["tags"]),
                 aliases=tuple(entry["aliases"]), version=int(entry["version"]) + 1, host_id=entry_id)
    foreign.entries[entry_id] = next(item for item in rh.snapshot() if item["id"] == entry_id)


def foreign_changes(rh: Any, foreign: Foreign) -> list[str]:
    now = {item["id"]: item for item in rh.snapshot()}
    found = []
    for entry_id, was in foreign.entries.items():
        if entry_id not in now:
            found.append(f"router-hosts entry {was['hostname']} deleted")
        elif _dump(now[entry_id]) != _dump(was):
            found.append(f"router-hosts entry {was['hostname']} changed: {_dump(was)} -> {_dump(now[entry_id])}")
    return found


# -- the sources ------------------------------------------------------------------------------------------------


def mapping_body(name: str, hostname: str, ip: str, alias: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"hostname": hostname, "ip": ip, "tags": ["soak"]}
    if alias:
        spec["aliases"] = [alias]
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "HostMapping", "metadata": {"name": name}, "spec": spec}


def route_body(kind: str, name: str, hostnames: list[str]) -> dict[str, Any]:
    """An IngressRoute (``Host(`a`) || Host(`b`)``) or an IngressRouteTCP (``HostSNI(`a`, `b`)``) of `hostnames`."""
    if kind == "IngressRoute":
        match = " || ".join(f"Host(`{h}`)" for h in hostnames)
        spec: dict[str, Any] = {"entryPoints": ["web"], "routes": [
            {"match": match, "kind": "Rule", "services": [{"name": "web", "port": 80}]}]}
    else:
        match = "HostSNI(" + ", ".join(f"`{h}`" for h in hostnames) + ")"
        spec = {"entryPoints": ["websecure"], "routes": [{"match": match, "services": [{"name": "web", "port": 443}]}],
                "tls": {"passthrough": True}}
    return {"apiVersion": "/".join(TRAEFIK), "kind": kind, "metadata": {"name": name}, "spec": spec}


# -- the end checks ----------------------------------------------------------------------------------------------


def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _live(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [item for item in items if not item["metadata"].get("deletionTimestamp")]


def wanted(k: Kube) -> dict[str, list[dict[str, Any]]]:
    """Hostname (lower case) -> the entries asked for it (ip, hostname, comment, tags, aliases), read from every
    live HostMapping and Traefik route (parsed here, independently of the operator)."""
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in _live(k.custom.list_cluster_custom_object(GROUP, VERSION, "hostmappings")["items"]):
        meta, spec = item["metadata"], item.get("spec") or {}
        found[spec["hostname"].lower()].append({
            "ip_address": spec["ip"], "hostname": spec["hostname"],
            "comment": f"k8s:{meta['namespace']}/{meta['name']}", "tags": list(spec.get("tags") or []),
            "aliases": list(spec.get("aliases") or [])})
    routes: dict[tuple[str, str], set[str]] = defaultdict(set)
    for plural in ROUTE_PLURALS.values():
        for item in _live(k.custom.list_cluster_custom_object(*TRAEFIK, plural)["items"]):
            meta = item["metadata"]
            for route in (item.get("spec") or {}).get("routes") or []:
                for group in _NAMES.findall(str(route.get("match") or "")):
                    routes[meta["namespace"], meta["name"]] |= {h for h in _QUOTED.findall(group) if h != "*"}
    for (namespace, name), hostnames in routes.items():
        for hostname in hostnames:
            found[hostname.lower()].append({"ip_address": INGRESS_IP, "hostname": hostname,
                                            "comment": f"k8s-ingress:{namespace}/{name}", "tags": ROUTE_TAGS,
                                            "aliases": []})
    return found


def entry_problems(rh: Any, k: Kube, foreign: Foreign) -> list[str]:
    """Each wanted hostname held exactly once, by an entry with the content one of the sources asking for it wants
    (none when an older foreign entry holds the name: refused); no entry of ours (not foreign) nothing asks for."""
    asked = wanted(k)
    ours: dict[str, list[dict[str, Any]]] = defaultdict(list)
    held_by_foreign = {item["hostname"].lower() for item in foreign.entries.values()}
    for item in rh.snapshot():
        if item["id"] not in foreign.entries:
            ours[item["hostname"].lower()].append(item)
    found = []
    for hostname, wants in sorted(asked.items()):
        entries = ours.pop(hostname, [])
        if hostname in held_by_foreign:
            found += [f"{hostname}: held by a foreign entry, yet ours was made: {_content(e)}" for e in entries]
            continue
        if len(entries) != 1:
            found.append(f"{hostname}: {len(entries)} entries (wanted by {[w['comment'] for w in wants]}): "
                         f"{[_content(e) for e in entries]}")
            continue
        if _content(entries[0]) not in [_dump(w) for w in wants]:
            found.append(f"{hostname}: {_content(entries[0])}, wanted one of {[_dump(w) for w in wants]}")
    found += [f"orphan {hostname}: {_content(e)}" for hostname, entries in sorted(ours.items()) for e in entries]
    return found


def _content(item: dict[str, Any]) -> str:
    return _dump({key: item[key] for key in ("ip_address", "hostname", "comment", "tags", "aliases")})


def ours(rh: Any, foreign: Foreign) -> list[tuple[str, str, str]]:
    """Our entries as (kind, natural key, content) for the comparison with the reference run (the two session
    routes' comments made one: which of them holds the hostname is a race)."""
    items = []
    for item in rh.snapshot():
        if item["id"] in foreign.entries:
            continue
        content = {key: item[key] for key in ("ip_address", "hostname", "comment", "tags", "aliases")}
        content["comment"] = _SESSION_ROUTE.sub(r"\1-*", str(content["comment"]))
        items.append(("host entry", f"{content['comment']} {item['hostname']}", _dump(content)))
    return items


def key_canaries(key_file: str) -> dict[str, str]:
    """The client key's material (the whole PEM and each line of its base64 body): none may show anywhere."""
    text = Path(key_file).read_text()
    values = {"router-hosts client key": text.strip()}
    for n, line in enumerate(text.splitlines()):
        if line and not line.startswith("-----"):
            values[f"router-hosts client key line {n}"] = line
    return values
