"""The router-hosts rules a door checks before any call (reference §5.2), with the server's texts, and ``in_sync``."""

from __future__ import annotations

import pytest

from chutes.hosts_core.models import (
    HostEntry,
    HostSpec,
    alias_problems,
    hostname_problem,
    in_sync,
    ip_problem,
    spec_problems,
)

ACCEPTED_IPS = [
    "192.0.2.1", "0.0.0.0", "255.255.255.255", "::", "::1", "2001:db8::1", "2001:DB8::A", "1:2:3:4:5:6:7:8",
    "::ffff:192.0.2.1", "::FFFF:192.0.2.1", "1:2:3:4:5:6:1.2.3.4", "0001::1",
]
REFUSED_IPS = [
    "", "01.2.3.4", "1.2.3.04", "1.2.3", "1.2.3.4.5", "256.0.0.1", "0x1.2.3.4", "+1.2.3.4", "1.2.3.4/32",
    "1.2.3.4%eth0", "fe80::1%eth0", "::ffff:1.2.3.4%x", "::ffff:01.2.3.4", " 1.2.3.4", "1.2.3.4\n", "[::1]",
    "1::2::3", "00001::1", "\u0661.2.3.4", "1:2:3:4:5:6:7:8:9", "nas.lan",
]


@pytest.mark.parametrize("ip", ACCEPTED_IPS)
def test_ips_go_accepts_pass(ip: str) -> None:
    assert ip_problem(ip) is None


@pytest.mark.parametrize("ip", REFUSED_IPS)
def test_ips_go_refuses_are_refused_with_the_servers_text(ip: str) -> None:
    assert ip_problem(ip) == f"invalid IP address: {ip}"


HOSTNAMES = [
    ("nas", None),
    ("NAS.Example.lan", None),
    ("a-b.c9.example", None),
    ("x" * 63 + ".lan", None),
    (".".join(["a" * 63] * 3) + "." + "b" * 61, None),  # 253 characters
    ("", "hostname cannot be empty"),
    (".".join(["a" * 63] * 3) + "." + "b" * 62, "hostname exceeds maximum length of 253 characters"),
    ("\u00e9" * 127, "hostname exceeds maximum length of 253 characters"),  # 254 bytes: Go counts bytes
    (".nas", "hostname cannot start or end with dot"),
    ("nas.", "hostname cannot start or end with dot"),
    ("-nas", "hostname cannot start or end with hyphen"),
    ("nas-", "hostname cannot start or end with hyphen"),
    ("a..b", "hostname cannot contain consecutive dots"),
    ("my_host.lan", "invalid label 'my_host' in hostname"),
    ("a.-b.lan", "invalid label '-b' in hostname"),
    ("x" * 64 + ".lan", f"invalid label '{'x' * 64}' in hostname"),
    ("nas\n", "invalid label 'nas\n' in hostname"),
    ("caf\u00e9.lan", "invalid label 'caf\u00e9' in hostname"),
    ("*.lan", "invalid label '*' in hostname"),
]


@pytest.mark.parametrize(("name", "problem"), HOSTNAMES, ids=[repr(n)[:30] for n, _ in HOSTNAMES])
def test_hostname_rule(name: str, problem: str | None) -> None:
    assert hostname_problem(name) == problem


def test_aliases_report_every_problem_in_the_servers_order_and_words() -> None:
    assert alias_problems("nas.lan", ["files.lan", "NAS", "backup"]) == []
    assert alias_problems("nas.lan", ["192.0.2.1", "::1", "bad_alias", "NAS.LAN", "f.lan", "F.lan"]) == [
        "alias '192.0.2.1' cannot be an IP address",
        "alias '::1' cannot be an IP address",
        "invalid alias 'bad_alias': invalid label 'bad_alias' in hostname",
        "alias 'NAS.LAN' matches canonical hostname",
        "duplicate alias 'F.lan' in entry",
    ]
    assert alias_problems("nas", [f"a{i}" for i in range(50)]) == []
    assert alias_problems("nas", [f"a{i}" for i in range(51)]) == ["too many aliases: 51 exceeds maximum of 50"]


def test_spec_problems_gathers_ip_hostname_and_alias_problems() -> None:
    assert spec_problems(HostSpec("192.0.2.1", "nas.lan", None, ("files",))) == []
    assert spec_problems(HostSpec("01.2.3.4", "nas_", None, ("nas_",))) == [
        "invalid IP address: 01.2.3.4",
        "invalid label 'nas_' in hostname",
        "invalid alias 'nas_': invalid label 'nas_' in hostname",
    ]


ENTRY = HostEntry(
    id="01J0000000000000000000000A", ip="192.0.2.1", hostname="nas.lan", comment="k8s:ns/nas",
    aliases=("files", "backup"), tags=("a", "b", "a"), version="3",
)


def _spec(**changes: object) -> HostSpec:
    values: dict[str, object] = {
        "ip": "192.0.2.1", "hostname": "nas.lan", "comment": "k8s:ns/nas", "aliases": ("backup", "files"),
        "tags": ("a", "a", "b"),
    }
    values.update(changes)
    return HostSpec(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "synced"),
    [
        ({}, True),  # aliases and tags in another order: multisets
        ({"tags": ("a", "b")}, False),  # a multiset: one "a" less is a difference
        ({"aliases": ()}, False),
        ({"ip": "192.0.2.01"}, False),
        ({"hostname": "NAS.lan"}, False),  # the server keeps case: so do we
        ({"comment": "k8s:ns/other"}, False),  # the comment is our ownership marker
        ({"comment": None}, False),
    ],
)
def test_in_sync_compares_ip_and_hostname_exactly_lists_as_multisets_and_the_comment(
    changes: dict[str, object], synced: bool
) -> None:
    assert in_sync(ENTRY, _spec(**changes)) is synced


def test_in_sync_holds_an_absent_comment_and_an_empty_one_equal() -> None:
    bare = HostEntry("01J0000000000000000000000A", "192.0.2.1", "nas", None, (), (), "1")
    assert in_sync(bare, HostSpec("192.0.2.1", "nas", "", (), ()))
    assert in_sync(HostEntry("01J0000000000000000000000A", "192.0.2.1", "nas", "", (), (), "4"),
                   HostSpec("192.0.2.1", "nas", None, (), ()))
    assert in_sync(bare, HostSpec("192.0.2.1", "nas", None))  # aliases and tags default to none
