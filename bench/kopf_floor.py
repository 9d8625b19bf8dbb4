"""Benchmark (issue 16 §4, the RSS target): what kopf alone keeps per object, without any of our code.

N TunnelBindings in the Kubernetes emulator; a bare kopf operator (kopf.operator, standalone, one namespace, Events
off) in a process of its own, with one create/resume handler that either returns at once (`done`), waits forever
(`waiting`: what every object of a burst costs while it waits for a reconcile slot), or raises
`kopf.TemporaryError(delay=600)` (`retrying`). Prints, per variant, the process's RSS after kopf's import, and once
every object's handler ran (5 s later), and the difference per object. It is the floor under `chutes run`'s RSS at
N objects handled by kopf: our imports (the Cloudflare SDK, kubernetes_asyncio, pydantic...) and our own state come
on top. Run: `.venv/bin/python bench/kopf_floor.py [N] [done|waiting|retrying ...]` (default 2000, all three).
A figure printer, not a test.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("done", "waiting", "retrying")
RESOURCE = ("networking.cfargotunnel.com", "v1alpha1", "tunnelbindings")


def rss_mib() -> int:
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) // 1024


def operator(variant: str, count: int) -> None:
    """The child: a bare kopf operator; prints one line when every object's handler has run."""
    import kopf

    imported = rss_mib()
    handled: set[str] = set()
    forever, everyone = asyncio.Event(), asyncio.Event()

    @kopf.on.startup()
    async def startup(settings: kopf.OperatorSettings, **_: object) -> None:
        settings.posting.enabled = False

    @kopf.on.resume(*RESOURCE)
    @kopf.on.create(*RESOURCE)
    async def handler(name: str, **_: object) -> None:
        handled.add(name)
        if len(handled) >= count:
            everyone.set()
        if variant == "waiting":
            await forever.wait()
        elif variant == "retrying":
            raise kopf.TemporaryError("waiting", delay=600)

    async def report() -> None:
        started = time.monotonic()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(everyone.wait(), 600)
        seconds = time.monotonic() - started
        await asyncio.sleep(5)
        now = rss_mib()
        print(f"{variant:>9}: {len(handled)} of {count} handled in {seconds:.0f} s; RSS {imported} MiB after the "
              f"imports, {now} MiB then: {(now - imported) * 1024 / max(count, 1):.1f} KiB per object", flush=True)
        os._exit(0)

    async def main() -> None:
        logging.basicConfig(level=logging.CRITICAL)
        asyncio.get_running_loop().create_task(report())
        await kopf.operator(standalone=True, namespaces=["default"])

    asyncio.run(main())


def main(argv: list[str]) -> None:
    count = int(argv[0]) if argv else 2000
    variants = argv[1:] or list(VARIANTS)
    sys.path.insert(0, str(ROOT / "operator"))
    from chutes.sandbox.kubernetes import KubeSandbox

    print(f"kopf alone, {count} TunnelBindings (bench/kopf_floor.py)")
    with KubeSandbox(namespaces=["default"]) as kube:
        for i in range(count):
            kube.seed("/".join(RESOURCE), {
                "apiVersion": f"{RESOURCE[0]}/{RESOURCE[1]}", "kind": "TunnelBinding",
                "metadata": {"name": f"b{i}", "namespace": "default"},
                "subjects": [{"name": f"s{i}"}], "tunnelRef": {"kind": "Tunnel", "name": "t"}}, namespace="default")
        for variant in variants:
            env = dict(os.environ, KUBECONFIG=kube.kubeconfig)
            subprocess.run([sys.executable, __file__, "--child", variant, str(count)], env=env, timeout=700,
                           check=False)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        operator(sys.argv[2], int(sys.argv[3]))
    else:
        main(sys.argv[1:])
