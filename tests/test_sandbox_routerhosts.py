"""The router-hosts emulator: as a program (one JSON line, clean SIGTERM), the server's rules request by request
(reference §5, §9 "Server") through the raw generated stub, its faults, log and snapshot, and mutual TLS."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest

from chutes.hosts_core import GrpcHostsBackend, HostSpec
from chutes.hosts_core.generated import hosts_pb2 as pb
from chutes.hosts_core.generated import hosts_pb2_grpc
from chutes.sandbox.routerhosts import ensure_certs
from chutes.sandbox.routerhosts.ids import ALPHABET

OPERATOR_ROOT = Path(__file__).resolve().parents[1] / "operator"


def test_the_program_prints_its_address_and_files_then_serves_until_sigterm() -> None:
    env = {**os.environ, "PYTHONPATH": str(OPERATOR_ROOT)}
    command = [sys.executable, "-m", "chutes.sandbox.routerhosts", "--port", "0"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        ready = json.loads(process.stdout.readline())
        assert set(ready) == {"address", "ca", "cert", "key"}
        host, port = ready["address"].rsplit(":", 1)
        assert host == "127.0.0.1" and int(port) > 0
        assert all(Path(ready[name]).is_file() for name in ("ca", "cert", "key"))

        async def add_and_list() -> list[str]:
            async with GrpcHostsBackend(ready["address"], ready["ca"], ready["cert"], ready["key"]) as client:
                await client.add(HostSpec("192.0.2.7", "nas.lan", "k8s:ns/nas"))
                return [entry.hostname for entry in await client.list_all()]

        assert asyncio.run(add_and_list()) == ["nas.lan"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert not Path(ready["ca"]).exists(), "the temporary certificates are removed at exit"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# --- the server's rules, request by request (reference §5 and §9 "Server"), through a raw stub -------------------


@pytest.fixture()
async def stub(routerhosts: Any) -> AsyncIterator[Any]:
    """The generated HostsService stub over mutual TLS: requests exactly as written (presence included)."""
    credentials = _credentials(routerhosts.ca, routerhosts.key, routerhosts.cert)
    async with grpc.aio.secure_channel(routerhosts.address, credentials) as channel:
        yield hosts_pb2_grpc.HostsServiceStub(channel)


def _credentials(ca: str, key: str | None = None, cert: str | None = None) -> grpc.ChannelCredentials:
    read = [Path(path).read_bytes() if path else None for path in (ca, key, cert)]
    return grpc.ssl_channel_credentials(*read)


async def _refusal(call: Any) -> tuple[str, str]:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call
    return error.value.code().name, error.value.details() or ""


async def _add(stub: Any, ip: str = "192.0.2.1", hostname: str = "nas.lan", **fields: Any) -> Any:
    return (await stub.AddHost(pb.AddHostRequest(ip_address=ip, hostname=hostname, **fields))).entry


@pytest.mark.parametrize(
    ("ip", "hostname", "aliases", "message"),
    [
        ("192.0.2.01", "nas.lan", [], "invalid IP address: 192.0.2.01"),
        ("fe80::1%eth0", "nas.lan", [], "invalid IP address: fe80::1%eth0"),
        ("", "nas.lan", [], "invalid IP address: "),
        ("192.0.2.1", "nas_1.lan", [], "invalid label 'nas_1' in hostname"),
        ("192.0.2.1", "nas.lan.", [], "hostname cannot start or end with dot"),
        ("192.0.2.1", "nas.lan", ["NAS.LAN"], "validation failed: alias validation: alias 'NAS.LAN' matches "
                                             "canonical hostname"),
        ("192.0.2.1", "nas.lan", ["a", "A"], "validation failed: alias validation: duplicate alias 'A' in entry"),
        ("192.0.2.1", "nas.lan", ["10.0.0.1"], "validation failed: alias validation: alias '10.0.0.1' cannot be "
                                              "an IP address"),
    ],
)
async def test_add_validates_with_the_servers_rules_and_words(
    stub: Any, ip: str, hostname: str, aliases: list[str], message: str
) -> None:
    refused = stub.AddHost(pb.AddHostRequest(ip_address=ip, hostname=hostname, aliases=aliases))
    assert await _refusal(refused) == ("INVALID_ARGUMENT", message)


async def test_entries_keep_what_was_sent_and_ids_are_new_monotonic_ulids(stub: Any) -> None:
    first = await _add(stub, "::FFFF:192.0.2.1", "NAS.Lan", tags=["b", "a", "b"], comment="")
    assert (first.ip_address, first.hostname, list(first.tags), first.version) == (
        "::FFFF:192.0.2.1", "NAS.Lan", ["b", "a", "b"], "1"  # not normalised, order and repeats kept
    )
    assert first.HasField("comment") and first.comment == ""
    await stub.DeleteHost(pb.DeleteHostRequest(id=first.id))
    again = await _add(stub, "::FFFF:192.0.2.1", "NAS.Lan")
    assert not again.HasField("comment")
    assert again.id > first.id and len(again.id) == 26 and set(again.id) <= set(ALPHABET)
    found = (await stub.GetHost(pb.GetHostRequest(id=again.id.lower()))).entry  # ids decode case-insensitively
    assert found.id == again.id


async def test_ids_and_versions_are_parsed_before_anything_else(stub: Any) -> None:
    entry = await _add(stub)
    for rpc, request, message in [
        (stub.GetHost, pb.GetHostRequest(id="01J"), 'invalid ID "01J": ulid: bad data size when unmarshaling'),
        (stub.DeleteHost, pb.DeleteHostRequest(id="8" * 26), f'invalid ID "{"8" * 26}": ulid: overflow when '
                                                             "unmarshaling"),
        (stub.UpdateHost, pb.UpdateHostRequest(id=entry.id, comment="x", expected_version="one"),
         'invalid expected_version "one": strconv.ParseInt: parsing "one": invalid syntax'),
        (stub.DeleteHost, pb.DeleteHostRequest(id=entry.id, expected_version=""),
         'invalid expected_version "": strconv.ParseInt: parsing "": invalid syntax'),
    ]:
        assert await _refusal(rpc(request)) == ("INVALID_ARGUMENT", message)


async def test_versions_count_one_event_per_change_and_per_present_field(stub: Any) -> None:
    entry = await _add(stub, comment="c", tags=["t"])
    same = pb.UpdateHostRequest(id=entry.id, ip_address=entry.ip_address, hostname=entry.hostname)
    assert (await stub.UpdateHost(same)).entry.version == "1"  # nothing changes: no event
    stale_noop = pb.UpdateHostRequest(id=entry.id, ip_address=entry.ip_address, expected_version="42")
    assert (await stub.UpdateHost(stale_noop)).entry.version == "1"  # no event: no version check

    unchanged_comment = pb.UpdateHostRequest(id=entry.id, comment="c")  # present: one event, so a version is needed
    assert await _refusal(stub.UpdateHost(unchanged_comment)) == (
        "ABORTED", f"version conflict on {entry.id}: expected 0, got 1"  # absent counts as 0
    )
    unchanged_comment.expected_version = "1"
    assert (await stub.UpdateHost(unchanged_comment)).entry.version == "2"

    everything = pb.UpdateHostRequest(
        id=entry.id, ip_address="192.0.2.2", hostname="files.lan", comment="c", expected_version="2",
        aliases=pb.AliasesUpdate(values=["nas"]), tags=pb.TagsUpdate(values=["t"]),
    )
    assert (await stub.UpdateHost(everything)).entry.version == "7"  # ip, hostname, comment, tags, aliases
    assert await _refusal(stub.UpdateHost(everything)) == (
        "ABORTED", f"version conflict on {entry.id}: expected 2, got 7"  # its ip and hostname no longer change
    )


async def test_absent_wrappers_keep_and_empty_ones_clear(stub: Any) -> None:
    entry = await _add(stub, aliases=["files"], tags=["home"])
    kept = (await stub.UpdateHost(pb.UpdateHostRequest(id=entry.id, comment="x", expected_version="1"))).entry
    assert (list(kept.aliases), list(kept.tags)) == (["files"], ["home"])
    clear = pb.UpdateHostRequest(id=entry.id, expected_version="2")
    clear.aliases.SetInParent()
    clear.tags.SetInParent()
    cleared = (await stub.UpdateHost(clear)).entry
    assert (list(cleared.aliases), list(cleared.tags), cleared.version) == ([], [], "4")


async def test_aliases_are_checked_against_the_new_hostname_and_updates_skip_the_duplicate_check(stub: Any) -> None:
    entry = await _add(stub, aliases=["files"])
    rename = pb.UpdateHostRequest(id=entry.id, hostname="files", aliases=pb.AliasesUpdate(values=["files"]),
                                  expected_version="1")
    assert await _refusal(stub.UpdateHost(rename)) == (
        "INVALID_ARGUMENT", "validation failed: alias validation: alias 'files' matches canonical hostname"
    )
    other = await _add(stub, "192.0.2.9", "other.lan")
    twin = pb.UpdateHostRequest(id=other.id, ip_address="192.0.2.1", hostname="nas.lan", expected_version="1")
    assert (await stub.UpdateHost(twin)).entry.version == "3"  # a second nas.lan at 192.0.2.1: allowed
    assert await _refusal(stub.AddHost(pb.AddHostRequest(ip_address="192.0.2.1", hostname="nas.lan"))) == (
        "ALREADY_EXISTS", "duplicate entry: 192.0.2.1 -> nas.lan"
    )


async def test_delete_with_and_without_a_version(stub: Any, routerhosts: Any) -> None:
    entry = await _add(stub)
    assert await _refusal(stub.DeleteHost(pb.DeleteHostRequest(id=entry.id, expected_version="0"))) == (
        "ABORTED", f"version conflict on {entry.id}: expected 0, got 1"
    )
    await stub.UpdateHost(pb.UpdateHostRequest(id=entry.id, comment="moved", expected_version="1"))
    assert await _refusal(stub.DeleteHost(pb.DeleteHostRequest(id=entry.id, expected_version="1"))) == (
        "ABORTED", f"version conflict on {entry.id}: expected 1, got 2"  # a concurrent change
    )
    assert (await stub.DeleteHost(pb.DeleteHostRequest(id=entry.id, expected_version="2"))).success
    assert await _refusal(stub.DeleteHost(pb.DeleteHostRequest(id=entry.id))) == (
        "NOT_FOUND", f'host "{entry.id}" not found'
    )
    unconditional = await _add(stub)
    assert (await stub.DeleteHost(pb.DeleteHostRequest(id=unconditional.id))).success
    assert routerhosts.snapshot() == []


async def test_list_streams_every_entry_in_no_fixed_order(stub: Any) -> None:
    assert [m async for m in stub.ListHosts(pb.ListHostsRequest())] == []  # an empty store sends nothing
    ids = [(await _add(stub, f"192.0.2.{n}", f"h{n}.lan")).id for n in range(1, 21)]
    orders = []
    for _ in range(3):
        orders.append([m.entry.id async for m in stub.ListHosts(pb.ListHostsRequest(limit=1, filter="h1"))])
    assert all(sorted(order) == ids for order in orders)  # filter and limit ignored, as upstream
    assert any(order != ids for order in orders)  # shuffled: nobody may depend on an order


async def test_internal_errors_are_sanitised(stub: Any, routerhosts: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(raw_id: str) -> Any:
        raise RuntimeError("disk /var/lib/router-hosts/hosts.db is corrupt")

    monkeypatch.setattr(routerhosts.store, "get", broken)
    assert await _refusal(stub.GetHost(pb.GetHostRequest(id="01J00000000000000000000000"))) == (
        "INTERNAL", "internal server error"
    )
    routerhosts.faults.fail(1, code=grpc.StatusCode.INTERNAL)
    assert await _refusal(stub.ListHosts(pb.ListHostsRequest()).read()) == ("INTERNAL", "internal server error")


async def test_faults_target_one_rpc_and_run_out(stub: Any, routerhosts: Any) -> None:
    routerhosts.faults.fail(2, rpc="SearchHosts", code=grpc.StatusCode.RESOURCE_EXHAUSTED)
    await _add(stub)
    for _ in range(2):
        code, _message = await _refusal(stub.SearchHosts(pb.SearchHostsRequest(query="nas")).read())
        assert code == "RESOURCE_EXHAUSTED"
    assert [m.entry.hostname async for m in stub.SearchHosts(pb.SearchHostsRequest(query="nas"))] == ["nas.lan"]
    assert [r.code for r in routerhosts.requests] == ["OK", "RESOURCE_EXHAUSTED", "RESOURCE_EXHAUSTED", "OK"]


async def test_random_faults_are_reproducible_and_mark_what_they_injected(stub: Any, routerhosts: Any) -> None:
    async def run(seed: int) -> list[tuple[str, str, str]]:
        routerhosts.faults.clear()
        routerhosts.reset_log()
        for entry in routerhosts.entries():
            routerhosts.remove_entry(entry.id)
        routerhosts.faults.fail_randomly(0.5, rpcs={"AddHost"}, after=True, seed=seed)
        routerhosts.faults.fail_randomly(0.3, code=grpc.StatusCode.INTERNAL, seed=seed + 1)
        for n in range(20):
            with contextlib.suppress(grpc.aio.AioRpcError):
                await _add(stub, hostname=f"h{n}.lan")
            with contextlib.suppress(grpc.aio.AioRpcError):
                await stub.GetHost(pb.GetHostRequest(id="01J00000000000000000000000"))
        return [(r.rpc, r.code, r.injected) for r in routerhosts.requests]

    first = await run(7)
    assert first == await run(7), "the same seed injects the same faults"
    lost = [n for n, (rpc, _code, injected) in enumerate(first) if injected == "answer lost"]
    assert lost and all(first[n][:2] == ("AddHost", "UNAVAILABLE") for n in lost)  # writes only
    assert {rpc for rpc, code, injected in first if injected == "failed"} == {"AddHost", "GetHost"}
    assert all(code == "INTERNAL" for _rpc, code, injected in first if injected == "failed")
    stored = {e.hostname for e in routerhosts.entries()}
    added = {f"h{n // 2}.lan" for n, (rpc, _code, injected) in enumerate(first) if rpc == "AddHost"
             and injected != "failed"}
    assert stored == added  # an answer lost: the entry is there all the same; a call failed before: nothing done
    assert all(injected == "" for _rpc, code, injected in first if code in {"OK", "NOT_FOUND"})
    routerhosts.faults.clear()
    await _add(stub, hostname="after.lan")
    assert routerhosts.requests[-1].code == "OK"


async def test_the_response_hook_sees_each_call_after_its_write_is_stored_and_before_its_answer(
        stub: Any, routerhosts: Any) -> None:
    seen: list[tuple[str, str, list[str]]] = []  # (rpc, code, hostnames stored when the hook ran)
    routerhosts.on_response = lambda record: seen.append(
        (record.rpc, record.code, sorted(e.hostname for e in routerhosts.entries())))
    try:
        entry = await _add(stub)
        await _refusal(stub.AddHost(pb.AddHostRequest(ip_address="192.0.2.01", hostname="bad.lan")))
        await stub.DeleteHost(pb.DeleteHostRequest(id=entry.id))
    finally:
        routerhosts.on_response = None
    assert seen == [("AddHost", "OK", ["nas.lan"]), ("AddHost", "INVALID_ARGUMENT", ["nas.lan"]),
                    ("DeleteHost", "OK", [])]


async def test_rpcs_the_operator_does_not_use_are_unimplemented(stub: Any) -> None:
    code, _message = await _refusal(stub.Health(pb.HealthRequest()))
    assert code == "UNIMPLEMENTED"


# --- mutual TLS -----------------------------------------------------------------------------------------------


async def test_a_client_without_a_certificate_is_refused(routerhosts: Any) -> None:
    credentials = _credentials(routerhosts.ca)
    async with grpc.aio.secure_channel(routerhosts.address, credentials) as channel:
        code, _message = await _refusal(hosts_pb2_grpc.HostsServiceStub(channel).ListHosts(pb.ListHostsRequest())
                                        .read())
    assert code == "UNAVAILABLE"
    assert routerhosts.requests == []


def test_the_server_negotiates_tls_1_3_and_requires_a_client_certificate(routerhosts: Any) -> None:
    def handshake(with_certificate: bool) -> tuple[str, bool]:
        """The TLS version agreed, and whether the server then answered (its HTTP/2 SETTINGS)."""
        context = ssl.create_default_context(cafile=routerhosts.ca)
        context.set_alpn_protocols(["h2"])
        if with_certificate:
            context.load_cert_chain(routerhosts.cert, routerhosts.key)
        with socket.create_connection((routerhosts.host, routerhosts.port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname="localhost") as tls:
            version = tls.version() or ""
            try:  # in TLS 1.3 the server judges the client certificate after the client's handshake ends
                tls.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
                return version, tls.recv(1) != b""
            except (ssl.SSLError, ConnectionResetError):
                return version, False

    assert handshake(with_certificate=True) == ("TLSv1.3", True)
    assert handshake(with_certificate=False) == ("TLSv1.3", False)


def test_a_certs_folder_is_reused(tmp_path: Path) -> None:
    first = ensure_certs(tmp_path)
    ca = Path(first.ca).read_bytes()
    assert ensure_certs(tmp_path) == first and Path(first.ca).read_bytes() == ca
    assert oct(Path(first.client_key).stat().st_mode & 0o777) == "0o600"


async def test_snapshot_restore_and_out_of_band_changes(stub: Any, routerhosts: Any) -> None:
    entry = await _add(stub, comment="k8s:ns/nas", aliases=["files"])
    foreign = routerhosts.put_entry("192.0.2.50", "tv.lan", "added by hand", tags=("media",), version=4)
    saved = routerhosts.snapshot()
    assert {item["hostname"]: item["version"] for item in saved} == {"nas.lan": "1", "tv.lan": "4"}
    assert routerhosts.remove_entry(entry.id) and not routerhosts.remove_entry(entry.id)
    assert await _refusal(stub.GetHost(pb.GetHostRequest(id=entry.id))) == (
        "NOT_FOUND", f'host "{entry.id}" not found'
    )
    routerhosts.restore(saved)
    assert routerhosts.snapshot() == saved
    assert (await stub.GetHost(pb.GetHostRequest(id=foreign))).entry.comment == "added by hand"
    assert [r.rpc for r in routerhosts.requests] == ["AddHost", "GetHost", "GetHost"]  # direct access is not logged
