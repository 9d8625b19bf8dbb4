"""``python -m chutes.sandbox.routerhosts --port N [--host H] [--certs DIR]``

Prints one JSON line when ready (``address``, and the paths of the ``ca``, client ``cert`` and client ``key`` a
client needs) and serves until SIGINT/SIGTERM. Without --certs, the certificates are made in a temporary folder
removed at exit; with it, the ones in DIR are reused (made there when missing).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from .server import RouterHostsServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chutes.sandbox.routerhosts", description=__doc__)
    parser.add_argument("--port", type=int, default=50051, help="TCP port (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--certs", help="folder of the CA, server and client certificates (kept)")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.host, args.port, args.certs))
    return 0


async def _serve(host: str, port: int, certs: str | None) -> None:
    server = RouterHostsServer(certs)
    await server.start(host=host, port=port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    sys.stdout.write(json.dumps(server.ready_line()) + "\n")
    sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        await server.stop()


if __name__ == "__main__":
    sys.exit(main())
