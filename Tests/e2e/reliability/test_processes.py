"""Issue 4, part 1: process lifecycle.

Orphans are reaped (as subreaper and as a real PID 1) without stealing the exit status of the commands sandboxd
waits for; timeout and client disconnect kill every descendant, also those that left the process group or the
session; commands never see the auth token.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from conftest import ENV_MARKER, launch, sandboxd_binary, stop, wait_until

from .support import (
    RawConn,
    children,
    kill_matching,
    live_matching,
    proc_snapshot,
    record_figures,
    request_bytes,
    unique_sleep,
    zombie_children,
)


def _execute_many(base_url: str, commands: list[str], workers: int = 8, headers: dict | None = None) -> list:
    """POST /execute for every command (a few at a time); returns (status, body) in order."""
    local = threading.local()

    def run(command: str) -> tuple[int, dict | str]:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        resp = session.post(base_url + "/execute", json={"command": command, "timeout": 30}, headers=headers,
                            timeout=30)
        try:
            return resp.status_code, resp.json()
        except ValueError:
            return resp.status_code, resp.text[:300]

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(run, commands))


def _describe(procs) -> list[str]:
    return [f"{p.pid} state={p.state} ppid={p.ppid} {p.cmdline!r}" for p in procs]


# ==========================================================================
# reaping


@pytest.mark.deadline(60)
def test_thousand_orphan_producing_runs_leave_no_zombie(start_server):
    """1,000 × `sh -c 'sleep 0 & true'` through /execute (8 at a time): each answers exit 0, and afterwards the
    server has no child at all: no zombie, nothing re-parented to it and left."""
    srv = start_server()
    peak_zombies = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal peak_zombies
        while not done.is_set():
            peak_zombies = max(peak_zombies, len(zombie_children(srv.pid)))
            done.wait(0.2)

    watcher = threading.Thread(target=watch)
    watcher.start()
    started = time.monotonic()
    try:
        results = _execute_many(srv.base_url, ["sh -c 'sleep 0 & true'"] * 1000)
    finally:
        done.set()
        watcher.join(5)
    elapsed = time.monotonic() - started
    wrong = [(i, r) for i, r in enumerate(results)
             if r[0] != 200 or not isinstance(r[1], dict) or r[1].get("exit_code") != 0 or r[1].get("timed_out")]
    assert not wrong, f"{len(wrong)} of 1000 runs did not answer 200 with exit_code 0; first: {wrong[:5]}"
    settled = wait_until(lambda: not children(srv.pid), 5.0, 0.1)
    record_figures("orphan_runs", {"runs": 1000, "seconds": round(elapsed, 2), "peak_zombie_children": peak_zombies})
    assert settled, (f"children of sandboxd 5 s after the runs (zombies are not reaped, or orphans left): "
                     f"{_describe(children(srv.pid))[:20]}")


@pytest.mark.deadline(60)
def test_reaping_orphans_never_steals_or_mixes_exit_statuses(start_server):
    """Commands whose orphans exit at the same moment as they do: every answer carries its own command's status."""
    srv = start_server()
    commands = []
    for i in range(300):
        code = i % 7
        # Alternate a plain background child with a double fork (the orphan is re-parented to sandboxd at once).
        commands.append(f"sh -c 'sleep 0 & exit {code}'" if i % 2 else f"sh -c '(sleep 0 &) ; exit {code}'")
    results = _execute_many(srv.base_url, commands)
    wrong = [(commands[i], r) for i, r in enumerate(results)
             if r[0] != 200 or not isinstance(r[1], dict) or r[1].get("exit_code") != i % 7]
    assert not wrong, f"{len(wrong)} of 300 answers carry another exit status than their command's; {wrong[:5]}"
    assert wait_until(lambda: not children(srv.pid), 5.0, 0.1), _describe(children(srv.pid))


ORPHANS = {
    # a double fork: the orphan stays in the command's process group
    "group": "(sleep {duration} >/dev/null 2>&1 &)",
    # a double fork into a new session: the orphan left the group
    "setsid": "(setsid sleep {duration} >/dev/null 2>&1 &)",
    # and cleared its environment too: nothing in it names its command
    "setsid-env-i": "(setsid env -i sleep {duration} >/dev/null 2>&1 &)",
}


@pytest.mark.deadline(30)
@pytest.mark.parametrize("kind", list(ORPHANS))
def test_orphans_stay_in_their_command_while_it_lives_and_die_with_it(start_server, kind):
    """Each command's main process is a child subreaper: an orphan of its tree is re-parented to it (not to
    sandboxd) while it lives, whatever session or environment the orphan chose. When the main process exits the
    orphan reaches sandboxd (a subreaper too) and is killed and reaped: no child of the server is left, zombie or
    alive."""
    srv = start_server()
    duration = unique_sleep(300)
    script = ORPHANS[kind].format(duration=duration) + "; read line; exit 0"
    started = requests.post(srv.base_url + "/v1/processes", timeout=20,
                            json={"command": ["sh", "-c", script], "stdin": True})
    assert started.status_code == 201, started.text
    process = started.json()
    sleeps = lambda: [pid for pid, cmd in live_matching(f"sleep {duration}").items() if cmd.startswith("sleep")]
    try:
        orphan = wait_until(sleeps, 5.0)
        assert orphan, "the orphan did not start"
        (orphan_pid,) = orphan
        assert proc_snapshot()[orphan_pid].ppid == process["pid"], (
            f"the orphan was re-parented to {proc_snapshot()[orphan_pid].ppid}, not to its command's main process "
            f"{process['pid']} (sandboxd is {srv.pid})")
        assert requests.delete(f"{srv.base_url}/v1/processes/{process['id']}/stdin", timeout=10).status_code == 204
        waited = requests.get(f"{srv.base_url}/v1/processes/{process['id']}/wait?timeout=10", timeout=20).json()
        assert waited["status"] == "exited" and waited["exit_code"] == 0, waited
        gone = wait_until(lambda: not sleeps() and not children(srv.pid), 2.0, 0.02)
        assert gone, (f"2 s after its command exited: orphan {sleeps()}, "
                      f"children of sandboxd {_describe(children(srv.pid))}")
    finally:
        kill_matching(f"sleep {duration}")


@pytest.mark.deadline(60)
def test_as_real_pid1_in_a_pid_namespace_orphans_are_reaped(tmp_path_factory):
    """sandboxd as PID 1 of a new PID namespace (as in a container), with its own /proc: orphans land on it
    whatever the subreaper flag, and after 300 orphan-producing runs none is left, zombie or alive."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create a PID namespace")
    binary = sandboxd_binary()
    if not binary.is_file():
        pytest.skip(f"needs the sandboxd binary ({binary})")
    root = tmp_path_factory.mktemp("root-pid1")
    wrapper = tmp_path_factory.mktemp("pid1") / "sandboxd-as-pid1"
    wrapper.write_text(f'#!/bin/sh\nexec unshare --pid --fork --mount-proc --kill-child "{binary}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    srv = launch(wrapper, root)
    try:
        inner = [p for p in children(srv.pid) if p.state != "Z"]
        assert len(inner) == 1, f"expected unshare's one child (sandboxd): {_describe(inner)}"
        pid = inner[0].pid
        with open(f"/proc/{pid}/status") as f:
            nspid = next(line for line in f if line.startswith("NSpid:")).split()[1:]
        assert nspid[-1] == "1", f"sandboxd is not PID 1 in its namespace: NSpid {nspid}"
        duration = unique_sleep(0)  # 0.xxxxxxx s
        commands = ["sh -c 'sleep 0 & true'" if i % 3 else f"sh -c '(sleep {duration} &) ; true'" for i in range(300)]
        results = _execute_many(srv.base_url, commands)
        wrong = [r for r in results if r[0] != 200 or not isinstance(r[1], dict) or r[1].get("exit_code") != 0]
        assert not wrong, f"{len(wrong)} runs did not answer exit_code 0 as PID 1: {wrong[:5]}"
        settled = wait_until(lambda: not children(pid), 5.0, 0.1)
        assert settled, f"children of sandboxd (PID 1) after the runs: {_describe(children(pid))[:20]}"
        os.kill(pid, signal.SIGTERM)  # unshare does not forward signals; it exits with its child's status
        try:
            code = srv.proc.wait(timeout=10)
        except Exception:
            code = None
        assert code == 0, f"sandboxd as PID 1 exited with {code} on SIGTERM\n{srv.log_tail()}"
    finally:
        stop(srv, expect_clean=False)


# ==========================================================================
# timeout and disconnect kill every descendant, also escaped ones

ESCAPES = {
    # a background child that starts a new session (and so a new process group)
    "setsid": "setsid sleep {escaped} & sleep {main}",
    # nohup: ignores SIGHUP, output away from the pipes
    "nohup": "nohup sleep {escaped} >/dev/null 2>&1 & sleep {main}",
    # double fork into a new session: the daemon's parent exits, it is re-parented away from the command
    "double-fork": "(setsid sleep {escaped} &) ; sleep {main}",
    # a new session and an empty environment: nothing in it names its command
    "setsid-env-i": "setsid env -i sleep {escaped} & sleep {main}",
    # all of it: double fork, new session, empty environment
    "double-fork-env-i": "(env -i setsid sleep {escaped} &) ; sleep {main}",
}
ESCAPE_BASES = {"setsid": 300, "nohup": 301, "double-fork": 302, "setsid-env-i": 304, "double-fork-env-i": 305}


def _escape_command(kind: str, prefix: str = "") -> tuple[str, str, str]:
    escaped, main = unique_sleep(ESCAPE_BASES[kind]), unique_sleep(300)
    script = prefix + ESCAPES[kind].format(escaped=escaped, main=main)
    return f"sh -c '{script}'", escaped, main


def _assert_tree_gone(escaped: str, main: str, deadline: float, what: str) -> float:
    """Wait until neither sleep is alive anywhere in /proc; kill leftovers and fail if they outlive deadline."""
    started = time.monotonic()
    gone = wait_until(lambda: not live_matching(f"sleep {escaped}") and not live_matching(f"sleep {main}"),
                      deadline, 0.05)
    left = kill_matching(f"sleep {escaped}", f"sleep {main}")
    assert gone, f"{what}: still running {deadline:.0f}s later: {left}"
    return time.monotonic() - started


def _wait_started(escaped: str, main: str) -> None:
    started = wait_until(lambda: live_matching(f"sleep {escaped}") and live_matching(f"sleep {main}"), 5.0)
    if not started:
        kill_matching(f"sleep {escaped}", f"sleep {main}")
    assert started, "the command tree did not start"


@pytest.mark.deadline(30)
@pytest.mark.parametrize("kind", list(ESCAPES))
def test_timeout_kills_descendants_that_escaped_the_group(api, local_server, kind):
    command, escaped, main = _escape_command(kind)
    try:
        body = api.execute(command, client_timeout=20, timeout=1)
        assert body["exit_code"] == 124 and body["timed_out"] is True, body
    finally:
        _assert_tree_gone(escaped, main, 5.0, f"timeout 1 on {command!r}")


@pytest.mark.deadline(30)
@pytest.mark.parametrize("kind", list(ESCAPES))
def test_execute_disconnect_kills_descendants_that_escaped_the_group(local_server, kind):
    command, escaped, main = _escape_command(kind)
    conn = RawConn(local_server)
    try:
        conn.send(request_bytes("POST", "/execute", json.dumps({"command": command}).encode(),
                                {"Content-Type": "application/json"}))
        _wait_started(escaped, main)
    finally:
        conn.abort()
    _assert_tree_gone(escaped, main, 5.0, f"client of /execute {command!r} went away")


@pytest.mark.deadline(40)
@pytest.mark.parametrize("kind", list(ESCAPES))
def test_stream_disconnect_kills_descendants_that_escaped_the_group(api, local_server, kind):
    command, escaped, main = _escape_command(kind, prefix="echo started; ")
    with api.stream(command, client_timeout=10) as s:
        first = next(s.events())
        assert first.kind == "stdout" and first.data == "started", first
        _wait_started(escaped, main)
    took = _assert_tree_gone(escaped, main, 20.0, f"client of /execute/stream {command!r} went away")
    assert took < 5.0, f"the tree was killed only {took:.1f}s after the stream client left"


@pytest.mark.deadline(30)
@pytest.mark.parametrize("kind", list(ESCAPES))
def test_delete_of_a_running_process_kills_descendants_that_escaped_the_group(local_server, kind):
    command, escaped, main = _escape_command(kind)
    base = local_server.base_url
    try:
        started = requests.post(base + "/v1/processes", json={"command": command, "shell": False}, timeout=10)
        assert started.status_code == 201, started.text
        _wait_started(escaped, main)
        assert requests.delete(f"{base}/v1/processes/{started.json()['id']}", timeout=10).status_code == 204
    finally:
        _assert_tree_gone(escaped, main, 2.0, f"DELETE of {command!r}")


@pytest.mark.deadline(40)
def test_shutdown_kills_a_daemon_that_also_cleared_its_environment(start_server):
    """The hardest escape: double fork, new session, and `env -i`. The timeout kills it already; shutdown, which
    ends every child of sandboxd and their descendants, would too."""
    srv = start_server("--shutdown-timeout", "1")
    escaped, main = unique_sleep(303), unique_sleep(300)
    command = f"sh -c '(env -i setsid sleep {escaped} &) ; sleep {main}'"
    try:
        body = requests.post(srv.base_url + "/execute", json={"command": command, "timeout": 1}, timeout=20).json()
        assert body["exit_code"] == 124 and body["timed_out"] is True, body
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(timeout=20) == 0
    finally:
        _assert_tree_gone(escaped, main, 5.0, f"shutdown after {command!r}")


# ==========================================================================
# the token never reaches commands

SECRET_COMMANDS = ["env", "cat /proc/self/environ", "sh -c 'sh -c env'"]


@pytest.mark.parametrize("source", ["flag", "env", "flag-and-env"])
def test_commands_never_see_the_token(start_server, source):
    token = f"s3cret{uuid.uuid4().hex[:8]}"
    env_token = f"s3cretenv{uuid.uuid4().hex[:8]}"
    if source == "flag":
        srv, valid, secrets = start_server("--token", token), token, [token]
    elif source == "env":
        srv, valid, secrets = start_server(env={"SANDBOX_API_TOKEN": env_token}), env_token, [env_token]
    else:
        srv, valid, secrets = start_server("--token", token, env={"SANDBOX_API_TOKEN": env_token}), token, \
            [token, env_token]
    headers = {"Authorization": f"Bearer {valid}"}
    for command in SECRET_COMMANDS:
        resp = requests.post(srv.base_url + "/execute", json={"command": command}, headers=headers, timeout=20)
        assert resp.status_code == 200, f"{command!r} with a valid token: {resp.status_code} {resp.text[:300]}"
        out = resp.json()["stdout"]
        assert ENV_MARKER[0] in out, f"{command!r} did not print the environment: {out[:300]!r}"
        for secret in secrets:
            assert secret not in out, f"{command!r} sees the token"
        assert "SANDBOX_API_TOKEN" not in out, f"{command!r} sees SANDBOX_API_TOKEN"
    resp = requests.post(srv.base_url + "/execute/stream", json={"command": "env"}, headers=headers, timeout=20)
    assert resp.status_code == 200, f"/execute/stream env with a valid token: {resp.status_code} {resp.text[:300]}"
    assert ENV_MARKER[0] in resp.text
    for secret in [*secrets, "SANDBOX_API_TOKEN"]:
        assert secret not in resp.text, f"a streamed `env` shows {secret}"
