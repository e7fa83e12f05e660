"""Fixtures for the sandboxd end-to-end suite.

By default the suite starts the real binary (``SANDBOXD_BIN``, default
``<repo>/.build/debug/sandboxd``) on 127.0.0.1 with ``--port 0`` and a fresh
temporary root, learns the port from its "listening on HOST:PORT" log line, and
stops it with SIGTERM at the end, expecting exit code 0.

To aim the suite at a server that is already running (for example the
reference FastAPI runtime), set ``SANDBOXD_URL=http://host:port`` and, so the
tests that look at the disk can run, ``SANDBOXD_ROOT=/path/of/its/root``.

Checking the suite itself against the reference: run the FastAPI server with
``SANDBOX_BASE_DIR=/tmp/refroot uvicorn main:app --host 127.0.0.1 --port 18000``
and use ``SANDBOXD_URL=http://127.0.0.1:18000 SANDBOXD_ROOT=/tmp/refroot
SANDBOXD_BIN=/nonexistent`` (the last skips the tests that start servers of their own).

Every wait has a deadline; nothing sleeps to synchronise. If the main server
dies, the test it died in gets an error with the log tail and a fresh server
(same root) takes over, so one crash does not turn the whole run red.
"""

from __future__ import annotations

import http.client
import json
import os
import pathlib
import re
import shutil
import signal
import stat
import subprocess
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import pytest
import requests

REPO = pathlib.Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO / ".build" / "debug" / "sandboxd"
LISTEN_RE = re.compile(r"listening on \S*:(\d+)")
START_DEADLINE = 10.0
STOP_DEADLINE = 20.0  # above --shutdown-timeout's default (10 s) plus the kill grace
CLIENT_TIMEOUT = 30.0
TEST_DEADLINE = 180  # seconds; a hung test fails instead of wedging the run
# Set in the environment of the server the suite starts, to check that
# commands inherit the server's environment.
ENV_MARKER = ("SANDBOXD_E2E_MARKER", "inherited-env-ok")
# Variables that would change the server's configuration behind our back.
_SERVER_CONFIG_ENV = ("SANDBOX_HOST", "SANDBOX_PORT", "SANDBOX_BASE_DIR", "SANDBOX_EXEC_TIMEOUT_SECONDS")


# --------------------------------------------------------------------------
# per-test deadline (stdlib; pytest-timeout is not required)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "deadline(seconds): fail the test if it runs longer than this")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    marker = item.get_closest_marker("deadline")
    limit = int(marker.args[0]) if marker else TEST_DEADLINE

    def on_alarm(signum: int, frame: Any) -> None:
        pytest.fail(f"test exceeded its {limit}s deadline", pytrace=True)

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(limit)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# --------------------------------------------------------------------------
# /proc helpers


@dataclass
class Proc:
    pid: int
    ppid: int
    state: str
    pgrp: int
    session: int
    cmdline: str
    utime_stime: int  # clock ticks of CPU used


def proc_snapshot() -> dict[int, Proc]:
    """Every process in our /proc, zombies included (their cmdline is empty)."""
    table: dict[int, Proc] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode("utf-8", "replace")
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        table[int(entry)] = Proc(int(entry), int(fields[1]), fields[0], int(fields[2]), int(fields[3]), cmdline,
                                 int(fields[11]) + int(fields[12]))
    return table


def proc_table() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, cmdline with spaces) for every live, non-zombie process."""
    return {pid: (proc.ppid, proc.cmdline) for pid, proc in proc_snapshot().items() if proc.state != "Z"}


def descendants(pid: int) -> dict[int, str]:
    """Live processes whose parent chain leads to pid."""
    table = proc_table()
    found: dict[int, str] = {}
    for candidate, (ppid, cmdline) in table.items():
        seen = set()
        while ppid > 1 and ppid not in seen:
            if ppid == pid:
                found[candidate] = cmdline
                break
            seen.add(ppid)
            ppid = table.get(ppid, (0, ""))[0]
    return found


def processes_matching(needle: str) -> dict[int, str]:
    """Live processes whose command line contains needle (this process excluded)."""
    return {
        pid: cmd
        for pid, (_, cmd) in proc_table().items()
        if needle in cmd and pid != os.getpid()
    }


def wait_until(predicate: Callable[[], Any], deadline: float, interval: float = 0.05) -> Any:
    """Poll predicate until it returns something truthy or the deadline passes; returns its last value."""
    end = time.monotonic() + deadline
    while True:
        value = predicate()
        if value or time.monotonic() >= end:
            return value
        time.sleep(interval)


# --------------------------------------------------------------------------
# servers


@dataclass
class Server:
    base_url: str
    host: str
    port: int
    root: pathlib.Path | None
    proc: subprocess.Popen | None = None
    relaunch: Callable[[], "Server"] | None = None  # how to start the same server again
    _stderr: list[str] = field(default_factory=list)
    _stdout: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def local(self) -> bool:
        """True when the server's processes are visible in our /proc."""
        return self.proc is not None

    @property
    def same_machine(self) -> bool:
        """True when the server's commands run on this machine (our /proc shows them)."""
        return self.local or self.host in ("127.0.0.1", "localhost", "::1")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def logs(self) -> str:
        with self._lock:
            return "".join(self._stderr)

    def log_tail(self, lines: int = 80) -> str:
        return "\n".join(self.logs().splitlines()[-lines:])

    def stdout(self) -> str:
        with self._lock:
            return "".join(self._stdout)

    def wait_for_log(self, pattern: str, deadline: float = 5.0) -> re.Match | None:
        regex = re.compile(pattern)
        return wait_until(lambda: regex.search(self.logs()), deadline)


def _drain(stream: Any, sink: list[str], lock: threading.Lock, on_line: Callable[[str], None] | None) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", "replace")
        with lock:
            sink.append(line)
        if on_line:
            on_line(line)
    stream.close()


def sandboxd_binary() -> pathlib.Path:
    return pathlib.Path(os.environ.get("SANDBOXD_BIN") or DEFAULT_BIN)


@pytest.fixture
def built_binary() -> pathlib.Path:
    """The binary under test, for tests that read the file itself (skipped when there is none)."""
    binary = sandboxd_binary()
    if not binary.exists():
        pytest.skip(f"no binary at {binary}")
    return binary


def text_symbols(binary: pathlib.Path) -> dict[str, int]:
    """The functions defined in `binary`'s text, by name, with their addresses (nm)."""
    listing = subprocess.run(["nm", "--defined-only", str(binary)], capture_output=True, text=True, timeout=60,
                             check=True).stdout
    addresses: dict[str, int] = {}
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[1] in "tT":
            addresses.setdefault(fields[2], int(fields[0], 16))
    return addresses


def launch(
    binary: pathlib.Path,
    root: pathlib.Path,
    extra_args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
    host: str = "127.0.0.1",
    root_flag: bool = True,
) -> Server:
    """Start sandboxd with --port 0 and wait (bounded) for its "listening on HOST:PORT" line.

    With root_flag=False no --root is passed (the root then comes from SANDBOX_BASE_DIR in env).
    """
    child_env = {k: v for k, v in os.environ.items() if k not in _SERVER_CONFIG_ENV}
    child_env[ENV_MARKER[0]] = ENV_MARKER[1]
    child_env.update(env or {})
    cmd = [str(binary), "--host", host, "--port", "0", *(("--root", str(root)) if root_flag else ()), *extra_args]
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env,
        preexec_fn=preexec_fn,
    )
    # Where a client connects: the wildcard addresses are reached through loopback.
    connect = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    server = Server(base_url="", host=connect, port=0, root=root, proc=proc)
    found = threading.Event()
    port: list[int] = []

    def on_line(line: str) -> None:
        match = LISTEN_RE.search(line)
        if match and not found.is_set():
            port.append(int(match.group(1)))
            found.set()

    threading.Thread(target=_drain, args=(proc.stderr, server._stderr, server._lock, on_line), daemon=True).start()
    threading.Thread(target=_drain, args=(proc.stdout, server._stdout, server._lock, None), daemon=True).start()

    end = time.monotonic() + START_DEADLINE
    while not found.wait(0.05):
        if proc.poll() is not None or time.monotonic() >= end:
            reason = f"exited with {proc.returncode}" if proc.returncode is not None else "no listening line"
            stop(server, expect_clean=False)
            pytest.fail(f"sandboxd did not start ({reason}) within {START_DEADLINE}s: {cmd}\n"
                        f"--- stderr tail ---\n{server.log_tail()}")
    server.port = port[0]
    server.base_url = f"http://[{connect}]:{server.port}" if ":" in connect else f"http://{connect}:{server.port}"
    server.relaunch = lambda: launch(binary, root, extra_args, env, preexec_fn, host, root_flag)
    return server


def stop(server: Server, expect_clean: bool = True) -> None:
    """SIGTERM, bounded wait; with expect_clean, assert exit code 0."""
    proc = server.proc
    if proc is None:
        return
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_DEADLINE)
            if expect_clean:
                pytest.fail(f"sandboxd did not exit within {STOP_DEADLINE}s of SIGTERM\n--- stderr tail ---\n{server.log_tail()}")
    if expect_clean:
        assert proc.returncode == 0, f"sandboxd exited with {proc.returncode}\n--- stderr tail ---\n{server.log_tail()}"


def _external_server() -> Server | None:
    url = os.environ.get("SANDBOXD_URL")
    if not url:
        return None
    parsed = urllib.parse.urlsplit(url)
    root = os.environ.get("SANDBOXD_ROOT")
    server = Server(
        base_url=url.rstrip("/"),
        host=parsed.hostname or "127.0.0.1",
        port=parsed.port or 80,
        root=pathlib.Path(root) if root else None,
    )
    healthy = wait_until(lambda: _is_up(server.base_url), START_DEADLINE, 0.2)
    if not healthy:
        pytest.fail(f"SANDBOXD_URL={url} is not answering GET /")
    return server


def _is_up(base_url: str) -> bool:
    try:
        return requests.get(base_url + "/", timeout=2).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The sandboxd under test: started here, or the one named by SANDBOXD_URL."""
    external = _external_server()
    if external is not None:
        yield external
        return
    binary = sandboxd_binary()
    if not binary.is_file():
        pytest.fail(f"sandboxd binary not found at {binary}: build it (swift build) or set SANDBOXD_BIN / SANDBOXD_URL")
    root = tmp_path_factory.mktemp("root")
    srv = launch(binary, root)
    yield srv
    stop(srv)


@pytest.fixture
def start_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Server]]:
    """Factory for extra servers: start_server("--max-timeout", "1", env={...}, preexec_fn=..., host="::1").

    Each gets its own fresh root; all are stopped (and must exit 0) at teardown.
    Needs the binary even when SANDBOXD_URL is set; skips without it.
    """
    started: list[Server] = []

    def start(*extra_args: str, env: dict[str, str] | None = None, preexec_fn: Callable[[], None] | None = None,
              root: pathlib.Path | None = None, host: str = "127.0.0.1", root_flag: bool = True) -> Server:
        binary = sandboxd_binary()
        if not binary.is_file():
            pytest.skip(f"needs the sandboxd binary ({binary}) to start a second server")
        srv = launch(binary, root or tmp_path_factory.mktemp("root-extra"), tuple(extra_args), env, preexec_fn,
                     host, root_flag)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        stop(srv)


@pytest.fixture
def start_limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Server]]:
    """Starts sandboxd under `prlimit --nofile=N:N` (soft and hard); stops every server at teardown."""
    if shutil.which("prlimit") is None:
        pytest.skip("needs prlimit (util-linux)")
    binary = sandboxd_binary()
    if not binary.is_file():
        pytest.skip(f"needs the sandboxd binary ({binary})")
    started: list[Server] = []

    def start(nofile: int, *args: str) -> Server:
        wrapper = tmp_path_factory.mktemp("limited") / "sandboxd-limited"
        # prlimit sets the limits and execs the binary: the server keeps the wrapper's pid.
        wrapper.write_text(f'#!/bin/sh\nexec prlimit --nofile={nofile}:{nofile} "{binary}" "$@"\n')
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
        srv = launch(wrapper, tmp_path_factory.mktemp("root-limited"), args)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        stop(srv)


@pytest.fixture(autouse=True)
def server_still_healthy(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test the main server must still run and have no child processes left (bounded wait).

    A server that died is reported once, as an error of the test it died in, and replaced by a fresh one
    (same root) so the rest of the suite still says something.
    """
    yield
    if "server" not in request.fixturenames:
        return
    srv: Server = request.getfixturevalue("server")
    if not srv.local:
        return
    if srv.proc.poll() is not None:
        code, tail = srv.proc.returncode, srv.log_tail()
        fresh = srv.relaunch()
        srv.proc, srv.port, srv.base_url, srv._stderr, srv._stdout, srv._lock = (
            fresh.proc, fresh.port, fresh.base_url, fresh._stderr, fresh._stdout, fresh._lock)
        pytest.fail(f"sandboxd died during this test (exit {code}); restarted it for the next tests\n"
                    f"--- stderr tail ---\n{tail}", pytrace=False)
    left = wait_until(lambda: not descendants(srv.pid), 10.0, 0.1)
    assert left, f"processes left under sandboxd after the test: {descendants(srv.pid)}"


# --------------------------------------------------------------------------
# HTTP helpers


class RawResponse:
    """What http.client returned, without any client-side URL normalisation."""

    def __init__(self, status: int, reason: str, headers: http.client.HTTPMessage, body: bytes) -> None:
        self.status = self.status_code = status
        self.reason = reason
        self.headers = headers
        self.content = body

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)

    def __repr__(self) -> str:
        return f"<RawResponse {self.status} {self.content[:300]!r}>"


@dataclass
class Event:
    """One SSE block: its raw lines (without the LF) and when its terminating blank line arrived."""

    lines: list[str]
    at: float

    @property
    def comment(self) -> bool:
        return all(line.startswith(":") for line in self.lines)

    @property
    def kind(self) -> str | None:
        for line in self.lines:
            if line.startswith("event:"):
                return line[len("event:") :].lstrip(" ")
        return None

    @property
    def data(self) -> str | None:
        parts = [line[len("data:") :].removeprefix(" ") for line in self.lines if line.startswith("data:")]
        return "\n".join(parts) if parts else None

    def json(self) -> Any:
        return json.loads(self.data)

    def __repr__(self) -> str:
        return f"<Event {self.lines!r}>"


class EventStream:
    """A streaming POST /execute/stream read line by line over a plain socket."""

    def __init__(self, host: str, port: int, path: str, body: bytes, timeout: float,
                 headers: dict[str, str] | None = None) -> None:
        self.started = time.monotonic()
        self.conn = http.client.HTTPConnection(host, port, timeout=timeout)
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        self.conn.request("POST", path, body=body, headers=hdrs)
        self.sock = self.conn.sock
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.headers = self.resp.headers

    def body(self) -> bytes:
        return self.resp.read()

    def events(self, include_comments: bool = False) -> Iterator[Event]:
        assert self.status == 200, f"POST /execute/stream: {self.status} {self.resp.read()[:500]!r}"
        block: list[str] = []
        while True:
            line = self.resp.readline()
            if not line:
                assert not block, f"stream ended inside an event: {block!r}"
                return
            assert line.endswith(b"\n"), f"line without LF at end of stream: {line!r}"
            text = line[:-1].decode("utf-8")
            if text:
                block.append(text)
                continue
            if not block:
                continue
            event = Event(block, time.monotonic())
            block = []
            if event.comment and not include_comments:
                continue
            yield event

    def all(self, include_comments: bool = False) -> list[Event]:
        return list(self.events(include_comments))

    def close(self) -> None:
        """Drop the connection hard, as a client that goes away would."""
        sock = self.sock
        try:
            if sock is not None:
                import socket

                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.resp.close()
        self.conn.close()

    def __enter__(self) -> "EventStream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Api:
    """Client helpers bound to one server; every call has a client-side timeout."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.session = requests.Session()

    @property
    def base_url(self) -> str:
        return self.server.base_url  # current even after a crashed server was restarted

    def url(self, path: str) -> str:
        return self.base_url + path

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", CLIENT_TIMEOUT)
        return self.session.get(self.url(path), **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", CLIENT_TIMEOUT)
        return self.session.post(self.url(path), **kwargs)

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", CLIENT_TIMEOUT)
        return self.session.request(method, self.url(path), **kwargs)

    def raw(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
            timeout: float = CLIENT_TIMEOUT) -> RawResponse:
        """Send path byte-for-byte (no dot-segment removal, no re-encoding)."""
        conn = http.client.HTTPConnection(self.server.host, self.server.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return RawResponse(resp.status, resp.reason, resp.headers, resp.read())
        finally:
            conn.close()

    def execute(self, command: str, expect_status: int = 200, client_timeout: float = CLIENT_TIMEOUT,
                **fields: Any) -> dict[str, Any]:
        """POST /execute; fields (e.g. timeout=1) go into the JSON body."""
        resp = self.post("/execute", json={"command": command, **fields}, timeout=client_timeout)
        assert resp.status_code == expect_status, f"POST /execute {command!r}: {resp.status_code} {resp.text}"
        return resp.json()

    def stream(self, command: str | None = None, client_timeout: float = CLIENT_TIMEOUT,
               body: bytes | None = None, **fields: Any) -> EventStream:
        """POST /execute/stream; fields go into the JSON body, client_timeout bounds each read."""
        if body is None:
            body = json.dumps({"command": command, **fields}).encode()
        return EventStream(self.server.host, self.server.port, "/execute/stream", body, client_timeout)

    def upload(self, filename: str, content: bytes, expect_status: int | None = 200,
               timeout: float = CLIENT_TIMEOUT) -> requests.Response:
        resp = self.post("/upload", files={"file": (filename, content)}, timeout=timeout)
        if expect_status is not None:
            assert resp.status_code == expect_status, f"upload {filename!r}: {resp.status_code} {resp.text}"
        return resp


@pytest.fixture(scope="session")
def api(server: Server) -> Api:
    return Api(server)


@pytest.fixture
def make_api() -> Callable[[Server], Api]:
    return Api


@dataclass
class WorkDir:
    """A unique directory under the sandbox root for one test."""

    rel: str
    path: pathlib.Path | None  # None when the root is not visible from here

    def q(self, *parts: str) -> str:
        """URL path (percent-encoded per segment) of rel/parts."""
        return "/".join(urllib.parse.quote(p, safe="") for p in (self.rel, *parts))

    def join(self, *parts: str) -> str:
        return "/".join((self.rel, *parts))


@pytest.fixture
def workdir(request: pytest.FixtureRequest, server: Server, api: Api) -> Iterator[WorkDir]:
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name)[:40]
    rel = f"e2e-{name}-{uuid.uuid4().hex[:8]}"
    if server.root is not None:
        path = server.root / rel
        path.mkdir(parents=True)
    else:
        path = None
        api.execute(f"mkdir -p {rel}")
    yield WorkDir(rel, path)
    if path is not None:
        # rm copes with trees deeper than shutil.rmtree's recursion limit (a test makes ~2000 levels).
        subprocess.run(["rm", "-rf", "--", str(path)], timeout=60, check=False)
    else:
        api.execute(f"rm -rf {rel}")


@pytest.fixture
def root(server: Server) -> pathlib.Path:
    """The server root as seen from here; skips when it is not visible."""
    if server.root is None:
        pytest.skip("needs the server root on this machine (set SANDBOXD_ROOT)")
    return server.root


@pytest.fixture
def local_server(server: Server) -> Server:
    """The main server when its processes are in our /proc; skips otherwise."""
    if not server.local:
        pytest.skip("needs a server started by the suite (its pid and logs)")
    return server
