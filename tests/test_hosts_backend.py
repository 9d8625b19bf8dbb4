"""GrpcHostsBackend, the real client, over mutual TLS against the router-hosts emulator (reference §9, "gRPC
client" rows, plus what our client does differently: every update field always sent, deadlines, retries, TLS
files checked at start)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from chutes.hosts_core import (
    GrpcHostsBackend,
    HostAlreadyExists,
    HostNotFound,
    HostSpec,
    HostsUnavailable,
    InvalidHost,
    TlsFilesInvalid,
    VersionConflict,
)
from chutes.sandbox.routerhosts import issue_certificate, make_certs
from harness.waiting import wait_for

NAS = HostSpec("192.0.2.10", "nas.lan", "k8s:media/nas", ("files", "backup"), ("home", "storage"))


def _client(server: Any, **options: Any) -> GrpcHostsBackend:
    settings: dict[str, Any] = {"timeout": 5.0, "backoff": 0.01, "unavailable_delay": 0.1, **options}
    return GrpcHostsBackend(server.address, server.ca, server.cert, server.key, **settings)


def _calls(rpc: str, code: str) -> float:
    return REGISTRY.get_sample_value("chutes_router_hosts_calls_total", {"rpc": rpc, "code": code}) or 0.0


async def test_add_returns_the_new_entry_and_sends_the_comment_even_when_empty(
    hosts_client: GrpcHostsBackend, routerhosts: Any
) -> None:
    entry = await hosts_client.add(NAS)
    assert (entry.ip, entry.hostname, entry.comment, entry.aliases, entry.tags, entry.version) == (
        "192.0.2.10", "nas.lan", "k8s:media/nas", ("files", "backup"), ("home", "storage"), "1"
    )
    assert len(entry.id) == 26 and await hosts_client.get(entry.id) == entry

    empty = await hosts_client.add(HostSpec("192.0.2.11", "empty.lan", ""))
    none = await hosts_client.add(HostSpec("192.0.2.12", "none.lan", None))
    assert (empty.comment, none.comment) == ("", None)  # upstream omits "", we send it as given
    sent = {r.request["hostname"]: r.request for r in routerhosts.calls("AddHost")}
    assert sent["empty.lan"]["comment"] == "" and "comment" not in sent["none.lan"]
    assert {r.client for r in routerhosts.requests} == {"chutes-operator"}  # our certificate was presented


async def test_a_duplicate_ip_and_hostname_is_host_already_exists_and_nothing_else_is(
    hosts_client: GrpcHostsBackend,
) -> None:
    first = await hosts_client.add(NAS)
    with pytest.raises(HostAlreadyExists, match=re.escape("duplicate entry: 192.0.2.10 -> nas.lan")):
        await hosts_client.add(HostSpec(NAS.ip, NAS.hostname, "k8s:other/nas"))
    other_ip = await hosts_client.add(HostSpec("192.0.2.99", NAS.hostname, None))
    other_case = await hosts_client.add(HostSpec(NAS.ip, "NAS.lan", None))  # strings, not names, are compared
    assert len({first.id, other_ip.id, other_case.id}) == 3


async def test_get_update_and_delete_of_an_unknown_or_malformed_id(hosts_client: GrpcHostsBackend) -> None:
    gone = (await hosts_client.add(NAS)).id
    await hosts_client.delete(gone)
    with pytest.raises(HostNotFound, match=f'host "{gone}" not found'):
        await hosts_client.get(gone)
    with pytest.raises(HostNotFound):
        await hosts_client.update(gone, NAS, "1")
    with pytest.raises(HostNotFound):
        await hosts_client.delete(gone)
    with pytest.raises(InvalidHost) as refused:
        await hosts_client.get("not-an-id")
    assert refused.value.message == 'invalid ID "not-an-id": ulid: bad data size when unmarshaling'


async def test_update_sends_every_field_so_removed_aliases_and_tags_are_cleared(
    hosts_client: GrpcHostsBackend, routerhosts: Any
) -> None:
    entry = await hosts_client.add(NAS)
    bare = HostSpec("192.0.2.20", "nas.lan", None)
    updated = await hosts_client.update(entry.id, bare, entry.version)
    assert (updated.ip, updated.aliases, updated.tags, updated.comment) == ("192.0.2.20", (), (), "")
    assert updated.version == "5"  # one event each: ip, comment, tags, aliases (the hostname did not change)
    assert await hosts_client.get(entry.id) == updated
    [sent] = routerhosts.calls("UpdateHost")
    assert sent.request == {
        "id": entry.id, "ip_address": "192.0.2.20", "hostname": "nas.lan", "comment": "",
        "expected_version": "1", "aliases": {}, "tags": {},
    }


async def test_a_stale_version_is_a_version_conflict_and_changes_nothing(hosts_client: GrpcHostsBackend) -> None:
    entry = await hosts_client.add(NAS)
    moved = await hosts_client.update(entry.id, HostSpec("192.0.2.30", "nas.lan", NAS.comment), entry.version)
    before = _calls("UpdateHost", "ABORTED")
    with pytest.raises(VersionConflict, match=f"expected 1, got {moved.version}"):
        await hosts_client.update(entry.id, NAS, entry.version)
    assert _calls("UpdateHost", "ABORTED") == before + 1  # not retried: the caller re-reads
    assert await hosts_client.get(entry.id) == moved
    with pytest.raises(VersionConflict):
        await hosts_client.delete(entry.id, expected_version=entry.version)
    await hosts_client.delete(entry.id, expected_version=moved.version)
    assert await hosts_client.list_all() == []


async def test_an_alias_equal_to_the_hostname_is_invalid_host_with_the_servers_message(
    hosts_client: GrpcHostsBackend,
) -> None:
    with pytest.raises(InvalidHost) as refused:
        await hosts_client.add(HostSpec("192.0.2.40", "nas.lan", None, ("NAS.lan",)))
    assert refused.value.message == "validation failed: alias validation: alias 'NAS.lan' matches canonical hostname"
    entry = await hosts_client.add(HostSpec("192.0.2.40", "nas.lan", None))
    with pytest.raises(InvalidHost, match=re.escape("invalid IP address: 192.0.2.040")):
        await hosts_client.update(entry.id, HostSpec("192.0.2.040", "nas.lan", None), entry.version)


async def test_search_is_a_case_insensitive_substring_that_skips_aliases(hosts_client: GrpcHostsBackend) -> None:
    await hosts_client.add(HostSpec("192.0.2.1", "nas.lan", "k8s:media/nas", ("fileserver",), ("Storage",)))
    await hosts_client.add(HostSpec("192.0.2.2", "nas.lan.example", None))
    await hosts_client.add(HostSpec("192.0.2.3", "printer.lan", None, (), ("office",)))

    async def hostnames(query: str) -> set[str]:
        return {entry.hostname for entry in await hosts_client.search(query)}

    assert await hostnames("NAS.LAN") == {"nas.lan", "nas.lan.example"}  # a substring: callers filter exactly
    assert await hostnames("storage") == {"nas.lan"}  # tags
    assert await hostnames("MEDIA/") == {"nas.lan"}  # the comment
    assert await hostnames("192.0.2.3") == {"printer.lan"}  # the ip
    assert await hostnames("fileserver") == set()  # never aliases
    assert len(await hosts_client.search("")) == len(await hosts_client.list_all()) == 3


async def test_unavailable_is_retried_then_raised_as_hosts_unavailable(
    hosts_client: GrpcHostsBackend, routerhosts: Any
) -> None:
    entry = await hosts_client.add(NAS)
    routerhosts.faults.fail(2, rpc="GetHost")
    assert await hosts_client.get(entry.id) == entry
    assert [r.code for r in routerhosts.calls("GetHost")] == ["UNAVAILABLE", "UNAVAILABLE", "OK"]

    before = _calls("ListHosts", "UNAVAILABLE")
    routerhosts.faults.fail(3, rpc="ListHosts")
    with pytest.raises(HostsUnavailable) as down:
        await hosts_client.list_all()
    assert down.value.code == "UNAVAILABLE" and down.value.delay == 0.1
    assert _calls("ListHosts", "UNAVAILABLE") == before + 3
    assert await hosts_client.list_all() == [entry]  # the fault is used up


async def test_a_lost_answer_to_add_is_retried_and_then_found_taken(
    hosts_client: GrpcHostsBackend, routerhosts: Any
) -> None:
    """The write happened but its answer was lost: the retry meets the entry it made, ALREADY_EXISTS (a door
    then finds it by search and proves it its own by the comment)."""
    routerhosts.faults.fail(1, rpc="AddHost", after=True)
    with pytest.raises(HostAlreadyExists):
        await hosts_client.add(NAS)
    [stored] = routerhosts.entries()
    assert stored.comment == NAS.comment


async def test_deadlines_hold_against_a_slow_server(routerhosts: Any, hosts_client: GrpcHostsBackend) -> None:
    routerhosts.faults.delay(5.0, rpc="SearchHosts")
    async with _client(routerhosts, timeout=0.2, attempts=2) as client:
        with pytest.raises(HostsUnavailable) as late:
            await client.search("nas")
    assert late.value.code == "DEADLINE_EXCEEDED"
    given_up = [("SearchHosts", "CANCELLED")] * 2  # retried once, then raised; the server saw both abandoned
    wait_for("both attempts given up", lambda: [(r.rpc, r.code) for r in routerhosts.requests] == given_up)
    assert await hosts_client.list_all() == []  # other RPCs are not slowed


async def test_the_server_name_checked_is_the_addresss_host(routerhosts: Any) -> None:
    async with GrpcHostsBackend(f"localhost:{routerhosts.port}", routerhosts.ca, routerhosts.cert,
                                routerhosts.key, timeout=1.0) as by_name:
        assert await by_name.list_all() == []
    async with _client(routerhosts, server_name="router.lan", attempts=1) as wrong_name:
        with pytest.raises(HostsUnavailable):
            await wrong_name.list_all()


async def test_an_unreachable_server_is_hosts_unavailable_and_an_empty_address_an_error(routerhosts: Any) -> None:
    async with GrpcHostsBackend("127.0.0.1:1", routerhosts.ca, routerhosts.cert, routerhosts.key,
                                timeout=1.0, backoff=0.01, attempts=2) as nobody:
        with pytest.raises(HostsUnavailable) as down:
            await nobody.get("01J00000000000000000000000")
    assert down.value.code in {"UNAVAILABLE", "DEADLINE_EXCEEDED"}
    with pytest.raises(ValueError, match="address is empty"):
        GrpcHostsBackend("", routerhosts.ca, routerhosts.cert, routerhosts.key)


async def test_a_client_certificate_from_another_ca_is_refused(routerhosts: Any, tmp_path: Path) -> None:
    other = make_certs(tmp_path / "other")
    async with GrpcHostsBackend(routerhosts.address, routerhosts.ca, other.client_cert, other.client_key,
                                timeout=1.0, backoff=0.01, attempts=2) as stranger:
        with pytest.raises(HostsUnavailable):
            await stranger.list_all()
    assert routerhosts.requests == []  # refused in the handshake: no call reached the service


def _pem_markers(text: str) -> bool:
    return "-----BEGIN" in text or "PRIVATE KEY" in text


def test_missing_or_wrong_tls_files_are_named_at_construction(routerhosts: Any, tmp_path: Path) -> None:
    other = make_certs(tmp_path / "other")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    encrypted = tmp_path / "encrypted-key.pem"
    encrypted.write_bytes(_encrypted_copy(routerhosts.key))
    cases = [
        ((str(tmp_path / "missing-ca.pem"), routerhosts.cert, routerhosts.key), "CA", "does not exist"),
        ((routerhosts.ca, str(tmp_path / "nope.pem"), routerhosts.key), "certificate", "does not exist"),
        ((routerhosts.ca, routerhosts.cert, ""), "key", "no path given"),
        ((str(garbage), routerhosts.cert, routerhosts.key), "CA", "holds no PEM certificate"),
        ((routerhosts.ca, routerhosts.key, routerhosts.key), "certificate", "holds no PEM certificate"),
        ((routerhosts.ca, routerhosts.cert, routerhosts.cert), "key", "holds no PEM private key"),
        ((routerhosts.ca, routerhosts.cert, other.client_key), "key", "does not belong to the certificate"),
        ((routerhosts.ca, routerhosts.cert, str(encrypted)), "key", "is encrypted"),
    ]
    for (ca, cert, key), role, reason in cases:
        with pytest.raises(TlsFilesInvalid) as bad:
            GrpcHostsBackend(routerhosts.address, ca, cert, key)
        named = {"CA": ca, "certificate": cert, "key": key}[role]
        assert (bad.value.role, bad.value.path) == (role, named)
        assert reason in str(bad.value) and (named in str(bad.value) or not named)
        assert not _pem_markers(str(bad.value)) and not _pem_markers(repr(bad.value))


def test_the_loaded_files_never_show_their_content(routerhosts: Any) -> None:
    client = GrpcHostsBackend(routerhosts.address, routerhosts.ca, routerhosts.cert, routerhosts.key)
    assert not _pem_markers(repr(client.tls)) and routerhosts.key in repr(client.tls)


def test_an_expired_certificate_is_refused_at_construction(tmp_path: Path) -> None:
    files = make_certs(tmp_path)
    cert, key = tmp_path / "old.pem", tmp_path / "old-key.pem"
    issue_certificate(files.ca, files.ca_key, str(cert), str(key), "old", server=False, days=-1)
    with pytest.raises(TlsFilesInvalid, match="expired on"):
        GrpcHostsBackend("127.0.0.1:1", files.ca, str(cert), str(key))


def _encrypted_copy(key_path: str) -> bytes:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    )
