"""``python -m chutes.sandbox.cloudflare --port N [--host H] [--config seed.yaml]``

Prints one JSON line when ready (base_url, token, accounts, zones) and serves until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from .config import SandboxConfig
from .sandbox import CloudflareSandbox


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chutes.sandbox.cloudflare", description=__doc__)
    parser.add_argument("--port", type=int, default=8787, help="TCP port (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--config", help="seed YAML: accounts, zones, tokens, rate_limit")
    args = parser.parse_args(argv)
    cfg = SandboxConfig.from_yaml(args.config) if args.config else SandboxConfig.default()
    asyncio.run(_serve(cfg, args.host, args.port))
    return 0


async def _serve(cfg: SandboxConfig, host: str, port: int) -> None:
    sandbox = CloudflareSandbox(cfg)
    await sandbox.start(host=host, port=port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    sys.stdout.write(json.dumps(sandbox.ready_line()) + "\n")
    sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        await sandbox.stop()


if __name__ == "__main__":
    sys.exit(main())
