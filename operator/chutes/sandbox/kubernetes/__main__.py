"""Serve the Kubernetes sandbox standalone: ``python -m chutes.sandbox.kubernetes --port N [--crds DIR]``.

Prints one JSON line ``{"url": ..., "kubeconfig": ...}`` when ready, then serves until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from types import FrameType

from chutes.sandbox.kubernetes.thread import DEFAULT_NAMESPACES, KubeSandbox


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m chutes.sandbox.kubernetes', description=__doc__)
    parser.add_argument('--host', default='127.0.0.1')
    parser.add_argument('--port', type=int, default=0, help='0 picks a free port')
    parser.add_argument('--crds', action='append', default=None, metavar='PATH',
                        help='a CRD manifest file or directory (repeatable; default: <repo>/crds)')
    parser.add_argument('--namespace', action='append', default=None, metavar='NAME',
                        help=f'a Namespace to create (repeatable; default: {", ".join(DEFAULT_NAMESPACES)})')
    args = parser.parse_args(argv)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    with KubeSandbox(crd_paths=args.crds, namespaces=args.namespace or DEFAULT_NAMESPACES,
                     host=args.host, port=args.port) as kube:
        print(json.dumps({'url': kube.url, 'kubeconfig': kube.kubeconfig}), flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == '__main__':
    sys.exit(main())
