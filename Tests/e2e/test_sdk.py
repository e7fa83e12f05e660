"""The published Python client (k8s-agent-sandbox 1.0.8) against sandboxd, over its legacy runtime path.

The SDK is built from its parts, the way SandboxClient wires them, with a direct
connection to the server's URL and tracing off (tracer=None).
"""

from __future__ import annotations

import io
import os
import time
from datetime import datetime, timezone

import pytest

pytest.importorskip("k8s_agent_sandbox")

from k8s_agent_sandbox.commands.command_executor import CommandExecutor  # noqa: E402
from k8s_agent_sandbox.connector import SandboxConnector  # noqa: E402
from k8s_agent_sandbox.exceptions import SandboxRequestError  # noqa: E402
from k8s_agent_sandbox.files.filesystem import Filesystem  # noqa: E402
from k8s_agent_sandbox.models import SandboxDirectConnectionConfig  # noqa: E402


@pytest.fixture
def connector(server):
    conn = SandboxConnector(
        sandbox_id="e2e",
        namespace="default",
        connection_config=SandboxDirectConnectionConfig(api_url=server.base_url),
        k8s_helper=None,  # only the cluster strategies use it
    )
    assert not conn.is_sandboxd(), "a direct connection speaks the legacy runtime API"
    yield conn
    conn.close()


@pytest.fixture
def commands(connector):
    return CommandExecutor(connector, tracer=None, trace_service_name="sandbox-e2e")


@pytest.fixture
def files(connector):
    return Filesystem(connector, tracer=None, trace_service_name="sandbox-e2e")


def test_run_command(commands):
    result = commands.run("echo 'hello from the sdk'", timeout=20)
    assert result.stdout == "hello from the sdk\n"
    assert result.stderr == ""
    assert result.exit_code == 0
    assert result.timed_out is False


def test_run_command_stderr_and_exit_code(commands):
    result = commands.run("sh -c 'echo oops >&2; exit 5'", timeout=20)
    assert (result.stdout, result.stderr, result.exit_code) == ("", "oops\n", 5)


def test_run_command_timeout(commands):
    started = time.monotonic()
    result = commands.run("sh -c 'echo before; sleep 30'", timeout=20, command_timeout=1)
    assert time.monotonic() - started < 10
    assert result.timed_out is True
    assert result.exit_code == 124
    assert result.stdout == "before\n"
    assert "Command timed out after 1 seconds" in result.stderr


def test_run_command_within_timeout(commands):
    result = commands.run("echo quick", timeout=20, command_timeout=30)
    assert result.stdout == "quick\n" and result.exit_code == 0 and result.timed_out is False


def test_write_bytes_and_read_back(files, workdir):
    path = workdir.join("bytes.bin")
    content = bytes(range(256)) * 64
    files.write(path, content, timeout=20)  # requests' files= (Content-Length)
    assert files.read(path, timeout=20) == content


def test_write_stream_is_chunked_and_reads_back(files, workdir):
    """A binary file object makes the SDK stream the multipart body with chunked encoding."""
    path = workdir.join("nested/dir/stream.bin")
    content = os.urandom(3 * 1024 * 1024 + 17)
    files.write(path, io.BytesIO(content), timeout=60)
    assert files.read(path, timeout=60) == content
    sink = io.BytesIO()
    assert files.read_to(path, sink, timeout=60) == len(content)
    assert sink.getvalue() == content


def test_write_text(files, workdir):
    path = workdir.join("notes ✓.txt")
    files.write(path, "héllo\n", timeout=20)
    assert files.read(path, timeout=20) == "héllo\n".encode()


def test_list(files, workdir):
    files.write(workdir.join("a.txt"), b"12345", timeout=20)
    files.write(workdir.join("sub/b.txt"), b"1", timeout=20)
    entries = {e.name: e for e in files.list(workdir.rel, timeout=20)}
    assert set(entries) == {"a.txt", "sub"}
    assert entries["a.txt"].type == "file" and entries["a.txt"].size == 5
    assert entries["sub"].type == "directory"
    age = datetime.now(timezone.utc) - entries["a.txt"].modified
    assert abs(age.total_seconds()) < 300


def test_exists(files, workdir):
    files.write(workdir.join("here.txt"), b"x", timeout=20)
    assert files.exists(workdir.join("here.txt"), timeout=20) is True
    assert files.exists(workdir.rel, timeout=20) is True
    assert files.exists(workdir.join("absent.txt"), timeout=20) is False


def test_read_missing_raises_404(files, workdir):
    with pytest.raises(SandboxRequestError) as err:
        files.read(workdir.join("absent.txt"), timeout=20)
    assert err.value.status_code == 404


def test_unsafe_write_is_refused_by_server(files, workdir):
    """With the SDK's own check off, the server still confines the upload."""
    with pytest.raises(SandboxRequestError) as err:
        files.write(f"../{workdir.rel}-escape.txt", b"x", timeout=20, allow_unsafe_paths=True)
    assert err.value.status_code == 403
