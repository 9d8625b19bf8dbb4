"""The layering of ``operator/chutes``: the import-linter contracts in pyproject.toml (``[tool.importlinter]``) hold.

``make lint`` runs ``lint-imports``; CI runs only ``make test``, so the same check runs here, with this virtualenv's
interpreter. Each contract is also shown to catch what it forbids: one forbidden import is added to a copy of the
package, and the contract must then be reported broken.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

from chutes import runtime

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "operator" / "chutes"
CONFIG = REPO / "pyproject.toml"
CONTRACTS = (
    "doors-no-sdk",
    "sdk-in-core",
    "doors-independent",
    "core-alone",
    "hosts-core-alone",
    "doors-no-grpc",
    "grpc-in-core",
    "sandbox-protected",
    "layers",
    "pure",
)
LINT = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"


def lint_imports(source_root: Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` over the ``chutes`` package found under `source_root`, with the project's contracts (only
    `contracts`, when given)."""
    limit = [arg for contract in contracts for arg in ("--contract", contract)]
    return subprocess.run(
        [sys.executable, "-c", LINT, "--no-cache", "--no-logo", *limit, str(CONFIG)],
        env={**os.environ, "PYTHONPATH": str(source_root), "COLUMNS": "200"},
        cwd=source_root, capture_output=True, text=True, timeout=120, check=False,
    )


def test_every_contract_is_kept() -> None:
    result = lint_imports(PACKAGE.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in result.stdout


# One import each contract forbids: (contract, module of the copy it is added to, the import).
BREAKS = [
    ("doors-no-sdk", "frontdoors/sessions/desired.py", "import cloudflare"),
    ("sdk-in-core", "kube.py", "import cloudflare"),
    ("doors-independent", "frontdoors/claiming.py", "from chutes.frontdoors.gateways import desired"),
    ("core-alone", "cloudflare_core/models.py", "import kopf"),
    ("core-alone", "cloudflare_core/ownership.py", "from chutes import kube"),
    ("hosts-core-alone", "hosts_core/models.py", "import kopf"),
    ("hosts-core-alone", "hosts_core/backend.py", "from chutes import kube"),
    ("doors-no-grpc", "frontdoors/problems.py", "import grpc"),
    ("doors-no-grpc", "frontdoors/claiming.py", "from chutes.hosts_core.generated import hosts_pb2"),
    ("grpc-in-core", "kube.py", "import grpc"),
    ("pure", "hosts_core/models.py", "from chutes.hosts_core import grpc_backend"),
    ("sandbox-protected", "runtime.py", "from chutes.sandbox import manifests"),
    ("layers", "kube.py", "from chutes import leases"),
    ("pure", "frontdoors/httproutes/merge.py", "from chutes.cloudflare_core import CloudflareCore"),
]


@pytest.mark.parametrize(("contract", "module", "line"), BREAKS, ids=[f"{c}:{m}" for c, m, _ in BREAKS])
def test_a_contract_reports_the_import_it_forbids(tmp_path: Path, contract: str, module: str, line: str) -> None:
    copy = tmp_path / "chutes"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    with (copy / module).open("a", encoding="utf-8") as file:
        file.write(f"\n{line}  # breaks {contract}\n")
    result = lint_imports(tmp_path, contract)
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Contracts: 0 kept, 1 broken." in result.stdout, result.stdout + result.stderr


def test_the_runtime_imports_every_front_door_it_registers() -> None:
    """Wired by imports, not by strings: each door's module is in the import graph, under the runtime."""
    graph = grimp.build_graph("chutes", cache_dir=None)
    imported = graph.find_modules_directly_imported_by("chutes.runtime")
    names = ("gateways", "httproutes", "sessions", "hosts", "tunnels")
    doors = {f"chutes.frontdoors.{name}.handlers" for name in names}
    registers = {door.register.__module__ for door in runtime.FRONT_DOORS.values()}
    assert registers == doors - {"chutes.frontdoors.hosts.handlers"} | {"chutes.runtime"}  # hosts: imported when served
    assert doors <= imported


def test_a_run_without_the_router_hosts_door_does_not_load_grpc() -> None:
    """The router-hosts door's gRPC, protobuf and cryptography (about 19 MB of RSS) are loaded when it is served
    only: importing what `chutes run` imports leaves them out."""
    heavy = ("grpc", "google.protobuf", "cryptography", "chutes.hosts_core")
    code = f"import sys, chutes.cli, chutes.runtime; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    env = {**os.environ, "PYTHONPATH": str(Path(runtime.__file__).resolve().parents[1])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
