"""The published Python client (k8s-agent-sandbox 1.0.8, with its grpc extra) against sandboxd in the SDK's sandboxd
mode: files over the v1 REST API, commands over gRPC `ProcessService.Execute`, synchronous and asynchronous.

No cluster: the in-cluster strategy is given a `get_pod_ip` that answers 127.0.0.1, and the server listens there on
the ports the config names. The SDK itself is used unchanged.
"""

from __future__ import annotations

import asyncio
import io
import os
import time

import pytest

pytest.importorskip("grpc")
pytest.importorskip("k8s_agent_sandbox")

from k8s_agent_sandbox.async_connector import AsyncSandboxConnector  # noqa: E402
from k8s_agent_sandbox.commands.async_command_executor import AsyncCommandExecutor  # noqa: E402
from k8s_agent_sandbox.commands.command_executor import CommandExecutor  # noqa: E402
from k8s_agent_sandbox.connector import SandboxConnector  # noqa: E402
from k8s_agent_sandbox.files.async_filesystem import AsyncFilesystem  # noqa: E402
from k8s_agent_sandbox.files.filesystem import Filesystem  # noqa: E402
from k8s_agent_sandbox.models import SandboxdInClusterConnectionConfig  # noqa: E402

from conftest import launch, sandboxd_binary, stop  # noqa: E402
from test_grpc import grpc_port  # noqa: E402


@pytest.fixture(scope="module")
def sandboxd_mode(tmp_path_factory):
    binary = sandboxd_binary()
    if not binary.is_file():
        pytest.skip(f"needs the sandboxd binary ({binary})")
    srv = launch(binary, tmp_path_factory.mktemp("sdk-sandboxd-root"), ("--grpc-port", "0"))
    config = SandboxdInClusterConnectionConfig(
        mode="in-cluster-pod-ip", rest_port=srv.port, grpc_port=grpc_port(srv))
    yield srv, config
    stop(srv)


@pytest.fixture
def connector(sandboxd_mode):
    _, config = sandboxd_mode
    conn = SandboxConnector(
        sandbox_id="e2e", namespace="default", connection_config=config, k8s_helper=None,
        get_pod_ip=lambda: "127.0.0.1")
    assert conn.is_sandboxd()
    yield conn
    conn.close()


def test_commands_over_grpc(connector):
    run = CommandExecutor(connector, tracer=None, trace_service_name="sandbox-e2e").run
    result = run("echo hello; echo oops >&2; exit 3", timeout=20)
    assert (result.stdout, result.stderr, result.exit_code) == ("hello\n", "oops\n", 3)
    assert run("pwd", timeout=20, cwd="/").exit_code == 0
    result = run('echo "$GREETING"', timeout=20, env={"GREETING": "hi"})
    assert result.stdout == "hi\n"


def test_command_timeout_over_grpc(connector):
    run = CommandExecutor(connector, tracer=None, trace_service_name="sandbox-e2e").run
    started = time.monotonic()
    result = run("sleep 30", timeout=20, command_timeout=1)
    assert time.monotonic() - started < 10
    assert result.timed_out is True and result.exit_code == 124


def test_files_over_v1(connector, sandboxd_mode):
    srv, _ = sandboxd_mode
    files = Filesystem(connector, tracer=None, trace_service_name="sandbox-e2e")
    content = os.urandom(1024 * 1024 + 3)
    files.write("sdk/dir/data.bin", io.BytesIO(content), timeout=60)
    assert files.read("sdk/dir/data.bin", timeout=60) == content
    assert (srv.root / "sdk/dir/data.bin").read_bytes() == content
    names = {entry.name: entry for entry in files.list("sdk/dir", timeout=20)}
    assert names["data.bin"].size == len(content)
    assert files.exists("sdk/dir/data.bin", timeout=20) is True
    files.delete("sdk", recursive=True, timeout=20)
    assert files.exists("sdk", timeout=20) is False
    # Files written over REST are what commands over gRPC see.
    files.write("shared.txt", b"from rest\n", timeout=20)
    run = CommandExecutor(connector, tracer=None, trace_service_name="sandbox-e2e").run
    assert run("cat shared.txt", timeout=20).stdout == "from rest\n"


def test_async_client(sandboxd_mode):
    pytest.importorskip("httpx")
    _, config = sandboxd_mode

    async def scenario():
        async def pod_ip():
            return "127.0.0.1"

        conn = AsyncSandboxConnector(
            sandbox_id="e2e", namespace="default", connection_config=config, k8s_helper=None, get_pod_ip=pod_ip)
        try:
            commands = AsyncCommandExecutor(conn, tracer=None, trace_service_name="sandbox-e2e")
            files = AsyncFilesystem(conn, tracer=None, trace_service_name="sandbox-e2e")
            results = await asyncio.gather(*(commands.run(f"echo {i}", timeout=20) for i in range(8)))
            assert [r.stdout for r in results] == [f"{i}\n" for i in range(8)]
            await files.write("async.txt", b"async bytes", timeout=20)
            assert await files.read("async.txt", timeout=20) == b"async bytes"
            assert await files.exists("async.txt", timeout=20) is True
        finally:
            await conn.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))
