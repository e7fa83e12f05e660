"""Issue 4, part 3: graceful shutdown.

On SIGTERM/SIGINT sandboxd stops accepting, lets running requests finish for up to --shutdown-timeout, then sends
SIGTERM and later SIGKILL to the command trees still running, answers every waiting client, exits 0, and leaves
no process behind.
"""

from __future__ import annotations

import random
import signal
import socket
import threading
import time

import pytest
import requests

from conftest import wait_until

from .support import (
    RawConn,
    kill_matching,
    live_matching,
    record_figures,
    request_bytes,
    unique_sleep,
)


def _refuses_connections(srv) -> bool:
    try:
        sock = socket.create_connection((srv.host, srv.port), timeout=1)
    except (ConnectionRefusedError, ConnectionResetError):
        return True
    except OSError:
        return False
    sock.close()
    return False


class Call(threading.Thread):
    """POST /execute on its own thread; keeps the response or the exception."""

    def __init__(self, srv, command: str) -> None:
        super().__init__(daemon=True)
        self.srv, self.command = srv, command
        self.response: requests.Response | None = None
        self.error: Exception | None = None
        self.finished_at: float | None = None
        self.start()

    def run(self) -> None:
        try:
            self.response = requests.post(self.srv.base_url + "/execute", json={"command": self.command}, timeout=40)
        except Exception as error:
            self.error = error
        self.finished_at = time.monotonic()

    def outcome(self) -> str:
        if self.response is not None:
            return f"{self.response.status_code} {self.response.text[:300]}"
        return f"no response: {self.error!r}"


@pytest.mark.deadline(60)
def test_sigterm_drains_running_work_then_ends_command_trees(start_server):
    srv = start_server("--shutdown-timeout", "3")
    term_trap, stubborn, streamed = unique_sleep(300), unique_sleep(300), unique_sleep(300)
    short = f"2.0{random.randrange(10**5, 10**6)}"  # ends before the 3 s shutdown timeout
    sleeps = [f"sleep {d}" for d in (term_trap, stubborn, streamed, short)]
    health = RawConn(srv, timeout=5)
    health.send(request_bytes("GET", "/v1/health"))
    health_before = health.read_final_response(5).status
    trapped = stubborn_call = finishing = None
    stream = None
    try:
        # records when SIGTERM reaches it, then exits; its background sleep is in its process group
        trapped = Call(srv, f"sh -c 'trap \"date +%s.%N > term-received; exit 143\" TERM; sleep {term_trap} & wait'")
        stubborn_call = Call(srv, f"sh -c 'trap \"\" TERM; exec sleep {stubborn}'")  # needs SIGKILL
        finishing = Call(srv, f"sh -c 'sleep {short}; echo finished'")
        stream = requests.post(srv.base_url + "/execute/stream", stream=True, timeout=40,
                               json={"command": f"sh -c 'echo up; exec sleep {streamed}'"})
        assert stream.status_code == 200
        lines = stream.iter_lines(decode_unicode=True)
        assert "data: up" in [next(lines), next(lines)], "the stream did not start"
        running = wait_until(lambda: all(live_matching(s) for s in sleeps), 5.0)
        assert running, f"not all commands started: {[(s, bool(live_matching(s))) for s in sleeps]}"

        signalled_wall, signalled = time.time(), time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)

        refused = wait_until(lambda: _refuses_connections(srv), 1.5, 0.05)
        health_during = None
        if health_before == 200:
            health.send(request_bytes("GET", "/v1/health"))
            try:
                health_during = health.read_final_response(3).status
            except Exception as error:
                health_during = repr(error)
        rest = list(lines)
        finishing.join(10)
        trapped.join(15)
        stubborn_call.join(15)
        try:
            code = srv.proc.wait(timeout=15)
        except Exception:
            code = None
        exited_after = time.monotonic() - signalled
    finally:
        health.close()
        if stream is not None:
            stream.close()
        left = kill_matching(*sleeps)
    events = [line.split(":", 1)[1].strip() for line in rest if line.startswith("event:")]
    term_file = srv.root / "term-received"
    term_at = float(term_file.read_text()) - signalled_wall if term_file.exists() else None
    record_figures("shutdown", {"exit_code": code, "exit_seconds_after_sigterm": round(exited_after, 2),
                                "command_sigterm_seconds_after_sigterm": term_at and round(term_at, 2),
                                "health_during_shutdown": health_during})

    problems = []
    if not refused:
        problems.append("new connections were still accepted 1.5 s after SIGTERM")
    if health_before == 200 and health_during != 503:
        problems.append(f"GET /v1/health on an open connection during shutdown answered {health_during}, not 503")
    ok = finishing.response is not None and finishing.response.status_code == 200 and \
        finishing.response.json() == {"stdout": "finished\n", "stderr": "", "exit_code": 0, "timed_out": False}
    if not ok:
        problems.append(f"the 2 s command did not finish normally during the grace: {finishing.outcome()}")
    elif finishing.finished_at - signalled > 3.0:
        problems.append(f"the 2 s command was answered {finishing.finished_at - signalled:.1f}s after SIGTERM")
    for name, call in (("trap-TERM command", trapped), ("TERM-ignoring command", stubborn_call)):
        if call.response is None:
            problems.append(f"the client of the {name} got no response: {call.error!r}")
    if term_at is None:
        problems.append("the command that traps TERM never received SIGTERM (killed outright, or not at all)")
    elif not 2.5 <= term_at <= 6.0:
        problems.append(f"the command got SIGTERM {term_at:.2f}s after the server did (shutdown timeout 3 s)")
    if not events or events[-1] != "done":
        problems.append(f"the open stream did not end with `done`: events {events}")
    if code != 0:
        problems.append(f"sandboxd exited with {code} (None = still running 15 s later)")
    elif exited_after > 3.0 + 10.0:
        problems.append(f"sandboxd took {exited_after:.1f}s to exit")
    if left:
        problems.append(f"commands left running after sandboxd exited: {left}")
    details = (f"\n  trap-TERM command: {trapped.outcome()}\n  TERM-ignoring command: {stubborn_call.outcome()}"
               f"\n  2 s command: {finishing.outcome()}\n  stream tail: {rest[-6:]}")
    assert not problems, "\n".join(problems) + details


@pytest.mark.deadline(30)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_idle_server_exits_at_once(start_server, sig):
    """Nothing running, one idle keep-alive connection open: exit 0 well before the shutdown timeout."""
    srv = start_server("--shutdown-timeout", "10")
    with RawConn(srv) as idle:
        idle.send(request_bytes("GET", "/"))
        assert idle.read_final_response(5).status == 200
        started = time.monotonic()
        srv.proc.send_signal(sig)
        try:
            code = srv.proc.wait(timeout=15)
        except Exception:
            code = None
        elapsed = time.monotonic() - started
    assert code == 0, f"exit code {code} after {sig.name}"
    assert elapsed < 2.0, f"an idle server took {elapsed:.1f}s to exit on {sig.name}"


@pytest.mark.deadline(30)
def test_shutdown_ends_when_the_work_does(start_server):
    """With --shutdown-timeout 10 and one 1 s command running, sandboxd exits right after that command, answered."""
    srv = start_server("--shutdown-timeout", "10")
    duration = f"1.0{random.randrange(10**5, 10**6)}"
    call = Call(srv, f"sh -c 'sleep {duration}; echo ok'")
    assert wait_until(lambda: live_matching(f"sleep {duration}"), 5.0), "the command did not start"
    started = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    try:
        code = srv.proc.wait(timeout=15)
    except Exception:
        code = None
    elapsed = time.monotonic() - started
    call.join(10)
    assert call.response is not None and call.response.status_code == 200, call.outcome()
    assert call.response.json()["stdout"] == "ok\n" and call.response.json()["exit_code"] == 0, call.outcome()
    assert code == 0, f"exit code {code}"
    assert elapsed < 3.0, f"sandboxd took {elapsed:.1f}s to exit; its only command ended after ~1 s"
