"""Issue 4, part 4: bearer-token auth (--token / --token-file / SANDBOX_API_TOKEN).

When set, every endpoint but `GET /` needs `Authorization: Bearer <token>`, otherwise 401 with
`WWW-Authenticate: Bearer`; an unauthenticated request has no effect (no command runs, no file is written).
When unset, nothing answers 401. Commands, which run as the server's user, can read neither the server's memory,
environment and descriptors nor the token.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import stat
import subprocess
import tempfile
import uuid
from typing import Iterator

import pytest
import requests

from conftest import Server, launch, proc_table, sandboxd_binary, stop, wait_until

from .support import RawConn, multipart_body, request_bytes

TOKEN = "s3cret"

# (method, path, body, content type): one request per endpoint, valid apart from the credentials. NAME is replaced
# by a per-test word, so whatever a request creates is recognisable.
ENDPOINTS = [
    ("POST", "/execute", b'{"command": "touch NAME-executed"}', "application/json"),
    ("POST", "/execute/stream", b'{"command": "touch NAME-streamed"}', "application/json"),
    ("POST", "/upload", None, "multipart"),
    ("GET", "/download/present.txt", b"", None),
    ("GET", "/list/.", b"", None),
    ("GET", "/exists/present.txt", b"", None),
    ("GET", "/v1/files/present.txt", b"", None),
    ("HEAD", "/v1/files/present.txt", b"", None),
    ("PUT", "/v1/files/NAME-put.txt", b"written", "application/octet-stream"),
    ("DELETE", "/v1/files/present.txt", b"", None),
    ("GET", "/v1/health", b"", None),
    ("GET", "/v1/metadata", b"", None),
    ("GET", "/metrics", b"", None),
    ("GET", "/openapi.json", b"", None),
]
ENDPOINT_IDS = [f"{m} {p}" for m, p, _, _ in ENDPOINTS]
BAD_CREDENTIALS = {
    "none": None,
    "wrong-token": f"Bearer {TOKEN}x",
    "token-prefix": f"Bearer {TOKEN[:-1]}",
    "wrong-scheme-basic": "Basic czNjcmV0",  # base64("s3cret")
    "wrong-scheme-token": f"Token {TOKEN}",
    "token-without-scheme": TOKEN,
    "empty-token": "Bearer ",
    "scheme-only": "Bearer",
}


def _endpoint(index: int, name: str, present: str = "present.txt") -> tuple[str, str, bytes, str | None]:
    method, path, body, ctype = ENDPOINTS[index]
    if ctype == "multipart":
        body, ctype = multipart_body(f"{name}-upload.txt", b"uploaded")
    return method, path.replace("NAME", name).replace("present.txt", present), \
        body.replace(b"NAME", name.encode()), ctype


def _start(tmp_path_factory, args: tuple[str, ...], env: dict[str, str] | None) -> Server:
    binary = sandboxd_binary()
    if not binary.is_file():
        pytest.skip(f"needs the sandboxd binary ({binary})")
    root = tmp_path_factory.mktemp("root-auth")
    (root / "present.txt").write_bytes(b"present")
    return launch(binary, root, args, env)


@pytest.fixture(scope="module", params=["flag", "env", "file"])
def protected(request, tmp_path_factory) -> Iterator[Server]:
    """A server whose token comes from --token, from SANDBOX_API_TOKEN, or from --token-file."""
    if request.param == "flag":
        srv = _start(tmp_path_factory, ("--token", TOKEN), None)
    elif request.param == "env":
        srv = _start(tmp_path_factory, (), {"SANDBOX_API_TOKEN": TOKEN})
    else:
        token_file = tmp_path_factory.mktemp("token") / "token"
        token_file.write_text(TOKEN + "\n")  # as `echo` or a Kubernetes secret writes it: the newline is dropped
        srv = _start(tmp_path_factory, ("--token-file", str(token_file)), None)
    yield srv
    stop(srv)


def _send(srv: Server, method: str, path: str, body: bytes, ctype: str | None, authorization: str | None):
    headers = {}
    if ctype:
        headers["Content-Type"] = ctype
    if authorization is not None:
        headers["Authorization"] = authorization
    with RawConn(srv) as conn:
        conn.send(request_bytes(method, path, body, headers))
        return conn.read_final_response(15, head=(method == "HEAD"))


def _no_side_effects(srv: Server) -> None:
    created = sorted(p.name for p in srv.root.glob("unauth-*"))
    assert not created, f"unauthenticated requests created {created}"
    assert (srv.root / "present.txt").read_bytes() == b"present", "an unauthenticated request changed present.txt"


@pytest.mark.parametrize("credentials", list(BAD_CREDENTIALS))
@pytest.mark.parametrize("index", range(len(ENDPOINTS)), ids=ENDPOINT_IDS)
def test_without_valid_token_is_401_with_challenge(protected, index, credentials):
    method, path, body, ctype = _endpoint(index, "unauth")
    resp = _send(protected, method, path, body, ctype, BAD_CREDENTIALS[credentials])
    assert resp.status == 401, f"{method} {path} with credentials {credentials}: {resp}"
    challenge = resp.headers.get("www-authenticate", "")
    assert challenge.lower().startswith("bearer"), f"WWW-Authenticate: {challenge!r}"
    _no_side_effects(protected)


@pytest.mark.parametrize("index", range(len(ENDPOINTS)), ids=ENDPOINT_IDS)
def test_with_the_token_every_endpoint_works(protected, index):
    method, path, body, ctype = _endpoint(index, "auth")
    if method == "DELETE":
        (protected.root / "to-delete.txt").write_bytes(b"x")
        path = "/v1/files/to-delete.txt"
    resp = _send(protected, method, path, body, ctype, f"Bearer {TOKEN}")
    assert resp.status != 401, f"{method} {path} with the right token: {resp}"
    if path not in ("/metrics", "/openapi.json"):  # routes being added; only their auth is checked here
        assert 200 <= resp.status < 300, f"{method} {path} with the right token: {resp}"


def test_get_root_needs_no_token(protected):
    for authorization in (None, "Bearer wrong", f"Bearer {TOKEN}"):
        resp = _send(protected, "GET", "/", b"", None, authorization)
        assert resp.status == 200, f"GET / with Authorization {authorization!r}: {resp}"
        assert resp.json() == {"status": "ok", "message": "Sandbox Runtime is active."}


def test_auth_scheme_is_case_insensitive(protected):
    """RFC 9110 §11.1: the scheme name is case-insensitive (the token itself is not)."""
    for scheme in ("bearer", "BEARER"):
        resp = _send(protected, "GET", "/exists/present.txt", b"", None, f"{scheme} {TOKEN}")
        assert resp.status == 200, f"Authorization: {scheme} {TOKEN}: {resp}"
    resp = _send(protected, "GET", "/exists/present.txt", b"", None, f"Bearer {TOKEN.upper()}")
    assert resp.status == 401, "the token was compared case-insensitively"


def test_unauthenticated_large_upload_is_refused_and_the_connection_recovers(protected):
    """A 5 MiB upload without a token: 401, nothing written, and the server does not wedge."""
    body, ctype = multipart_body("unauth-large.bin", os.urandom(5 * 1024 * 1024))
    with RawConn(protected) as conn:
        conn.send(request_bytes("POST", "/upload", body, {"Content-Type": ctype}))
        resp = conn.read_final_response(15)
    assert resp.status == 401, resp
    _no_side_effects(protected)
    assert requests.get(protected.base_url + "/", timeout=5).status_code == 200


def test_flag_wins_over_env(start_server):
    srv = start_server("--token", TOKEN, env={"SANDBOX_API_TOKEN": "from-env"})
    ok = requests.get(srv.base_url + "/list/.", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    env = requests.get(srv.base_url + "/list/.", headers={"Authorization": "Bearer from-env"}, timeout=10)
    assert (ok.status_code, env.status_code) == (200, 401), (ok.text[:200], env.text[:200])


@pytest.mark.parametrize("authorization", [None, "Bearer whatever", "Basic Zm9vOmJhcg=="])
@pytest.mark.parametrize("index", range(len(ENDPOINTS)), ids=ENDPOINT_IDS)
def test_without_token_configured_nothing_is_401(server, api, index, authorization):
    """No --token, no SANDBOX_API_TOKEN: exactly the reference's behaviour, whatever Authorization says."""
    if "SANDBOX_API_TOKEN" in os.environ:
        pytest.skip("SANDBOX_API_TOKEN is set in this environment, so the main server has a token")
    name = f"noauth-{uuid.uuid4().hex[:8]}"
    if server.root is None:
        pytest.skip("needs the server root on this machine")
    (server.root / f"{name}.txt").write_bytes(b"present")
    method, path, body, ctype = _endpoint(index, name, present=f"{name}.txt")
    resp = _send(server, method, path, body, ctype, authorization)
    assert resp.status != 401, f"{method} {path} on a server without a token: {resp}"
    assert "www-authenticate" not in resp.headers
    for leftover in server.root.glob(f"{name}*"):
        leftover.unlink()


def test_token_file_and_token_exclude_each_other_and_an_empty_file_is_refused(tmp_path):
    binary = sandboxd_binary()
    if not binary.is_file():
        pytest.skip(f"needs the sandboxd binary ({binary})")
    token_file = tmp_path / "token"
    token_file.write_text("abc\n")
    both = subprocess.run([str(binary), "--port", "0", "--root", str(tmp_path), "--token", "x", "--token-file",
                           str(token_file)], capture_output=True, text=True, timeout=20)
    assert both.returncode != 0 and "--token-file" in both.stderr, both
    token_file.write_text("\n")
    empty = subprocess.run([str(binary), "--port", "0", "--root", str(tmp_path), "--token-file", str(token_file)],
                           capture_output=True, text=True, timeout=20)
    assert empty.returncode != 0 and "token-file" in empty.stderr, empty


# ==========================================================================
# commands cannot read the server

# Run by the server as a command: what the command can get of its parent (the server). Prints JSON.
PROBE = r"""
import ctypes, json, os, sys
token = sys.argv[1].encode()
parent = os.getppid()
out = {}
for name in ("mem", "environ", "maps"):
    try:
        # The permission check of these files happens at open (ptrace access to the process).
        with open(f"/proc/{parent}/{name}", "rb") as f:
            out[name] = "opened"
            if name == "environ":
                out["environ_has_token"] = token in f.read()
    except OSError as error:
        out[name] = error.errno
try:
    os.listdir(f"/proc/{parent}/fd")
    out["fd"] = "listed"
except OSError as error:
    out["fd"] = error.errno
with open(f"/proc/{parent}/cmdline", "rb") as f:
    out["cmdline_has_token"] = token in f.read()
libc = ctypes.CDLL(None, use_errno=True)
pidfd = libc.syscall(434, parent, 0)  # pidfd_open
out["pidfd_open"] = pidfd >= 0 or ctypes.get_errno()
taken, errors = [], set()
for fd in range(64):
    got = libc.syscall(438, pidfd, fd, 0)  # pidfd_getfd
    if got >= 0:
        taken.append(fd)
        os.close(got)
    else:
        errors.add(ctypes.get_errno())
out["pidfd_getfd_taken"] = taken
out["pidfd_getfd_errors"] = sorted(errors)
with open("/proc/self/environ", "rb") as f:
    out["own_environ_readable"] = len(f.read()) > 0
print(json.dumps(out))
"""

NOBODY = 65534


@pytest.mark.deadline(60)
@pytest.mark.parametrize("source", ["flag", "env", "file"])
def test_a_command_of_the_servers_user_can_read_neither_its_memory_nor_its_token_nor_its_sockets(source, tmp_path):
    """sandboxd runs as a non-root user (here nobody, through setpriv; as is when the tests run unprivileged), and
    so do its commands: /proc/<server>/mem, environ and maps cannot be opened, its descriptors cannot be listed or
    taken with pidfd_getfd, and its command line does not hold the token, however the token was given."""
    binary = sandboxd_binary()
    if not binary.is_file():
        pytest.skip(f"needs the sandboxd binary ({binary})")
    if shutil.which("python3") is None:
        pytest.skip("the probe is a python3 script")
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: cannot run the server as another user")
        user = NOBODY
        wrapper = tmp_path / "sandboxd-as-nobody"
        wrapper.write_text(f'#!/bin/sh\nexec setpriv --reuid={user} --regid={user} --clear-groups "{binary}" "$@"\n')
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
        command = wrapper
    else:
        user, command = os.geteuid(), binary
    # Outside pytest's private temporary directory, which the other user cannot enter.
    root = pathlib.Path(tempfile.mkdtemp(prefix="sandboxd-nobody-"))
    token = f"s3cret-{uuid.uuid4().hex}"
    try:
        os.chmod(root, 0o755)
        if os.geteuid() == 0:
            os.chown(root, user, user)
        (root / "probe.py").write_text(PROBE)
        args: tuple[str, ...] = ()
        env = None
        if source == "flag":
            args = ("--token", token)
        elif source == "env":
            env = {"SANDBOX_API_TOKEN": token}
        else:
            token_file = root / "token"
            token_file.write_text(token + "\n")
            os.chmod(token_file, 0o600)
            if os.geteuid() == 0:
                os.chown(token_file, user, user)
            args = ("--token-file", str(token_file))
        srv = launch(command, root, args, env)
        try:
            assert pathlib.Path(f"/proc/{srv.pid}").stat().st_uid in (0, user)
            status = pathlib.Path(f"/proc/{srv.pid}/status").read_text()
            assert f"Uid:\t{user}\t{user}" in status, "the server does not run as the unprivileged user"
            resp = requests.post(srv.base_url + "/execute", headers={"Authorization": f"Bearer {token}"}, timeout=20,
                                 json={"command": f"python3 probe.py {token}"})
            assert resp.status_code == 200 and resp.json()["exit_code"] == 0, resp.text
            seen = json.loads(resp.json()["stdout"])
        finally:
            stop(srv)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    problems = [f"/proc/<server>/{name} could be opened" for name in ("mem", "environ", "maps")
                if seen[name] == "opened"]
    if seen["fd"] == "listed":
        problems.append("the server's descriptors could be listed")
    if seen["pidfd_getfd_taken"]:
        problems.append(f"pidfd_getfd took the server's descriptors {seen['pidfd_getfd_taken']}")
    if seen["cmdline_has_token"]:
        problems.append("the token is in the server's command line")
    if seen.get("environ_has_token"):
        problems.append("the token is in the server's environment")
    assert not problems, f"{problems}; probe saw {seen}"
    assert seen["mem"] == seen["environ"] == seen["maps"] == seen["fd"] == 13, seen  # EACCES, not another failure
    assert seen["pidfd_open"] is True and seen["pidfd_getfd_errors"] == [1], seen  # EPERM for every descriptor
    assert seen["own_environ_readable"], "the command itself is not dumpable: it cannot read its own /proc files"


def test_as_pid_1_the_server_ignores_signals_from_its_commands_and_obeys_those_from_outside(tmp_path):
    """Commands run as the server's user, so the kernel lets them signal it. As a container's PID 1 (the image's
    entrypoint) sandboxd stops only for a SIGTERM or SIGINT from outside its pid namespace; the kernel drops a
    SIGKILL or SIGSTOP from inside it."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare (util-linux) for a pid namespace")
    binary = sandboxd_binary()
    if not binary.is_file():
        pytest.skip(f"needs the sandboxd binary ({binary})")
    wrapper = tmp_path / "sandboxd-pid1"
    # A pid namespace with its own /proc; unshare waits for sandboxd (its child, PID 1 inside) and exits with its
    # status.
    wrapper.write_text(f'#!/bin/sh\nexec unshare --pid --fork --mount-proc "{binary}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    root = tmp_path / "root"
    root.mkdir()
    srv = launch(wrapper, root)
    try:
        answer = requests.post(
            f"{srv.base_url}/execute",
            json={"command": "sh -c 'kill -TERM 1; kill -INT 1; kill -KILL 1; kill -STOP 1; echo still here'"},
            timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["stdout"] == "still here\n"
        assert requests.get(f"{srv.base_url}/", timeout=5).status_code == 200
        assert srv.proc.poll() is None, srv.log_tail()
        assert srv.wait_for_log(r"ignored signal 15 from pid \d+"), srv.log_tail()

        inside = wait_until(lambda: [pid for pid, (ppid, _) in proc_table().items() if ppid == srv.pid], 5)
        assert inside, "sandboxd is not unshare's child"
        os.kill(inside[0], signal.SIGTERM)
        assert srv.proc.wait(timeout=15) == 0, srv.log_tail()
        assert "received signal 15, shutting down" in srv.logs()
    finally:
        stop(srv, expect_clean=False)
