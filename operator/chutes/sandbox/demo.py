"""``make demo``: the operator publishing the examples, with no cluster and no Cloudflare token.

Act one: starts the Kubernetes emulator and the Cloudflare emulator in-process, runs ``chutes run``
against them, applies ``examples/chute-gateway``, waits for the gateway to be Ready, prints what exists
in Kubernetes and in Cloudflare, then deletes the gateway and shows that everything of ours is gone.
The emulators run no controllers, so the demo plays the Deployment controller for cloudflared.

Act two: starts the router-hosts emulator (its own CA, server and client certificates), restarts the
operator with the router-hosts door on (mutual TLS, a default ingress IP), applies ``examples/hosts``,
prints what the server then holds, deletes one HostMapping and shows its entry gone.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from chutes import kube
from chutes.cloudflare_core.ownership import parse as parse_marker
from chutes.sandbox import manifests
from chutes.sandbox.cloudflare import CloudflareSandbox, SandboxConfig, SandboxThread
from chutes.sandbox.hosts_rehearsal import DEFAULT_INGRESS_IP, HostsRehearsal
from chutes.sandbox.kubernetes import KubeSandbox
from chutes.sandbox.routerhosts import RouterHostsSandbox, RouterHostsServer
from chutes.sandbox.runner import OperatorThread
from chutes.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[3]
DEMO_TOKEN = "sandbox-demo-token-replace-me"  # the value in examples/chute-gateway/01-cloudflare-token.yaml
T = TypeVar("T")


def say(text: str = "") -> None:
    print(text, flush=True)


async def wait_for(what: str, probe: Callable[[], Awaitable[T | None]], limit: float = 30.0) -> T:
    deadline = time.monotonic() + limit
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("   ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                     for row in rows)


def age(meta: Mapping[str, Any]) -> str:
    return "<1m" if meta.get("creationTimestamp") else "?"


def cloudflare_report(sandbox: CloudflareSandbox) -> list[str]:
    state = sandbox.snapshot()
    lines: list[str] = []
    for tunnel in state["tunnels"].values():
        deleted = f" (deleted {tunnel['deleted_at']})" if tunnel["deleted_at"] else ""
        lines.append(f"tunnel        {tunnel['name']}  id={tunnel['id']}{deleted}")
        config = (state["tunnel_configs"].get(tunnel["id"]) or {}).get("config") or {}
        for rule in config.get("ingress", []):
            lines.append(f"  ingress     {rule.get('hostname', '*'):<24} → {rule['service']}")
    for zone_id, records in state["dns_records"].items():
        zone = next(z["name"] for z in state["zones"] if z["id"] == zone_id)
        for record in records:
            marker = parse_marker(record.get("comment"))
            owner = f"owner={marker.owner_id} src={marker.source}" if marker else "not ours"
            lines.append(f"dns ({zone})  {record['type']} {record['name']} → {record['content']}  "
                         f"proxied={record['proxied']}  [{owner}]")
    for app in state["access_apps"].values():
        lines.append(f"access app    {app['name']}  domain={app['domain']}  idps={app.get('allowed_idps')}")
    for policy in state["access_policies"].values():
        lines.append(f"  policy      {policy['name']}  {policy['decision']}  include={policy['include']}")
    for idp in state["identity_providers"].values():
        lines.append(f"identity      {idp['name']}  type={idp['type']}  id={idp['id']}")
    return lines or ["(nothing)"]


async def drive(examples: Path, crd_paths: Sequence[Path], sandbox: CloudflareSandbox) -> None:
    api = await kube.connect()
    try:
        crds = manifests.load(crd_paths)
        kinds = manifests.resource_table(crds)
        docs = await apply_shown(api, examples, kinds)
        gateways = [doc for doc in docs if doc["kind"] == "ChuteGateway"]
        configs = [doc for doc in docs if doc["kind"] == "ChuteConfig"]

        for gateway in gateways:
            await play_deployment_controller(api, gateway, kinds)
        for doc in configs + gateways:
            await wait_for(f"{doc['kind']} {doc['metadata']['name']} Ready", functools.partial(ready, api, doc, kinds))

        say()
        say("$ kubectl get chuteconfigs")
        rows = [["NAME", "READY", "DOMAIN", "AGE"]]
        for doc in configs:
            live = await manifests.get(api, doc, kinds) or {}
            rows.append([doc["metadata"]["name"], str(live.get("status", {}).get("ready")),
                         live["spec"]["domain"], age(live["metadata"])])
        say(table(rows))
        say()
        say("$ kubectl get chutegateways -A")
        rows = [["NAMESPACE", "NAME", "HOSTNAME", "READY", "TUNNEL", "AGE"]]
        for doc in gateways:
            live = await manifests.get(api, doc, kinds) or {}
            status = live.get("status", {})
            rows.append([doc["metadata"]["namespace"], doc["metadata"]["name"], status.get("hostname", ""),
                         str(status.get("ready")), status.get("tunnelId", ""), age(live["metadata"])])
        say(table(rows))
        say()
        say("Cloudflare now holds:")
        for line in cloudflare_report(sandbox):
            say(f"  {line}")

        say()
        for doc in gateways:
            await delete_shown(api, doc, kinds)
        say()
        say("Cloudflare after the delete (the OTP identity provider belongs to the account and stays):")
        for line in cloudflare_report(sandbox):
            say(f"  {line}")
        say_calls("Cloudflare API calls", sandbox.counters)
    finally:
        await api.close()


async def apply_shown(api: Any, examples: Path, kinds: Mapping[Any, Any]) -> list[dict[str, Any]]:
    """``kubectl apply -f`` of the `examples` folder, shown; the manifests applied."""
    docs = manifests.load([examples])
    say(f"$ kubectl apply -f {_shown(examples)}")
    for doc in docs:
        await manifests.create(api, doc, kinds)
        namespace = doc["metadata"].get("namespace")
        where = f" -n {namespace}" if namespace else ""
        say(f"{doc['kind'].lower()}/{doc['metadata']['name']}{where} created")
    return docs


async def delete_shown(api: Any, doc: Mapping[str, Any], kinds: Mapping[Any, Any], note: str = "") -> None:
    """``kubectl delete`` of `doc`, shown, and waited for until it is gone."""
    meta, kind = doc["metadata"], str(doc["kind"]).lower()
    say(f"$ kubectl delete {kind} {meta['name']} -n {meta['namespace']}")
    await manifests.delete(api, doc, kinds)
    await wait_for(f"the {doc['kind']} to be gone", functools.partial(gone, api, doc, kinds))
    say(f"{kind}/{meta['name']} deleted{note}")


def say_calls(label: str, counts: Mapping[str, int]) -> None:
    say()
    by_call = ", ".join(f"{call} {n}" for call, n in sorted(counts.items()))
    say(f"{label}: {sum(counts.values())} ({by_call})")


async def ready(api: Any, doc: Mapping[str, Any], kinds: Mapping[Any, Any]) -> bool:
    live = await manifests.get(api, doc, kinds)
    return bool(live and (live.get("status") or {}).get("ready"))


async def gone(api: Any, doc: Mapping[str, Any], kinds: Mapping[Any, Any]) -> bool:
    return await manifests.get(api, doc, kinds) is None


async def play_deployment_controller(api: Any, gateway: Mapping[str, Any], kinds: Mapping[Any, Any]) -> None:
    """Once the operator created cloudflared, report its replicas available (what the real controller does)."""
    meta = gateway["metadata"]
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": f"chute-{meta['name']}-cloudflared", "namespace": meta["namespace"]}}
    live = await wait_for("the cloudflared Deployment", lambda: manifests.get(api, deployment, kinds))
    replicas = int(live["spec"].get("replicas", 1))
    await manifests.patch_status(api, deployment, kinds, {
        "replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas, "updatedReplicas": replicas,
    })


def _shown(path: Path) -> Path:
    return path.relative_to(REPO) if path.is_relative_to(REPO) else path


def entries_report(server: RouterHostsServer) -> list[str]:
    entries = sorted(server.entries(), key=lambda e: (e.comment or "", e.hostname))
    if not entries:
        return ["(nothing)"]
    rows = [["ID", "HOSTNAME", "IP", "ALIASES", "TAGS", "COMMENT"]]
    rows += [[e.id, e.hostname, e.ip, ",".join(e.aliases) or "-", ",".join(e.tags) or "-", e.comment or "-"]
             for e in entries]
    return table(rows).splitlines()


async def hosts_settled(api: Any, kinds: Mapping[Any, Any], hosts: HostsRehearsal,
                        mappings: Sequence[Mapping[str, Any]]) -> bool:
    """Every HostMapping Synced for its generation and every route's entries and annotation in place."""
    for doc in mappings:
        live = await manifests.get(api, doc, kinds) or {}
        status = live.get("status") or {}
        if status.get("phase") != "Synced" or status.get("observedGeneration") != live["metadata"].get("generation"):
            return False
    return all(outcome.settled for outcome in await hosts.outcomes(api, kinds))


async def drive_hosts(examples: Path, crd_paths: Sequence[Path], server: RouterHostsServer) -> None:
    api = await kube.connect()
    try:
        kinds = manifests.resource_table(manifests.load(crd_paths))
        docs = await apply_shown(api, examples, kinds)
        mappings = [doc for doc in docs if doc["kind"] == "HostMapping"]
        routes = [doc for doc in docs if doc["kind"] in ("IngressRoute", "IngressRouteTCP")]
        hosts = HostsRehearsal(server, DEFAULT_INGRESS_IP)
        await wait_for("the HostMappings and routes to be registered",
                       functools.partial(hosts_settled, api, kinds, hosts, mappings))

        say()
        say("$ kubectl get hostmappings -A")
        rows = [["NAMESPACE", "NAME", "IP", "HOSTNAME", "PHASE", "AGE"]]
        for doc in mappings:
            live = await manifests.get(api, doc, kinds) or {}
            rows.append([doc["metadata"]["namespace"], doc["metadata"]["name"], live["spec"]["ip"],
                         live["spec"]["hostname"], (live.get("status") or {}).get("phase", ""),
                         age(live["metadata"])])
        say(table(rows))
        say()
        say("The routes' host-ids annotations (upstream's format, so either operator can take over):")
        for doc in routes:
            live = await manifests.get(api, doc, kinds) or {}
            value = (live["metadata"].get("annotations") or {}).get("router-hosts.fzymgc.house/host-ids")
            say(f"  {doc['kind'].lower()}/{doc['metadata']['name']}  {value or '(none: nothing registered)'}")
        say()
        say("The router-hosts server now holds:")
        for line in entries_report(server):
            say(f"  {line}")

        say()
        await delete_shown(api, mappings[-1], kinds, " (its finalizer waited for the entry to go)")
        say()
        say("The router-hosts server after the delete:")
        for line in entries_report(server):
            say(f"  {line}")
        say_calls("router-hosts calls", server.counters)
    finally:
        await api.close()


def act_two(examples: Path, crd_paths: Sequence[Path], sandbox: CloudflareSandbox) -> None:
    say()
    say("=== Act two: the router-hosts front door (HostMappings and Traefik route hosts, gRPC over mutual TLS) ===")
    say()
    with RouterHostsSandbox() as server:
        say("$ python -m chutes.sandbox.routerhosts --port 0   # makes its CA, server and client certificates")
        say(json.dumps(server.ready_line()))
        settings: Settings = load_settings(
            {}, standalone=True, cloudflare_base_url=sandbox.base_url, httproutes=False, sessions=False,
            router_hosts_address=server.address, router_hosts_tls_ca=server.ca, router_hosts_tls_cert=server.cert,
            router_hosts_tls_key=server.key, default_ingress_ip=DEFAULT_INGRESS_IP)
        with OperatorThread(settings, {}):
            say(f"chutes-operator restarted with the door on (chutes run --standalone --router-hosts-address "
                f"{server.address} --router-hosts-tls-ca/-cert/-key ... --default-ingress-ip {DEFAULT_INGRESS_IP})")
            say()
            asyncio.run(drive_hosts(examples, crd_paths, server))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chutes.sandbox.demo", description=__doc__)
    parser.add_argument("--examples", type=Path, default=REPO / "examples" / "chute-gateway")
    parser.add_argument("--hosts-examples", type=Path, default=REPO / "examples" / "hosts",
                        help="the second act's manifests (router-hosts door)")
    parser.add_argument("--crds", type=Path, default=REPO / "crds")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("kopf._core.reactor.running").setLevel(logging.ERROR)  # "OS signals are ignored" (a thread)
    started = time.monotonic()
    crd_paths = sorted(args.crds.glob("*.yaml"))
    seed = SandboxConfig.from_dict({"tokens": [{"name": "demo", "value": DEMO_TOKEN}]})
    with SandboxThread(seed) as sandbox, KubeSandbox(crd_paths=crd_paths, namespaces=["default"]) as cluster:
        os.environ["KUBECONFIG"] = cluster.kubeconfig
        say(f"Kubernetes emulator at {cluster.url}; Cloudflare emulator at {sandbox.base_url}")
        settings = load_settings({}, standalone=True, cloudflare_base_url=sandbox.base_url, httproutes=False,
                                 sessions=False)
        say()
        say("=== Act one: a ChuteGateway published through Cloudflare (tunnel, Access, DNS) ===")
        say()
        with OperatorThread(settings, {}):
            say("chutes-operator running (chutes run --standalone)")
            say()
            asyncio.run(drive(args.examples, crd_paths, sandbox))
        act_two(args.hosts_examples, crd_paths, sandbox)
    say()
    say(f"Done in {time.monotonic() - started:.1f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
