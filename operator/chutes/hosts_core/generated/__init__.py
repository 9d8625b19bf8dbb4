"""Generated code, never edited by hand: ``hosts_pb2`` (messages, with ``hosts_pb2.pyi``) and ``hosts_pb2_grpc``
(the stub and servicer of ``router_hosts.v1.HostsService``), made by grpcio-tools from
``chutes/hosts_core/proto/router_hosts/v1/hosts.proto``. Regenerate with ``make proto`` after editing the .proto
(ruff and mypy leave this package alone: see pyproject.toml). Only ``chutes.hosts_core`` and the emulator import it.
"""
