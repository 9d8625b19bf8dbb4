"""The *decide* step of a Tunnel or ClusterTunnel (pure): from what :mod:`tunnel_read` found, the ordered change
set, each change naming (``needs``) the earlier ones it cannot be made without.

Reconcile (:func:`decide`):

- a ``newTunnel``: its tunnel (found or created under its owner-qualified name, recorded in its tunnel claim: an
  intent before the create, the id after), then its catch-all and tunnel-wide origin settings (the tunnel is ours,
  its claim proves it: ``fallbackTarget``, ``noTlsVerify``, ``originCaPool``);
- an ``existingTunnel`` remotely configured: its catch-all only when ``fallbackTarget`` asks for another than the
  default (the one key we set in a co-owned configuration); locally configured: adyanth's ConfigMap (regenerated
  from the ledger; its checksum goes on the pods);
- then cloudflared's Secret (the tunnel token, or a local tunnel's credentials file) and its Deployment.

Every change is an *ensure* (``Change.ensure``): its maker judges it against the live object and applies the write
policy and dry-run itself, as the core does for the tunnel (a create held by dry-run stops the pass with
``DryRun``) and the configuration, and the ConfigMap writer for the ConfigMap (``governed=False``: the ledger alone
decides it). cloudflared's Secret and Deployment follow the (Cluster)Tunnel under every policy. A local tunnel
whose credentials could not be read gives a problem: nothing of its connector is changed.

Deletion (:func:`decide_leaving`), in the order the safety rules need: the rules in its ConfigMap (a locally
configured tunnel), then each hostname routed into its tunnel (rule, records, then Access: as each claim proves
them ours), then cloudflared, its Secrets and ConfigMap (only ours: labelled for this tunnel by this installation),
then the tunnel its claim proves ours (never an ``existingTunnel``: it has no claim). Each teardown is judged
object by object by the core (the write policy and dry-run keep objects, and their proof in the claim): they are
ensures too. A (Cluster)Tunnel whose spec no longer names its credentials while something is left in Cloudflare is
a problem: nothing is removed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chutes import claim as claiming
from chutes import conditions as c
from chutes.claim import Claim
from chutes.frontdoors import cloudflared
from chutes.frontdoors.changes import Change, Decision
from chutes.frontdoors.tunnels import config_file as cf
from chutes.frontdoors.tunnels import model as m

__all__ = ["Inputs", "Leaving", "Step", "connector", "decide", "decide_leaving"]

TUNNEL, DEFAULTS, CONFIG_MAP, SECRET, DEPLOYMENT = "tunnel", "tunnel_defaults", "ConfigMap", "Secret", "Deployment"
CONFIG_RULES = "tunnel_rule/config"


@dataclass(frozen=True)
class Step:
    """What the executor needs for one change: the claim it tears down (a hostname's, or the tunnel's), or the
    claims whose rules leave a ConfigMap; `origin_request`: the tunnel-wide origin settings to write (None: kept)."""

    claim: Claim | None = None
    claims: tuple[Claim, ...] = ()
    origin_request: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Inputs:
    """What the reconcile's read found: the spec; `recorded`, a ``newTunnel``'s id as its own claim records it
    ("" for none); `local`, an ``existingTunnel`` locally configured; `credentials_problem`: why its credentials
    file could not be read (reason, message)."""

    spec: m.TunnelSpec
    recorded: str = ""
    local: bool = False
    credentials_problem: tuple[str, str] | None = None


def connector(spec: m.TunnelSpec, checksum: str | None = None) -> cloudflared.Connector:
    """cloudflared for `spec`; with the `checksum` of a locally configured tunnel's ``config.yaml``, run from its
    ConfigMap and credentials file."""
    extra = ("--protocol", spec.protocol) if spec.protocol != "auto" else ()
    run = cloudflared.Connector(
        name=spec.deployment_name, namespace=spec.namespace,
        secret_name=spec.secret_name if checksum is None else spec.credentials_secret_name, labels=spec.object_labels,
        pod_labels=spec.pod_labels,
        selector={"app.kubernetes.io/name": "cloudflared", "app.kubernetes.io/instance": spec.deployment_name},
        image=spec.image, replicas=spec.replicas, resources=spec.resources or {}, extra_args=extra,
        node_selector=spec.node_selector, tolerations=spec.tolerations, affinity=spec.affinity,
        ca_secret=spec.origin_ca_pool, ca_dir=m.CA_DIR,
    )
    if checksum is None:
        return run
    return dataclasses.replace(run, config_map=spec.config_name, config_key=cf.CONFIG_KEY,
                               config_dir=cf.CONFIG_DIR, credentials_dir=cf.CREDENTIALS_DIR,
                               pod_annotations={cf.CHECKSUM: checksum})


def _ensure(action: str, kind: str, name: str, detail: str, needs: tuple[str, ...] = (), *,
            payload: Step = Step(), governed: bool = True) -> Change[Step]:
    return Change("update" if action == "update" else "create", kind, name, payload, detail, key=kind,
                  needs=needs, ensure=True, governed=governed)


def decide(inputs: Inputs) -> Decision[Step]:
    """The changes that serve the (Cluster)Tunnel, in order (see the module)."""
    spec = inputs.spec
    out: list[Change[Step]] = []
    if spec.is_new:
        out.append(_ensure("update" if inputs.recorded else "create", TUNNEL, spec.cloudflare_name,
                           inputs.recorded or "(found by name, or created)"))
        out.append(_ensure("update", DEFAULTS, spec.cloudflare_name, f"catch-all {spec.fallback}", (TUNNEL,),
                           payload=Step(origin_request=m.tunnel_origin_request(spec))))
    elif not inputs.local and spec.fallback_asked:  # asked for explicitly: the one key we set there
        out.append(_ensure("update", DEFAULTS, spec.existing_name or spec.existing_id or "",
                           f"catch-all {spec.fallback}"))
    if inputs.credentials_problem is not None:
        return Decision(tuple(out), (inputs.credentials_problem,))
    if inputs.local:
        out.append(_ensure("update", CONFIG_MAP, spec.config_name, f"{cf.CONFIG_KEY} (locally configured tunnel)",
                           governed=False))
    out.append(_ensure("update", SECRET, spec.credentials_secret_name if inputs.local else spec.secret_name,
                       "(credentials file)" if inputs.local else "(the tunnel token)",
                       tuple(change.key for change in out)))
    out.append(_ensure("update", DEPLOYMENT, spec.deployment_name, f"(cloudflared x{spec.replicas})", (SECRET,)))
    return Decision(tuple(out))


@dataclass(frozen=True)
class Leaving:
    """What a deletion's read found (pure data of :class:`tunnel_read.Leaving`)."""

    name: str
    namespace: str
    base: str
    held: tuple[Claim, ...]
    routed: tuple[Claim, ...]
    in_config: tuple[Claim, ...]
    has_spec: bool


def _teardown(kind: str, name: str, detail: str, key: str, needs: tuple[str, ...], payload: Step = Step(),
              governed: bool = True) -> Change[Step]:
    return Change("delete", kind, name, payload, detail, key=key, needs=needs, ensure=True, governed=governed)


def decide_leaving(leaving: Leaving) -> Decision[Step]:
    """The changes that tear the (Cluster)Tunnel down, in order (see the module); Deleting while something is
    left in Cloudflare that its spec no longer says how to reach."""
    if (leaving.held or leaving.in_config) and not leaving.has_spec:
        return Decision((), ((c.DELETING, "cannot remove the tunnel: the spec no longer names its credentials"),))
    out: list[Change[Step]] = []
    if leaving.in_config:
        out.append(_teardown("tunnel_rule", f"{len(leaving.in_config)} rule(s)",
                             f"(ConfigMap {leaving.namespace}/{leaving.name})", CONFIG_RULES, (),
                             Step(claims=leaving.in_config), governed=False))
    for claim in leaving.routed:
        rule = claim.entry(claiming.TUNNEL_RULE) or {}
        out.append(_teardown("hostname", claim.key, f"(rule in tunnel {rule.get('tunnel') or '?'}, DNS records, "
                             "then Access application)", f"hostname/{claim.key}",
                             (CONFIG_RULES,) if leaving.in_config else (), Step(claim=claim)))
    routing = tuple(change.key for change in out)
    deployment = _teardown(DEPLOYMENT, f"{leaving.base}-cloudflared", "(only ours)", DEPLOYMENT, routing)
    out.append(deployment)
    out += [_teardown(SECRET, f"{leaving.base}-{suffix}", "(only ours)", f"{SECRET}/{suffix}", (DEPLOYMENT,))
            for suffix in ("tunnel-token", "tunnel-credentials")]
    out.append(_teardown(CONFIG_MAP, leaving.name, "(only ours)", CONFIG_MAP, (DEPLOYMENT,), governed=False))
    connector = tuple(change.key for change in out if change.key not in routing)
    out += [_teardown(TUNNEL, claim.key, str((claim.entry(claiming.TUNNEL) or {}).get("id") or ""),
                      f"{TUNNEL}/{claim.key}", connector, Step(claim=claim)) for claim in leaving.held]
    return Decision(tuple(out))
