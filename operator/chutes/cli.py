"""``chutes``: the command line. ``chutes run`` wraps ``kopf run`` with our handlers and settings."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Mapping, Sequence

import kopf
from kopf._core.engines.activities import ActivityError  # not re-exported by kopf 1.45

from chutes import __version__
from chutes.settings import Settings, SettingsError, load_settings

QUIET_BELOW_INFO = ("httpcore", "cloudflare")


def _priority(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'auto', got {value!r}") from None


def _add_run_flags(parser: argparse.ArgumentParser) -> None:
    flag = parser.add_argument
    flag("-n", "--namespace", dest="namespaces", action="append", metavar="NS",
         help="watch only this namespace (repeatable; CHUTES_NAMESPACES=a,b); default: all namespaces")
    flag("-A", "--all-namespaces", action="store_true", help="watch all namespaces (the default)")
    flag("--owner-id", help="ownership marker id of this installation (CHUTES_OWNER_ID, default 'default')")
    flag("--resync-interval", type=float, help="seconds between drift checks (CHUTES_RESYNC_INTERVAL, 300)")
    flag("--sweep-interval", type=float, help="seconds between orphan sweeps (CHUTES_SWEEP_INTERVAL, 600)")
    flag("--sweep-max-deletions", type=int, metavar="N",
         help="most deletions per orphan sweep pass and scope (CHUTES_SWEEP_MAX_DELETIONS, 50; 0 = report only)")
    flag("--policy", choices=["sync", "upsert-only", "create-only"],
         help="sync (default), upsert-only (never delete) or create-only (never update nor delete) (CHUTES_POLICY)")
    flag("--dry-run", action=argparse.BooleanOptionalAction, default=None,
         help="log every Cloudflare change instead of making it (CHUTES_DRY_RUN, off)")
    flag("--hostname-rules", metavar="FILE",
         help="YAML file: which namespaces may publish which hostnames (CHUTES_HOSTNAME_RULES)")
    flag("--allow-adoption", action=argparse.BooleanOptionalAction, default=None,
         help="honour every source's request to adopt an unmarked Cloudflare object; off: only where a hostname "
              "rule says adopt: true (CHUTES_ALLOW_ADOPTION, off)")
    flag("--cloudflared-image", dest="cloudflared_images", action="append", metavar="REPO",
         help="an image repository ChuteGateways may run cloudflared from (repeatable; CHUTES_CLOUDFLARED_IMAGES=a,b; "
              "default cloudflare/cloudflared; 'x/' = every repository below x/, '*' = any)")
    flag("--ledger-namespace", metavar="NS",
         help="namespace of the claim ConfigMaps and tunnel Leases (CHUTES_LEDGER_NAMESPACE; default: "
              "OPERATOR_NAMESPACE, else the Pod's namespace)")
    flag("--cloudflare-base-url", help="Cloudflare API base URL (CHUTES_CLOUDFLARE_BASE_URL or CLOUDFLARE_BASE_URL)")
    flag("--rate-limit", type=int, help="Cloudflare requests per token per window (CHUTES_RATE_LIMIT, 1200)")
    flag("--rate-window", type=float, help="seconds of that window (CHUTES_RATE_WINDOW, 300)")
    flag("--max-reconciles", type=int, metavar="N",
         help="most source objects reconciled at once, the others waiting their turn (CHUTES_MAX_RECONCILES, 64; "
              "0 = no limit)")
    flag("--chutes", action=argparse.BooleanOptionalAction, default=None,
         help="serve ChuteConfig/ChuteGateway (CHUTES_CHUTES, on)")
    flag("--httproutes", action=argparse.BooleanOptionalAction, default=None,
         help="serve annotated HTTPRoutes (CHUTES_HTTPROUTES, on)")
    flag("--tunnels", action=argparse.BooleanOptionalAction, default=None,
         help="serve Tunnel/ClusterTunnel/TunnelBinding, adyanth's API (CHUTES_TUNNELS, on)")
    flag("--cluster-resource-namespace", metavar="NAMESPACE",
         help="where ClusterTunnel Secrets and cloudflared live (CHUTES_CLUSTER_RESOURCE_NAMESPACE; default: the "
         "operator's namespace)")
    flag("--shared-tunnel-target", dest="shared_tunnel_targets", action="append", metavar="HOST",
         help="a host TunnelBindings may target through a ClusterTunnel besides their own namespace's Services "
              "(repeatable; CHUTES_SHARED_TUNNEL_TARGETS=a,b; '*' = any, adyanth's behaviour)")
    flag("--sessions", action=argparse.BooleanOptionalAction, default=None,
         help="serve session Pods (CHUTES_SESSIONS; default: on when CF_API_TOKEN, CF_ZONE_ID, "
              "CF_TUNNEL_ID and DOMAIN are set)")
    flag("--router-hosts-address", metavar="HOST:PORT",
         help="a router-hosts server: serve HostMappings and Traefik route hosts into it (CHUTES_ROUTER_HOSTS_ADDRESS; "
              "unset: the door is off)")
    flag("--router-hosts-tls-ca", metavar="FILE", help="CA of the server's certificate (CHUTES_ROUTER_HOSTS_TLS_CA)")
    flag("--router-hosts-tls-cert", metavar="FILE", help="our client certificate (CHUTES_ROUTER_HOSTS_TLS_CERT)")
    flag("--router-hosts-tls-key", metavar="FILE", help="its key (CHUTES_ROUTER_HOSTS_TLS_KEY)")
    flag("--default-ingress-ip", metavar="IP",
         help="the IP Traefik route hostnames are registered with (CHUTES_DEFAULT_INGRESS_IP)")
    flag("--standalone", action=argparse.BooleanOptionalAction, default=None,
         help="no leader election (CHUTES_STANDALONE, off)")
    flag("--peering", help="kopf peering name for leader election; needs kopf's peering CRDs (CHUTES_PEERING)")
    flag("--priority", type=_priority, help="kopf peering priority, or 'auto' for replicas of one Deployment (from "
         "the start time: the oldest replica is active; the Pod name breaks ties) (CHUTES_PRIORITY, 0)")
    flag("--liveness", dest="liveness_endpoint", metavar="URL",
         help="serve kopf's liveness probe, e.g. http://0.0.0.0:8080/healthz (CHUTES_LIVENESS_ENDPOINT)")
    flag("--stop-grace", type=float, metavar="SECONDS",
         help="at a stop, seconds each object's handling under way may take to finish (CHUTES_STOP_GRACE, 2)")
    flag("--metrics-port", type=int, metavar="PORT",
         help="serve Prometheus /metrics and /readyz on this port (CHUTES_METRICS_PORT; 0 = off, the default)")
    flag("--log-format", choices=["text", "json"], help="CHUTES_LOG_FORMAT, text")
    flag("--log-level", type=str.upper, choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="CHUTES_LOG_LEVEL, INFO")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chutes", description=__doc__)
    parser.add_argument("--version", action="version", version=f"chutes-operator {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the operator against the current cluster")
    _add_run_flags(run)
    plan = commands.add_parser("plan", help="print the Cloudflare (and router-hosts) changes some manifests make "
                               "(offline, on the sandbox emulators)", description="Runs the operator offline on the "
                               "emulators and prints the Cloudflare objects (and router-hosts entries) it would "
                               "create, update and delete.")
    _add_plan_flags(plan)
    return parser


def _add_plan_flags(parser: argparse.ArgumentParser) -> None:
    flag = parser.add_argument
    flag("-f", "--filename", dest="filenames", action="append", required=True, metavar="PATH",
         help="a manifest file, a directory (its *.yaml, recursively) or - for stdin (repeatable)")
    flag("--cloudflare-state", metavar="FILE",
         help="start from this state (written by --save-state, or a Cloudflare sandbox snapshot)")
    flag("--save-state", metavar="FILE", help="write the state after the plan (for the next --cloudflare-state)")
    flag("-o", "--output", choices=["text", "json"], default="text")
    flag("--detailed-exitcode", action="store_true", help="exit 2 when the plan has changes (0: none, 1: error)")
    flag("--timeout", type=float, default=60.0, help="seconds to wait for the operator to settle (60)")
    flag("--operator-namespace", metavar="NS",
         help="the HTTPRoute door's OPERATOR_NAMESPACE (default: the tenants' namespace)")
    flag("--owner-id", help="ownership marker id of the installation to plan for (default 'default')")
    flag("--policy", choices=["sync", "upsert-only", "create-only"], help="the installation's write policy (sync)")
    flag("--hostname-rules", metavar="FILE", help="the installation's namespace → hostname rules (YAML)")
    flag("--allow-adoption", action=argparse.BooleanOptionalAction, default=None,
         help="the installation honours every adoption request (off: only where a hostname rule allows it)")
    flag("--chutes", action=argparse.BooleanOptionalAction, default=None, help="plan ChuteGateways (on)")
    flag("--httproutes", action=argparse.BooleanOptionalAction, default=None, help="plan annotated HTTPRoutes (on)")
    flag("--tunnels", action=argparse.BooleanOptionalAction, default=None,
         help="plan Tunnels, ClusterTunnels and TunnelBindings (on)")
    flag("--router-hosts", action=argparse.BooleanOptionalAction, default=None,
         help="plan HostMappings and Traefik route hosts on a router-hosts emulator (default: when the manifests "
              "hold a HostMapping, IngressRoute or IngressRouteTCP, or the state holds router-hosts entries)")
    flag("--ingress-ip", default="192.0.2.10", metavar="IP",
         help="the installation's default ingress IP, for Traefik route hosts (192.0.2.10)")
    flag("--sessions-env", metavar="FILE",
         help="plan session Pods: the session door's environment (CF_API_TOKEN, CF_ZONE_ID, CF_TUNNEL_ID, DOMAIN, "
              "ROUTER_SERVICE_URL...), KEY=VALUE lines as the sidecar has them; the door is planned when the "
              "manifests (or the state) hold Pods carrying its SESSION_HASH_LABEL")
    flag("--sessions-env-var", dest="sessions_env_vars", action="append", metavar="KEY=VALUE",
         help="one variable of the session door's environment, over --sessions-env's (repeatable; keep the token "
              "in the file: a command line is visible to other users)")


def settings_from_args(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    overrides = {name: getattr(args, name, None) for name in Settings.model_fields}
    if args.all_namespaces:
        overrides["namespaces"] = ()
    return load_settings(environ, **overrides)


def configure_logging(settings: Settings) -> None:
    log_format = kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.FULL
    kopf.configure(verbose=settings.log_level == "DEBUG", log_format=log_format)
    logging.getLogger().setLevel(settings.log_level)
    level: int = logging.getLevelName(settings.log_level)
    # The SDK's HTTP client logs every request at INFO; our own metrics and Events say what matters.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, level))
    # Below INFO, httpcore and the SDK log request internals (header events, request options, exceptions with
    # their causes, which may quote a request's headers): never, whatever --log-level says.
    for name in QUIET_BELOW_INFO:
        logging.getLogger(name).setLevel(max(logging.INFO, level))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "plan":
        from chutes.sandbox import rehearsal  # imported late: `chutes run` does not load the emulators

        return rehearsal.command(args)
    environ = dict(os.environ)
    try:
        settings = settings_from_args(args, environ)
    except SettingsError as exc:
        print(f"chutes: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings)
    from chutes import runtime  # imported late: `chutes --help` stays fast

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(runtime.run(settings, environ))
    except SettingsError as exc:  # a front door's own variables (e.g. the session door's CF_ZONE_ID)
        print(f"chutes: {exc}", file=sys.stderr)
        return 2
    except ActivityError as exc:  # e.g. no cluster configuration: the causes were logged above
        causes = "; ".join(str(outcome.exception) for outcome in exc.outcomes.values() if outcome.exception)
        print(f"chutes: could not start: {causes or exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
