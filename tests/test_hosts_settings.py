"""Switching the router-hosts door on, and what stops the process at start: TLS settings incomplete, files
missing or wrong (named, never quoted), an ingress IP that is not one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chutes.cli import main
from chutes.settings import SettingsError, load_settings

ADDRESS = {"CHUTES_ROUTER_HOSTS_ADDRESS": "router.lan:50051"}


def test_the_door_is_on_when_an_address_is_set() -> None:
    assert "hosts" not in load_settings({}).front_doors({})
    tls = {"CHUTES_ROUTER_HOSTS_TLS_CA": "ca", "CHUTES_ROUTER_HOSTS_TLS_CERT": "c", "CHUTES_ROUTER_HOSTS_TLS_KEY": "k"}
    assert "hosts" in load_settings({**ADDRESS, **tls}).front_doors({})
    assert "hosts" not in load_settings({"CHUTES_ROUTER_HOSTS_ADDRESS": " ", **tls}).front_doors({})


def test_all_three_tls_files_are_required_no_plaintext() -> None:
    with pytest.raises(SettingsError, match="CHUTES_ROUTER_HOSTS_TLS_CERT, CHUTES_ROUTER_HOSTS_TLS_KEY must be set"):
        load_settings({**ADDRESS, "CHUTES_ROUTER_HOSTS_TLS_CA": "ca.crt"})


@pytest.mark.parametrize("value", ["192.168.01.1", "router.lan", "fe80::1%eth0"])
def test_the_ingress_ip_must_be_one(value: str) -> None:
    with pytest.raises(SettingsError, match="CHUTES_DEFAULT_INGRESS_IP"):
        load_settings({"CHUTES_DEFAULT_INGRESS_IP": value})


def run(capsys: pytest.CaptureFixture[str], *flags: str) -> tuple[int, str]:
    code = main(["run", "--standalone", "--no-chutes", "--no-httproutes", "--router-hosts-address",
                 "127.0.0.1:1", *flags])
    return code, capsys.readouterr().err


def test_a_missing_tls_file_stops_the_process_naming_it(capsys: pytest.CaptureFixture[str], routerhosts: Any) -> None:
    code, err = run(capsys, "--router-hosts-tls-ca", "/nowhere/ca.crt", "--router-hosts-tls-cert", routerhosts.cert,
                    "--router-hosts-tls-key", routerhosts.key)
    assert code == 2 and "CHUTES_ROUTER_HOSTS_TLS_CA" in err and "/nowhere/ca.crt does not exist" in err


def test_a_key_that_is_not_the_certificates_stops_the_process_without_quoting_it(
        capsys: pytest.CaptureFixture[str], routerhosts: Any, tmp_path: Path) -> None:
    from chutes.sandbox.routerhosts import make_certs

    other = make_certs(tmp_path)
    code, err = run(capsys, "--router-hosts-tls-ca", routerhosts.ca, "--router-hosts-tls-cert", routerhosts.cert,
                    "--router-hosts-tls-key", str(other.client_key))
    assert code == 2 and "CHUTES_ROUTER_HOSTS_TLS_KEY" in err
    assert "PRIVATE KEY" not in err and Path(other.client_key).read_text().splitlines()[1] not in err
