#!/usr/bin/env python3
"""Drives a running sandboxd in the SDK's sandboxd mode (k8s-agent-sandbox 1.0.8 with its grpc extra): files over
the v1 REST API, commands over gRPC. Used by docker/run-test-docker.sh against the image run with the Go daemon's
arguments.

    python3 Tests/e2e/sdk_sandboxd_check.py HOST REST_PORT GRPC_PORT
"""

import os
import sys

from k8s_agent_sandbox.commands.command_executor import CommandExecutor
from k8s_agent_sandbox.connector import SandboxConnector
from k8s_agent_sandbox.files.filesystem import Filesystem
from k8s_agent_sandbox.models import SandboxdInClusterConnectionConfig


def main() -> int:
    host, rest_port, grpc_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    config = SandboxdInClusterConnectionConfig(mode="in-cluster-pod-ip", rest_port=rest_port, grpc_port=grpc_port)
    connector = SandboxConnector(sandbox_id="container-test", namespace="default", connection_config=config,
                                 k8s_helper=None, get_pod_ip=lambda: host)
    try:
        run = CommandExecutor(connector, tracer=None, trace_service_name="container-test").run
        files = Filesystem(connector, tracer=None, trace_service_name="container-test")
        content = os.urandom(256 * 1024)
        files.write("check/data.bin", content, timeout=30)
        assert files.read("check/data.bin", timeout=30) == content, "read back differs"
        assert [e.name for e in files.list("check", timeout=30)] == ["data.bin"]
        result = run("pwd; id -u; wc -c < check/data.bin", timeout=30)
        lines = result.stdout.split()
        assert result.exit_code == 0 and lines == ["/workspace", "1000", str(len(content))], result
        result = run("echo out; echo err >&2; exit 3", timeout=30)
        assert (result.stdout, result.stderr, result.exit_code) == ("out\n", "err\n", 3), result
        timed = run("sleep 30", timeout=30, command_timeout=1)
        assert timed.timed_out and timed.exit_code == 124, timed
        files.delete("check", recursive=True, timeout=30)
        assert not files.exists("check", timeout=30)
    finally:
        connector.close()
    print(f"sandboxd mode: files over REST :{rest_port}, commands over gRPC :{grpc_port}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
