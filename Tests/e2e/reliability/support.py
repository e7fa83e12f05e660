"""Helpers of the reliability suite: /proc inspection (zombies included), raw HTTP over sockets, figures.

Everything that waits takes a deadline; nothing sleeps to synchronise.
"""

from __future__ import annotations

import json
import os
import pathlib
import random
import signal
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import requests

from conftest import Proc, Server, proc_snapshot, wait_until

KiB = 1024
MiB = 1024 * 1024
FIGURES_FILE = pathlib.Path(os.environ.get("SANDBOXD_RELIABILITY_FIGURES", "/tmp/sandboxd-reliability-figures.json"))
# Statuses a server may legitimately answer to malformed input: 501 (method not implemented), 505 (version).
ALLOWED_5XX = {501, 505}


# --------------------------------------------------------------------------
# /proc


# Proc and proc_snapshot live in the parent conftest, which proc_table is built on.


def children(pid: int) -> list[Proc]:
    """Direct children of pid (zombies included)."""
    return [p for p in proc_snapshot().values() if p.ppid == pid]


def zombie_children(pid: int) -> list[Proc]:
    return [p for p in children(pid) if p.state == "Z"]


def live_matching(needle: str) -> dict[int, str]:
    """Live (non-zombie) processes whose command line contains needle, this process excluded."""
    me = os.getpid()
    return {p.pid: p.cmdline for p in proc_snapshot().values()
            if needle in p.cmdline and p.state != "Z" and p.pid != me}


def kill_matching(*needles: str) -> dict[int, str]:
    """SIGKILL every live process matching one of needles (cleanup after a failed kill); returns what it found."""
    found: dict[int, str] = {}
    for needle in needles:
        found.update(live_matching(needle))
    for pid in found:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return found


def status_kib(pid: int, key: str) -> int:
    """A `kB` field of /proc/<pid>/status (VmRSS, VmHWM, ...)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {key} in /proc/{pid}/status")


def open_fds(pid: int) -> list[str]:
    """Targets of the server's open descriptors (sockets, pipes, files)."""
    targets = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            targets.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    return targets


def unique_sleep(base: int) -> str:
    """A sleep duration unique to this run (`300.4821937`), so /proc shows exactly our processes."""
    return f"{base}.{random.randrange(10**6, 10**7)}"


def wchan(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/wchan") as f:
            return f.read().strip()
    except OSError:
        return ""


# --------------------------------------------------------------------------
# raw HTTP


class Closed(Exception):
    """The server closed (or reset) the connection."""


class Timeout(Exception):
    """The deadline passed with neither an answer nor a close."""


@dataclass
class RawHTTPResponse:
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes
    raw_head: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<{self.status} {self.reason} {self.body[:200]!r}>"


@dataclass
class RawConn:
    """One client socket speaking HTTP by hand, so nothing normalises what is sent."""

    server: Server
    rcvbuf: int | None = None
    timeout: float = 10.0
    sock: socket.socket = field(init=False)
    buf: bytearray = field(init=False, default_factory=bytearray)
    eof: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        family = socket.AF_INET6 if ":" in self.server.host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        if self.rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        self.sock.settimeout(self.timeout)
        self.sock.connect((self.server.host, self.server.port))

    def send(self, data: bytes) -> bool:
        """Send all of data; False if the server already closed or reset the connection."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            return False
        except (socket.timeout, TimeoutError):
            return False  # the server stopped reading; what it answers (or not) is judged by the caller

    def _fill(self, deadline: float, size: int = 65536) -> None:
        """Read more into buf; raises Closed at EOF/reset and Timeout at the deadline."""
        if self.eof:
            raise Closed()
        left = deadline - time.monotonic()
        if left <= 0:
            raise Timeout()
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(size)
        except (socket.timeout, TimeoutError):
            raise Timeout() from None
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
            self.eof = True
            raise Closed() from None
        if not data:
            self.eof = True
            raise Closed()
        self.buf += data

    def _take_exactly(self, n: int, deadline: float) -> bytes:
        while len(self.buf) < n:
            self._fill(deadline, max(65536, min(n - len(self.buf), 4 * MiB)))
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def _take_line(self, deadline: float) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill(deadline)
        end = self.buf.index(b"\r\n")
        line = bytes(self.buf[:end])
        del self.buf[: end + 2]
        return line

    def read_response(self, within: float = 10.0, head: bool = False) -> RawHTTPResponse:
        """Read one response (1xx included). Raises Closed if the connection ends before a complete one."""
        deadline = time.monotonic() + within
        while b"\r\n\r\n" not in self.buf:
            try:
                self._fill(deadline)
            except Closed:
                if self.buf:
                    raise AssertionError(f"connection closed inside a response head: {self.buf[:300]!r}") from None
                raise
        end = self.buf.index(b"\r\n\r\n")
        raw_head = bytes(self.buf[:end])
        del self.buf[: end + 4]
        lines = raw_head.split(b"\r\n")
        parts = lines[0].decode("latin-1").split(" ", 2)
        assert len(parts) >= 2 and parts[0].startswith("HTTP/1.") and parts[1].isdigit(), \
            f"not an HTTP status line: {lines[0]!r}"
        status = int(parts[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if head or 100 <= status < 200 or status in (204, 304):
            body = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = b""
            while True:
                size = int(self._take_line(deadline).split(b";")[0].strip(), 16)
                if size == 0:
                    while self._take_line(deadline):  # trailers up to the blank line
                        pass
                    break
                body += self._take_exactly(size, deadline)
                assert self._take_exactly(2, deadline) == b"\r\n", "chunk not followed by CRLF"
        elif "content-length" in headers:
            body = self._take_exactly(int(headers["content-length"]), deadline)
        else:
            while True:
                try:
                    self._fill(deadline)
                except Closed:
                    break
            body = bytes(self.buf)
            self.buf.clear()
        assert not body.startswith(b"HTTP/1."), (
            f"malformed response: its body starts with another status line (the head was sent twice): "
            f"{raw_head + b'|' + body[:160]!r}")
        return RawHTTPResponse(status, parts[2] if len(parts) > 2 else "", headers, body, raw_head)

    def read_head(self, within: float = 10.0) -> tuple[int, dict[str, str]]:
        """Read only a response head (status, lower-cased headers); the body stays on the socket."""
        deadline = time.monotonic() + within
        while b"\r\n\r\n" not in self.buf:
            self._fill(deadline, 1)  # byte by byte: nothing of the body is read ahead
        end = self.buf.index(b"\r\n\r\n")
        raw_head = bytes(self.buf[:end])
        del self.buf[: end + 4]
        lines = raw_head.split(b"\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        return status, headers

    def read_final_response(self, within: float = 10.0, head: bool = False) -> RawHTTPResponse:
        """The next response that is not 1xx."""
        deadline = time.monotonic() + within
        while True:
            resp = self.read_response(max(0.01, deadline - time.monotonic()), head)
            if resp.status >= 200:
                return resp

    def responses_until_close(self, within: float = 10.0) -> list[RawHTTPResponse]:
        """Every response up to the server's close; raises Timeout if the server neither answers nor closes."""
        deadline = time.monotonic() + within
        out = []
        while True:
            try:
                out.append(self.read_response(max(0.01, deadline - time.monotonic())))
            except Closed:
                return out

    def wait_closed(self, within: float) -> bool:
        """Discard whatever arrives until the server closes; False if still open at the deadline."""
        deadline = time.monotonic() + within
        try:
            while True:
                self._fill(deadline)
                self.buf.clear()
        except Closed:
            return True
        except Timeout:
            return False

    def abort(self) -> None:
        """Vanish with a RST, as a crashed client or a dropped network does."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.sock.close()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "RawConn":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def request_bytes(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
                  content_length: bool = True) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: reliability\r\n"
    for name, value in (headers or {}).items():
        head += f"{name}: {value}\r\n"
    if content_length and (body or method in ("POST", "PUT")):
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def no_server_error(responses: list[RawHTTPResponse], what: str) -> None:
    bad = [r for r in responses if r.status >= 500 and r.status not in ALLOWED_5XX]
    assert not bad, f"{what}: server error {bad}"


def assert_healthy(server: Server, within: float = 1.0) -> None:
    """GET / on a fresh connection answers 200 quickly: the server survived whatever came before."""
    started = time.monotonic()
    try:
        resp = requests.get(server.base_url + "/", timeout=max(within * 5, 5.0))
    except requests.RequestException as error:
        raise AssertionError(f"GET / failed afterwards: {error!r}") from None
    elapsed = time.monotonic() - started
    assert resp.status_code == 200, f"GET / afterwards: {resp.status_code} {resp.text[:200]}"
    assert elapsed < within, f"GET / afterwards took {elapsed:.2f}s"


def get_root_latency(server: Server, timeout: float = 5.0) -> float:
    """Seconds a `GET /` takes on a fresh connection (connect, send, read the whole answer), from a raw socket so
    the client adds as little as possible; fails on anything but a 200."""
    started = time.monotonic()
    with RawConn(server, timeout=timeout) as conn:
        conn.send(request_bytes("GET", "/", headers={"Connection": "close"}))
        resp = conn.read_final_response(timeout)
    elapsed = time.monotonic() - started
    assert resp.status == 200, f"GET /: {resp}"
    return elapsed


def multipart_body(filename: str, content: bytes, boundary: str = "reliabilityboundary") -> tuple[bytes, str]:
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


# --------------------------------------------------------------------------
# figures for the report


def record_figures(section: str, figures: dict[str, Any]) -> None:
    """Print figures and merge them into FIGURES_FILE (JSON), so a run leaves its numbers behind."""
    print(f"\n[figures] {section}: {json.dumps(figures, sort_keys=True)}")
    try:
        existing = json.loads(FIGURES_FILE.read_text())
    except (OSError, ValueError):
        existing = {}
    existing[section] = {**figures, "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    tmp = FIGURES_FILE.with_suffix(".tmp")
    tmp.write_text(json.dumps(existing, indent=2, sort_keys=True) + "\n")
    tmp.replace(FIGURES_FILE)


def poll(predicate: Callable[[], Any], deadline: float, interval: float = 0.05) -> Any:
    return wait_until(predicate, deadline, interval)
