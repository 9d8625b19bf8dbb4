"""The zygote's own process (see :mod:`harness.zygote`): imports what ``chutes run`` imports, then forks one child per
request read from stdin and reports on stdout each child's pid, and its exit status once it has exited.

Requests, one JSON line each: ``{"argv": [...], "env": {...}, "stderr": path or null}``. Answers, one JSON line each:
``{"pid": N}`` (in request order), ``{"exited": N, "code": C}`` (``C`` as ``Popen.returncode``: negative for a
signal). The zygote ends when its stdin closes."""

from __future__ import annotations

import ctypes
import importlib
import json
import os
import select
import signal
import sys

# `chutes run`'s modules (the runtime is imported late by the CLI, the SDK's resources on first use); the zygote's
# PYTHONPATH is the repository's operator/ (harness.zygote).
# The router-hosts door is imported by `chutes run` only when served: warmed here too (its tests spawn it often) unless
# ZYGOTE_LEAN is set (bench/scale.py, which measures the RSS of a run without that door).
WARM = ("chutes.cli", "chutes.runtime", "cloudflare.resources.dns", "cloudflare.resources.zero_trust",
        *(() if os.environ.get("ZYGOTE_LEAN") else ("chutes.frontdoors.hosts.handlers",)))
for _name in WARM:
    importlib.import_module(_name)
cli = importlib.import_module("chutes.cli")
ZYGOTE = os.getpid()
PR_SET_PDEATHSIG = 1  # prctl(2): the signal this process gets when its parent ends (Linux)


def child(request: dict[str, object]) -> None:
    """In the forked child: become ``chutes <argv>`` with exactly `env` as its environment; never returns."""
    code = 1
    try:
        # Dies with the zygote (which ends with its parent: its stdin closes). Without this, an operator whose test
        # or bench was killed ran on, orphaned, retrying its emulator's port, and reached whatever test's emulator
        # was given that port next (a run saw another test's calls in its RBAC record).
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != ZYGOTE:  # the zygote died before that
            os._exit(1)
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        stderr = request.get("stderr")
        err = os.open(str(stderr), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if stderr else null
        os.dup2(err, 2)
        os.environ.clear()
        os.environ.update({str(k): str(v) for k, v in dict(request["env"]).items()})  # type: ignore[call-overload]
        argv = [str(a) for a in request["argv"]]  # type: ignore[attr-defined]
        sys.argv = ["chutes", *argv]
        code = cli.main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # reported as a fresh process would: on stderr, exit status 1
        import traceback

        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(code)


def main() -> None:
    answers = sys.stdout
    pending = b""
    while True:
        readable, _, _ = select.select([0], [], [], 0.05)
        if readable:
            data = os.read(0, 1 << 16)
            if not data:
                return
            pending += data
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                request = json.loads(line)
                answers.flush()
                pid = os.fork()
                if pid == 0:
                    child(request)
                answers.write(json.dumps({"pid": pid}) + "\n")
                answers.flush()
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            answers.write(json.dumps({"exited": pid, "code": os.waitstatus_to_exitcode(status)}) + "\n")
            answers.flush()


if __name__ == "__main__":
    main()
