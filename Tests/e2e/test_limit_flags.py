"""The memory and time bounds of the security model are flags: each test starts a server with a small (or large) value
and shows over the wire that the bound moved with it.

--max-body-bytes (JSON bodies, stdin writes, stdin waiting unread), --replay-bytes, --keep-finished,
--keep-finished-for, --stream-buffer-bytes, --drain-timeout and --max-header-bytes.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import socket
import struct
import termios
import time
from typing import Any

import pytest
import requests

from conftest import Server, wait_until

TIMEOUT = 20.0  # seconds any one request may take


def _post(srv: Server, path: str, body: bytes, content_type: str = "application/json") -> requests.Response:
    return requests.post(srv.base_url + path, data=body, headers={"Content-Type": content_type}, timeout=TIMEOUT)


def _json_of_size(size: int, **fields: Any) -> bytes:
    """A JSON object with `fields` and a padding field, exactly `size` bytes long."""
    base = json.dumps({**fields, "pad": ""}).encode()
    body = json.dumps({**fields, "pad": "p" * (size - len(base))}).encode()
    assert len(body) == size
    return body


def _start(srv: Server, **body: Any) -> str:
    resp = requests.post(srv.base_url + "/v1/processes", json=body, timeout=TIMEOUT)
    assert resp.status_code == 201, f"POST /v1/processes {body}: {resp.status_code} {resp.text}"
    return resp.json()["id"]


def _wait(srv: Server, pid: str, deadline: float = 20.0) -> dict[str, Any]:
    """The process once exited; each /wait is bounded, and so is the whole wait."""
    end = time.monotonic() + deadline
    while True:
        left = end - time.monotonic()
        assert left > 0, f"process {pid} did not exit within {deadline}s"
        resp = requests.get(f"{srv.base_url}/v1/processes/{pid}/wait?timeout={min(left, 5):.2f}", timeout=TIMEOUT)
        assert resp.status_code == 200, resp.text
        if resp.json()["status"] == "exited":
            return resp.json()


def _events(srv: Server, pid: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Every event of a finished process's stream, and its comments."""
    resp = requests.get(f"{srv.base_url}/v1/processes/{pid}/events", stream=True, timeout=TIMEOUT)
    assert resp.status_code == 200, resp.text
    events: list[dict[str, Any]] = []
    comments: list[str] = []
    fields: dict[str, str] = {}
    for line in resp.iter_lines(decode_unicode=True):
        if line.startswith(":"):
            comments.append(line[1:].strip())
        elif line:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        elif fields:
            events.append(fields)
            fields = {}
    return events, comments


def _stdout_of(events: list[dict[str, Any]]) -> str:
    return "".join(json.loads(e["data"]) for e in events if e.get("event") == "stdout")


# --------------------------------------------------------------------------
# --max-body-bytes


def test_max_body_bytes_bounds_every_json_body_and_stdin(start_server):
    srv = start_server("--max-body-bytes", "2000")
    command = {"command": "echo fits"}
    assert _post(srv, "/execute", _json_of_size(3000, **command)).status_code == 413
    fits = _post(srv, "/execute", _json_of_size(1500, **command))
    assert fits.status_code == 200 and fits.json()["stdout"] == "fits\n", fits.text
    assert _post(srv, "/execute/stream", _json_of_size(3000, **command)).status_code == 413
    assert _post(srv, "/v1/processes", _json_of_size(3000, command=["true"])).status_code == 413

    pid = _start(srv, command=["sleep", "60"], stdin=True)
    try:
        # The control bodies take the same limit (they had a fixed 64 KiB of their own).
        signal = _post(srv, f"/v1/processes/{pid}/signal", _json_of_size(3000, signal="SIGUSR1"))
        assert signal.status_code == 413, signal.text
        stdin = f"{srv.base_url}/v1/processes/{pid}/stdin"
        big = requests.post(stdin, data=b"s" * 3000, timeout=TIMEOUT)
        assert big.status_code == 413 and big.json()["code"] == "RESOURCE_EXHAUSTED", big.text
        assert "2000 bytes" in big.json()["message"], big.text
        # `sleep` never reads: its pipe takes up to 64 KiB, then 8 x 2000 bytes may wait; the next write is refused.
        statuses = []
        while 429 not in statuses and len(statuses) < 100:
            statuses.append(requests.post(stdin, data=b"s" * 2000, timeout=TIMEOUT).status_code)
        accepted = statuses.count(204) * 2000
        assert statuses[-1] == 429 and set(statuses[:-1]) == {204}, statuses
        assert 16000 <= accepted <= 16000 + 65536, f"{accepted} bytes of stdin taken before the 429"
    finally:
        requests.delete(f"{srv.base_url}/v1/processes/{pid}", timeout=TIMEOUT)


def test_control_bodies_take_the_default_body_limit(server):
    """With the default --max-body-bytes (1 MiB), a 100 KB signal body is taken: one limit for every JSON body."""
    pid = _start(server, command=["sleep", "60"])
    try:
        resp = _post(server, f"/v1/processes/{pid}/signal", _json_of_size(100_000, signal="SIGTERM"))
        assert resp.status_code == 204, resp.text
        assert _wait(server, pid)["signal"] == "SIGTERM"
    finally:
        requests.delete(f"{server.base_url}/v1/processes/{pid}", timeout=TIMEOUT)


# --------------------------------------------------------------------------
# --replay-bytes

REPLAY_WRITER = """
import sys, time
for block in range(100):
    sys.stdout.write(f"{block:04d}" + "r" * 995 + "\\n")
    sys.stdout.flush()
    time.sleep(0.02)  # separate reads, so the newest events fit the small budget
"""


def test_replay_bytes_keeps_only_the_newest_output(start_server):
    srv = start_server("--replay-bytes", "4096")
    (srv.root / "replay.py").write_text(REPLAY_WRITER)
    pid = _start(srv, command=["python3", "replay.py"])
    assert _wait(srv, pid)["exit_code"] == 0
    events, comments = _events(srv, pid)
    assert events[-1]["event"] == "exit", events[-1]
    replayed = _stdout_of(events)
    written = "".join(f"{block:04d}" + "r" * 995 + "\n" for block in range(100))
    assert 0 < len(replayed) <= 4096, f"{len(replayed)} bytes replayed with --replay-bytes 4096"
    assert written.endswith(replayed), "the replay is not the newest output"
    first = int(next(e for e in events if e.get("event") == "stdout")["id"])
    assert any(f"events 1-{first - 1} are no longer buffered" in c for c in comments), (first, comments)


# --------------------------------------------------------------------------
# --keep-finished, --keep-finished-for


def test_keep_finished_keeps_only_the_newest_finished_process(start_server):
    srv = start_server("--keep-finished", "1")
    older = _start(srv, command=["true"])
    _wait(srv, older)
    newer = _start(srv, command=["true"])
    _wait(srv, newer)
    listed = [p["id"] for p in requests.get(srv.base_url + "/v1/processes", timeout=TIMEOUT).json()["processes"]]
    assert listed == [newer], listed
    assert requests.get(f"{srv.base_url}/v1/processes/{older}", timeout=TIMEOUT).status_code == 404
    assert requests.get(f"{srv.base_url}/v1/processes/{newer}", timeout=TIMEOUT).status_code == 200


def test_keep_finished_for_forgets_a_finished_process_after_that_time(start_server):
    srv = start_server("--keep-finished-for", "3s")
    pid = _start(srv, command=["true"])
    _wait(srv, pid)
    url = f"{srv.base_url}/v1/processes/{pid}"
    assert requests.get(url, timeout=TIMEOUT).status_code == 200, "forgotten before --keep-finished-for passed"
    gone = wait_until(lambda: requests.get(url, timeout=TIMEOUT).status_code == 404, 15.0, 0.2)
    assert gone, "a finished process was still kept 15 s after its exit with --keep-finished-for 3s"
    listed = requests.get(srv.base_url + "/v1/processes", timeout=TIMEOUT).json()["processes"]
    assert listed == [], listed


# --------------------------------------------------------------------------
# --stream-buffer-bytes

STREAM_LINE = b"x" * 99 + b"\n"
STREAM_LINES = 20_000  # 2,000,000 bytes
STREAM_WRITER = f"""
import sys
for _ in range({STREAM_LINES // 160}):
    sys.stdout.buffer.write({STREAM_LINE!r} * 160)
    sys.stdout.buffer.flush()
"""


def _pid_of(argv: list[str]) -> int | None:
    wanted = ("\0".join(argv) + "\0").encode()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                    if cmdline.read() == wanted:
                        return int(entry)
            except OSError:
                continue
    return None


def _blocked_writer(pid: int, seen: list[int]) -> int | None:
    """The bytes pid has written, once it sleeps writing to its pipe and has written nothing for ten looks (a
    second at the caller's pace: paused, not merely slow to be read)."""
    try:
        with open(f"/proc/{pid}/wchan") as wchan, open(f"/proc/{pid}/io") as io:
            channel = wchan.read()
            written = int(re.search(r"wchar: (\d+)", io.read()).group(1))
    except OSError:
        return None
    seen.append(written)
    return written if "pipe_write" in channel and seen[-10:] == [written] * 10 else None


def _pipe_queued(pid: int, fd: int = 1) -> int:
    """Bytes waiting in the pipe on pid's fd, read through /proc without consuming any."""
    reader = os.open(f"/proc/{pid}/fd/{fd}", os.O_RDONLY | os.O_NONBLOCK)
    try:
        return struct.unpack("i", fcntl.ioctl(reader, termios.FIONREAD, b"\0\0\0\0"))[0]
    finally:
        os.close(reader)


def _tcp_queues(local_port: int, remote_port: int) -> tuple[int, int]:
    """(send queue, receive queue) of the IPv4 TCP socket between these ports, from /proc/net/tcp."""
    with open("/proc/net/tcp") as table:
        for line in table.read().splitlines()[1:]:
            fields = line.split()
            if (int(fields[1].split(":")[1], 16), int(fields[2].split(":")[1], 16)) == (local_port, remote_port):
                sent, received = fields[4].split(":")
                return int(sent, 16), int(received, 16)
    raise AssertionError(f"no TCP socket {local_port} -> {remote_port}")


@pytest.mark.deadline(90)
def test_stream_buffer_bytes_pauses_the_command_and_still_delivers_every_byte(start_server):
    """A client that reads nothing: once the writer blocks, what sandboxd holds for the client (the output it read,
    as events, less what the kernel's socket buffers hold) is about --stream-buffer-bytes, not the default 1 MiB.
    Then the client reads slowly and gets every byte of the 2 MB, through many pauses and resumes."""
    srv = start_server("--stream-buffer-bytes", "65536")
    (srv.root / "flood.py").write_text(STREAM_WRITER)
    sock = socket.create_connection((srv.host, srv.port), timeout=TIMEOUT)
    try:
        body = json.dumps({"command": "python3 flood.py"}).encode()
        sock.sendall(b"POST /execute/stream HTTP/1.1\r\nHost: limits\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body)
        pid = wait_until(lambda: _pid_of(["python3", "flood.py"]), 10.0)
        assert pid, "the writer did not start"
        seen: list[int] = []
        written = wait_until(lambda: _blocked_writer(pid, seen), 20.0, 0.1)
        assert written, f"the writer never blocked on its pipe; it wrote {seen[-5:]}"
        read_by_server = written - _pipe_queued(pid)
        client_port = sock.getsockname()[1]
        in_kernel = sum(_tcp_queues(srv.port, client_port)) + sum(_tcp_queues(client_port, srv.port))
        # Each 100-byte line is a 121-byte event (`event: stdout`, `data: `, the line, a blank line).
        held = read_by_server * 121 // 100 - in_kernel
        # The buffer, plus the one read of output (64 KiB, as events) that crossed it; the default holds > 1 MiB.
        assert held < 65536 + 64 * 1024 * 121 // 100 + 16384, \
            f"sandboxd holds ~{held} bytes for a client that reads nothing (read {read_by_server}, kernel {in_kernel})"

        received = bytearray()
        end = time.monotonic() + 60
        while not received.endswith(b"\r\n0\r\n\r\n"):
            assert time.monotonic() < end, f"stream not complete after 60 s: {len(received)} bytes"
            chunk = sock.recv(16384)
            assert chunk, "the server closed the stream early"
            received += chunk
            time.sleep(0.002)  # the slow client's pace: the behaviour under test, not a synchronisation
    finally:
        sock.close()
    head, _, chunked = bytes(received).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    payload = bytearray()
    while True:
        size_line, _, chunked = chunked.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        payload += chunked[:size]
        chunked = chunked[size + 2:]
    events = [block.split(b"\n") for block in bytes(payload).split(b"\n\n") if block]
    lines = [event[1].removeprefix(b"data: ") for event in events if event[0] == b"event: stdout"]
    assert len(lines) == STREAM_LINES and all(line == STREAM_LINE[:-1] for line in lines), \
        f"{len(lines)} stdout lines of {STREAM_LINES}"
    assert events[-1][0] == b"event: done" and json.loads(events[-1][1].removeprefix(b"data: "))["exit_code"] == 0


# --------------------------------------------------------------------------
# --drain-timeout

# The holder runs as a v1 process of its own, so sandboxd does not kill it when the command's main process exits:
# it is handed the command's stdout, waits for the command's main process to exit, then writes 0.5 s later.
HOLDER = """
import os, select, socket, time
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind("holder.sock")
server.listen(1)
conn, _ = server.accept()
message, fds, _, _ = socket.recv_fds(conn, 32, 1)
conn.close()
exited = os.pidfd_open(int(message))
select.select([exited], [], [], 30)
time.sleep(0.5)
try:
    os.write(fds[0], b"late\\n")
    print("written", flush=True)
except BrokenPipeError:
    print("broken pipe", flush=True)
os.close(fds[0])
"""
# The command: hands its stdout and its pid to the holder, and exits.
SENDER = """
import os, socket
print("early", flush=True)
conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
conn.connect("holder.sock")
socket.send_fds(conn, [str(os.getpid()).encode()], [1])
conn.close()
"""


def _output_after_exit(srv: Server) -> tuple[str, str]:
    """What /execute returned for the sender, and what the holder reported about its late write."""
    (srv.root / "holder.py").write_text(HOLDER)
    (srv.root / "sender.py").write_text(SENDER)
    holder = _start(srv, command=["python3", "holder.py"])
    assert wait_until(lambda: (srv.root / "holder.sock").exists(), 10.0), "the holder did not listen"
    resp = requests.post(srv.base_url + "/execute", json={"command": "python3 sender.py"}, timeout=TIMEOUT)
    assert resp.status_code == 200 and resp.json()["exit_code"] == 0, resp.text
    assert _wait(srv, holder)["exit_code"] == 0
    events, _ = _events(srv, holder)
    return resp.json()["stdout"], _stdout_of(events)


def test_drain_timeout_reads_output_written_after_the_main_process_exited(start_server):
    stdout, holder = _output_after_exit(start_server("--drain-timeout", "2"))
    assert (stdout, holder) == ("early\nlate\n", "written\n")


def test_the_default_drain_timeout_closes_the_output_before_a_late_write(start_server):
    stdout, holder = _output_after_exit(start_server())
    assert (stdout, holder) == ("early\n", "broken pipe\n")


@pytest.mark.parametrize("flags, size, status", [((), 20_000, 200), (("--max-header-bytes", "8192"), 20_000, 431),
                                                 (("--max-header-bytes", "65536"), 40_000, 200)])
def test_max_header_bytes_bounds_the_request_head(start_server, flags, size, status):
    srv = start_server(*flags)
    with socket.create_connection((srv.host, srv.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * size + b"\r\n\r\n")
        line = sock.recv(200).split(b"\r\n")[0]
    assert line.startswith(b"HTTP/1.1 %d" % status), line
    assert requests.get(srv.base_url + "/", timeout=TIMEOUT).status_code == 200
