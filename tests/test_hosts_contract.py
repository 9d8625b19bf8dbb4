"""Our router-hosts .proto is the wire contract of the reference (§3-§4), and the committed generated modules are
what it generates and what the pinned protobuf runtime loads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf.descriptor import FieldDescriptor

from chutes.hosts_core.generated import hosts_pb2
from proto_gen import GENERATED, generate

REPO = Path(__file__).resolve().parents[1]
STRING, BOOL, BYTES, INT32, INT64, UINT32, MESSAGE = (
    FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BOOL, FieldDescriptor.TYPE_BYTES, FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_MESSAGE,
)
# Reference §4, host messages: (number, name, type, "opt" | "rep" | "").
HOST_MESSAGES: dict[str, list[tuple[int, str, int, str]]] = {
    "HostEntry": [(1, "id", STRING, ""), (2, "ip_address", STRING, ""), (3, "hostname", STRING, ""),
                  (4, "comment", STRING, "opt"), (5, "tags", STRING, "rep"), (6, "created_at", MESSAGE, ""),
                  (7, "updated_at", MESSAGE, ""), (8, "version", STRING, ""), (9, "aliases", STRING, "rep")],
    "AliasesUpdate": [(1, "values", STRING, "rep")],
    "TagsUpdate": [(1, "values", STRING, "rep")],
    "AddHostRequest": [(1, "ip_address", STRING, ""), (2, "hostname", STRING, ""), (3, "comment", STRING, "opt"),
                       (4, "tags", STRING, "rep"), (5, "aliases", STRING, "rep")],
    "AddHostResponse": [(1, "id", STRING, ""), (2, "entry", MESSAGE, "")],
    "GetHostRequest": [(1, "id", STRING, "")],
    "GetHostResponse": [(1, "entry", MESSAGE, "")],
    "UpdateHostRequest": [(1, "id", STRING, ""), (2, "ip_address", STRING, "opt"), (3, "hostname", STRING, "opt"),
                          (4, "comment", STRING, "opt"), (6, "expected_version", STRING, "opt"),
                          (7, "aliases", MESSAGE, ""), (8, "tags", MESSAGE, "")],
    "UpdateHostResponse": [(1, "entry", MESSAGE, "")],
    "DeleteHostRequest": [(1, "id", STRING, ""), (2, "expected_version", STRING, "opt")],
    "DeleteHostResponse": [(1, "success", BOOL, "")],
    "ListHostsRequest": [(1, "filter", STRING, "opt"), (2, "limit", INT32, "opt"), (3, "offset", INT32, "opt")],
    "ListHostsResponse": [(1, "entry", MESSAGE, "")],
    "SearchHostsRequest": [(1, "query", STRING, "")],
    "SearchHostsResponse": [(1, "entry", MESSAGE, "")],
    "ImportHostsRequest": [(1, "chunk", BYTES, ""), (2, "last_chunk", BOOL, ""), (3, "format", STRING, "opt"),
                           (4, "conflict_mode", STRING, "opt"), (5, "force", BOOL, "opt")],
    "ListSnapshotsRequest": [(1, "limit", UINT32, ""), (2, "offset", UINT32, "")],
    "CompactedAggregate": [(1, "aggregate_id", STRING, ""), (2, "events_before", INT64, ""),
                           (3, "events_after", INT64, ""), (4, "version", INT64, "")],
}
# Reference §3: RPC -> (client streams, server streams).
RPCS = {
    "AddHost": (False, False), "GetHost": (False, False), "UpdateHost": (False, False),
    "DeleteHost": (False, False), "ListHosts": (False, True), "SearchHosts": (False, True),
    "ImportHosts": (True, True), "ExportHosts": (False, True), "WatchHosts": (True, True),
    "CreateSnapshot": (False, False), "ListSnapshots": (False, True), "RollbackToSnapshot": (False, False),
    "DeleteSnapshot": (False, False), "CompactAggregates": (False, False), "Liveness": (False, False),
    "Readiness": (False, False), "Health": (False, False),
}


def _shape(field: FieldDescriptor) -> str:
    if field.is_repeated:
        return "rep"
    if field.containing_oneof is not None and field.containing_oneof.name == f"_{field.name}":
        return "opt"  # proto3 `optional`: a synthetic oneof
    return ""


@pytest.mark.parametrize("name", sorted(HOST_MESSAGES))
def test_each_message_has_the_reference_fields_numbers_and_presence(name: str) -> None:
    descriptor = hosts_pb2.DESCRIPTOR.message_types_by_name[name]
    found = [(f.number, f.name, f.type, _shape(f)) for f in sorted(descriptor.fields, key=lambda f: f.number)]
    assert found == HOST_MESSAGES[name]


def test_update_keeps_field_5_reserved_and_its_wrappers_have_presence() -> None:
    request = hosts_pb2.UpdateHostRequest(id="x")
    assert not request.HasField("aliases") and not request.HasField("tags")
    request.aliases.SetInParent()
    assert request.HasField("aliases") and request.SerializeToString() == b"\n\x01x:\x00"  # field 7, empty
    proto = (REPO / "operator/chutes/hosts_core/proto/router_hosts/v1/hosts.proto").read_text()
    assert "reserved 5;" in proto
    assert hosts_pb2.UpdateHostRequest.DESCRIPTOR.fields_by_number.get(5) is None


def test_the_service_has_every_rpc_of_upstream_head_with_its_streaming() -> None:
    service = hosts_pb2.DESCRIPTOR.services_by_name["HostsService"]
    assert service.full_name == "router_hosts.v1.HostsService"
    assert {m.name: (m.client_streaming, m.server_streaming) for m in service.methods} == RPCS
    assert service.methods_by_name["UpdateHost"].input_type.name == "UpdateHostRequest"


def test_the_committed_modules_are_what_the_proto_generates() -> None:
    for name, text in generate().items():
        assert (GENERATED / name).read_text(encoding="utf-8") == text, f"{name} is stale: run `make proto`"


def test_the_generated_modules_load_with_the_pinned_runtime_without_warnings() -> None:
    pins = (REPO / "operator" / "requirements-runtime.txt").read_text().splitlines()
    code = (
        "import warnings; warnings.simplefilter('error');"
        "import google.protobuf, grpc;"
        "from chutes.hosts_core.generated import hosts_pb2, hosts_pb2_grpc;"
        "print(google.protobuf.__version__, grpc.__version__)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "operator")}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    protobuf, grpc_version = result.stdout.split()
    assert f"protobuf=={protobuf}" in pins and f"grpcio=={grpc_version}" in pins
