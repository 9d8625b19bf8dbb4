"""The HostMapping CRD refuses at admission what the router-hosts server would refuse (reference §5.2), and
keeps the upstream operator's names (group, kind, short name, printer columns, status fields)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from harness.manifests import REPO, validate_custom

CRD = REPO / "crds" / "hostmappings.yaml"


def mapping(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"hostname": "nas.lan", "ip": "192.168.1.10"}
    base.update(spec)
    return {"apiVersion": "router-hosts.fzymgc.house/v1alpha1", "kind": "HostMapping",
            "metadata": {"name": "nas", "namespace": "home"}, "spec": base}


def test_the_upstream_names_are_kept() -> None:
    crd = yaml.safe_load(CRD.read_text())
    assert crd["metadata"]["name"] == "hostmappings.router-hosts.fzymgc.house"
    assert crd["spec"]["scope"] == "Namespaced" and crd["spec"]["names"]["shortNames"] == ["hm"]
    version = crd["spec"]["versions"][0]
    assert version["name"] == "v1alpha1"
    assert [c["name"] for c in version["additionalPrinterColumns"]] == ["IP", "Hostname", "Phase", "Age"]
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert status["phase"]["enum"] == ["Pending", "Synced", "Error"]
    assert {"message", "hostId", "hostVersion", "lastSyncTime", "conditions"} <= set(status)


@pytest.mark.parametrize("spec", [
    {},
    {"ip": "10.0.0.1", "hostname": "nas"},
    {"ip": "::1"},
    {"ip": "fe80::1"},
    {"ip": "::ffff:192.168.1.1"},
    {"ip": "2001:db8:0:0:0:0:2:1"},
    {"ip": "1:2:3:4:5:6:1.2.3.4"},
    {"hostname": "NAS.Home.Lan"},
    {"hostname": "a" * 63 + ".lan"},
    {"aliases": ["files.lan", "01.2.3.4"], "tags": ["", "dup", "dup", "any thing"]},
    {"aliases": [f"a{i}.lan" for i in range(50)]},
])
def test_what_the_server_accepts_is_admitted(spec: dict[str, Any]) -> None:
    assert validate_custom(mapping(**spec)) == []


@pytest.mark.parametrize(("spec", "complaint"), [
    ({"ip": ""}, "ip"),
    ({"ip": "192.168.01.1"}, "ip"),
    ({"ip": "256.1.1.1"}, "ip"),
    ({"ip": "1.2.3"}, "ip"),
    ({"ip": "fe80::1%eth0"}, "ip"),
    ({"ip": "1:2:3:4:5:6:7:8:9"}, "ip"),
    ({"ip": "1::2::3"}, "ip"),
    ({"ip": "nas.lan"}, "ip"),
    ({"hostname": ""}, "hostname"),
    ({"hostname": "nas_1.lan"}, "hostname"),
    ({"hostname": "-nas.lan"}, "hostname"),
    ({"hostname": "nas.lan."}, "hostname"),
    ({"hostname": "nas..lan"}, "hostname"),
    ({"hostname": "a" * 64 + ".lan"}, "hostname"),
    ({"hostname": ("a" * 63 + ".") * 4 + "lan"}, "hostname"),
    ({"aliases": ["nas.lan"]}, "alias cannot be the hostname"),
    ({"aliases": ["files.lan", "files.lan"]}, "non-unique"),
    ({"aliases": [f"a{i}.lan" for i in range(51)]}, "aliases"),
    ({"aliases": ["192.168.1.1"]}, "alias cannot be an IP"),
    ({"aliases": ["bad_name"]}, "aliases"),
    ({"colour": "red"}, "Additional properties"),
])
def test_what_the_server_refuses_is_refused_at_admission(spec: dict[str, Any], complaint: str) -> None:
    errors = validate_custom(mapping(**spec))
    assert any(complaint in error for error in errors), errors


def test_hostname_and_ip_are_required() -> None:
    body = mapping()
    del body["spec"]["ip"]
    assert any("'ip' is a required property" in error for error in validate_custom(body))
