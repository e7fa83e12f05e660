"""End-to-end tests of the v1 processes API: processes as resources, their event streams, stdin, signals and PTYs.

Every request has a client timeout, every read of an event stream a socket timeout and every wait a deadline;
nothing sleeps to synchronise. Each test deletes the processes it started (which kills their trees), so the
suite's check that no process is left under sandboxd holds.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import random
import socket
import threading
import time
from typing import Any, Iterator

import pytest
import requests

from conftest import Api, descendants, processes_matching, wait_until

READ_TIMEOUT = 20.0  # seconds one read of an event stream may block
MiB = 1024 * 1024


# --------------------------------------------------------------------------
# helpers


class Events:
    """GET /v1/processes/{id}/events read event by event over a plain socket."""

    def __init__(self, api: Api, pid: str, query: str = "", headers: dict[str, str] | None = None,
                 timeout: float = READ_TIMEOUT, receive_buffer: int | None = None) -> None:
        server = api.server
        self.conn = http.client.HTTPConnection(server.host, server.port, timeout=timeout)
        if receive_buffer is not None:
            self.conn.connect()
            self.conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.conn.request("GET", f"/v1/processes/{pid}/events{query}", headers=headers or {})
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.comments: list[str] = []
        # Keep-alive comments arrive every 15 s, so a per-read timeout alone would never fire on a stuck stream.
        self.deadline = time.monotonic() + timeout
        self.read: list[dict[str, Any]] = []

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Events as {"event", "id", "data"}; comments are collected in self.comments."""
        assert self.status == 200, f"events: {self.status} {self.resp.read()[:300]!r}"
        assert self.resp.headers["Content-Type"].startswith("text/event-stream")
        fields: dict[str, Any] = {}
        while True:
            left = self.deadline - time.monotonic()
            assert left > 0, f"event stream still open after its deadline; last events: {self.read[-5:]}"
            self.conn.sock.settimeout(left)
            try:
                line = self.resp.readline()
            except TimeoutError:
                raise AssertionError(f"no event within the stream's deadline; last events: {self.read[-5:]}")
            if not line:
                assert not fields, f"stream ended inside an event: {fields}"
                return
            text = line.decode("utf-8").rstrip("\n")
            if text.startswith(":"):
                self.comments.append(text[1:].strip())
            elif text:
                name, _, value = text.partition(":")
                value = value.removeprefix(" ")
                fields[name] = fields.get(name, "") + ("\n" if name in fields else "") + value
            elif fields:
                event = {"event": fields.get("event"), "id": fields.get("id"), "data": fields.get("data")}
                if event["id"] is not None:
                    event["id"] = int(event["id"])
                fields = {}
                self.read.append(event)
                yield event

    def until(self, predicate, limit: int = 100000) -> list[dict[str, Any]]:
        """Events up to and including the first that satisfies predicate (or the end of the stream)."""
        seen = []
        for event in self:
            seen.append(event)
            if predicate(event) or len(seen) >= limit:
                break
        return seen

    def until_text(self, needle: str, kind: str = "stdout", end: bool = False) -> list[dict[str, Any]]:
        """Events until the text of `kind` read by this call contains needle (ends with it, with end=True).
        Output comes in chunks as the process writes it: a prompt may arrive one byte per event."""
        seen: list[dict[str, Any]] = []
        for event in self:
            seen.append(event)
            text = text_of(seen, kind)
            if (text.endswith(needle) if end else needle in text) or is_exit(event):
                break
        return seen

    def all(self) -> list[dict[str, Any]]:
        return list(self)

    def close(self) -> None:
        try:
            if self.conn.sock is not None:
                self.conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.resp.close()
        self.conn.close()

    def __enter__(self) -> "Events":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def text_of(events: list[dict[str, Any]], kind: str = "stdout") -> str:
    return "".join(json.loads(e["data"]) for e in events if e["event"] == kind)


def is_exit(event: dict[str, Any]) -> bool:
    return event["event"] == "exit"


def sleep_marker() -> str:
    """A `sleep` argument unique to this test run, so /proc shows exactly our process."""
    return f"300.{random.randrange(10**6, 10**7)}"


class Procs:
    """Starts processes and deletes them all (killing their trees) at the end of the test."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.ids: list[str] = []

    def start(self, expect: int = 201, **body: Any) -> dict[str, Any]:
        resp = self.api.post("/v1/processes", json=body)
        assert resp.status_code == expect, f"POST /v1/processes {body}: {resp.status_code} {resp.text}"
        if expect == 201:
            self.ids.append(resp.json()["id"])
        return resp.json()

    def wait(self, pid: str, deadline: float = 20.0) -> dict[str, Any]:
        """The process once exited; each call of /wait is bounded, and so is the whole wait."""
        end = time.monotonic() + deadline
        while True:
            left = end - time.monotonic()
            assert left > 0, f"process {pid} did not exit within {deadline}s"
            resp = self.api.get(f"/v1/processes/{pid}/wait?timeout={min(left, 5):.2f}")
            assert resp.status_code == 200, resp.text
            if resp.json()["status"] == "exited":
                return resp.json()

    def stdin(self, pid: str, data: bytes | str, expect: int = 204) -> Any:
        resp = self.api.post(f"/v1/processes/{pid}/stdin", data=data.encode() if isinstance(data, str) else data)
        assert resp.status_code == expect, f"stdin: {resp.status_code} {resp.text}"
        return resp

    def close_stdin(self, pid: str, expect: int = 204) -> Any:
        resp = self.api.request("DELETE", f"/v1/processes/{pid}/stdin")
        assert resp.status_code == expect, f"close stdin: {resp.status_code} {resp.text}"
        return resp

    def signal(self, pid: str, name: Any, expect: int = 204) -> Any:
        resp = self.api.post(f"/v1/processes/{pid}/signal", json={"signal": name})
        assert resp.status_code == expect, f"signal {name}: {resp.status_code} {resp.text}"
        return resp

    def cleanup(self) -> None:
        for pid in self.ids:
            self.api.request("DELETE", f"/v1/processes/{pid}")


@pytest.fixture
def procs(api: Api) -> Iterator[Procs]:
    p = Procs(api)
    yield p
    p.cleanup()


def assert_error(resp, status: int, code: str) -> None:
    assert resp.status_code == status, f"{resp.status_code} {resp.text}"
    body = resp.json()
    assert body.get("code") == code and isinstance(body.get("message"), str) and body["message"], body


def same_machine(server) -> None:
    if not server.same_machine:
        pytest.skip("needs the server's processes in this machine's /proc")


# --------------------------------------------------------------------------
# start, list, get, wait


def test_start_get_list_wait(api, procs):
    started = procs.start(command=["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert set(started) == {"id", "pid"} and isinstance(started["pid"], int) and started["pid"] > 0
    pid = started["id"]
    done = procs.wait(pid)
    assert done["status"] == "exited" and done["exit_code"] == 3 and done["signal"] is None, done
    assert done["id"] == pid and done["pid"] == started["pid"] and done["command"][0] == "sh"
    assert done["timed_out"] is False and done["pty"] is False and done["stdin"] is False
    assert done["started_at"].endswith("Z") and done["finished_at"].endswith("Z")
    assert api.get(f"/v1/processes/{pid}").json() == done
    listed = api.get("/v1/processes").json()["processes"]
    assert done in listed


def test_created_answer_has_location(api, procs):
    resp = api.post("/v1/processes", json={"command": ["true"]})
    assert resp.status_code == 201, resp.text
    procs.ids.append(resp.json()["id"])
    assert resp.headers["Location"] == f"/v1/processes/{resp.json()['id']}"


def test_list_shows_running_and_finished(api, procs):
    running = procs.start(command=["sleep", sleep_marker()])["id"]
    finished = procs.start(command=["true"])["id"]
    procs.wait(finished)
    by_id = {p["id"]: p for p in api.get("/v1/processes").json()["processes"]}
    assert by_id[running]["status"] == "running" and by_id[running]["exit_code"] is None
    assert by_id[running]["finished_at"] is None
    assert by_id[finished]["status"] == "exited" and by_id[finished]["exit_code"] == 0
    order = [p["id"] for p in api.get("/v1/processes").json()["processes"]]
    assert order.index(running) < order.index(finished), "listed in start order"


def test_wait_timeout_answers_running(api, procs):
    pid = procs.start(command=["sleep", sleep_marker()])["id"]
    began = time.monotonic()
    resp = api.get(f"/v1/processes/{pid}/wait?timeout=0.5")
    took = time.monotonic() - began
    assert resp.status_code == 200 and resp.json()["status"] == "running", resp.text
    assert 0.4 <= took < 5, took
    resp = api.get(f"/v1/processes/{pid}/wait?timeout=0")
    assert resp.status_code == 200 and resp.json()["status"] == "running"
    assert_error(api.get(f"/v1/processes/{pid}/wait?timeout=-1"), 400, "INVALID_ARGUMENT")
    assert_error(api.get(f"/v1/processes/{pid}/wait?timeout=soon"), 400, "INVALID_ARGUMENT")


def test_wait_returns_at_exit(api, procs):
    pid = procs.start(command=["sh", "-c", "read line; exit 7"], stdin=True)["id"]
    result: list[Any] = []
    waiter = threading.Thread(target=lambda: result.append(api.get(f"/v1/processes/{pid}/wait?timeout=30")))
    waiter.start()
    procs.stdin(pid, "go\n")
    began = time.monotonic()
    waiter.join(20)
    assert not waiter.is_alive() and time.monotonic() - began < 10
    assert result[0].status_code == 200 and result[0].json()["exit_code"] == 7, result[0].text


def test_many_waits_hold_no_thread(api, procs):
    """More waiting requests than the server has threads; a plain request is still answered at once."""
    pid = procs.start(command=["sleep", sleep_marker()])["id"]
    results: list[int] = []
    waiters = [threading.Thread(target=lambda: results.append(
        requests.get(api.url(f"/v1/processes/{pid}/wait?timeout=3"), timeout=20).status_code))
        for _ in range(16)]
    for w in waiters:
        w.start()
    began = time.monotonic()
    assert api.get("/v1/processes").status_code == 200
    assert time.monotonic() - began < 2
    for w in waiters:
        w.join(20)
    assert results == [200] * 16


def test_a_program_that_cannot_start_is_an_error_and_no_process(api, procs, root):
    """As the Go daemon: a missing program is NOT_FOUND, one that is not executable PERMISSION_DENIED; no id is
    handed out and nothing is listed."""
    before = api.get("/v1/processes").json()["processes"]
    resp = api.post("/v1/processes", json={"command": ["no-such-program-xyz", "a"]})
    assert_error(resp, 404, "NOT_FOUND")
    assert "no-such-program-xyz" in resp.json()["message"]
    (root / "not-executable.sh").write_text("#!/bin/sh\necho hi\n")
    resp = api.post("/v1/processes", json={"command": ["./not-executable.sh"]})
    assert_error(resp, 403, "PERMISSION_DENIED")
    assert "not-executable.sh" in resp.json()["message"]
    assert api.get("/v1/processes").json()["processes"] == before


def test_timeout_kills_with_124(api, procs):
    pid = procs.start(command=["sleep", sleep_marker()], timeout=0.5)["id"]
    done = procs.wait(pid)
    assert done["exit_code"] == 124 and done["timed_out"] is True, done
    with Events(api, pid) as events:
        exit_event = events.all()[-1]
    assert json.loads(exit_event["data"]) == {"exit_code": 124, "signal": "SIGKILL", "timed_out": True}


def test_shell_cwd_and_env(api, procs, workdir):
    pid = procs.start(
        command="pwd; echo \"$SANDBOXD_E2E_MARKER|$EXTRA|${HOME-unset}\" | tr a-z A-Z",
        shell=True, cwd=workdir.rel, env={"EXTRA": "x y", "HOME": None})["id"]
    procs.wait(pid)
    with Events(api, pid) as events:
        out = text_of(events.all())
    lines = out.splitlines()
    assert lines[0].endswith("/" + workdir.rel), lines
    assert lines[1] == "INHERITED-ENV-OK|X Y|UNSET", lines


def test_string_command_is_split_like_execute(api, procs):
    pid = procs.start(command="printf '%s|' 'a b' c\\ d \"e\"")["id"]
    procs.wait(pid)
    with Events(api, pid) as events:
        assert text_of(events.all()) == "a b|c d|e|"


@pytest.mark.parametrize("body", [
    {},
    {"command": []},
    {"command": ""},
    {"command": [""]},
    {"command": ["echo", 1]},
    {"command": 5},
    {"command": "echo 'unterminated"},
    {"command": ["echo"], "shell": True},
    {"command": "echo", "shell": "yes"},
    {"command": "echo", "stdin": 1},
    {"command": "echo", "timeout": 0},
    {"command": "echo", "timeout": "5"},
    {"command": "echo", "env": {"A": 1}},
    {"command": "echo", "env": {"A=B": "c"}},
    {"command": "echo", "env": ["A=B"]},
    {"command": "echo", "pty": {"cols": 80}},
    {"command": "echo", "pty": {"cols": 0, "rows": 24}},
    {"command": "echo", "pty": {"cols": 80.5, "rows": 24}},
    {"command": "echo", "pty": True},
    {"command": "echo", "cwd": 3},
    {"command": "echo", "cwd": "no/such/dir"},
])
def test_invalid_start_requests(api, body):
    assert_error(api.post("/v1/processes", json=body), 400, "INVALID_ARGUMENT")


def test_invalid_json_and_cwd_outside_root(api, workdir):
    assert_error(api.post("/v1/processes", data=b"{not json"), 400, "INVALID_ARGUMENT")
    assert_error(api.post("/v1/processes", data=b"[1]"), 400, "INVALID_ARGUMENT")
    assert_error(api.post("/v1/processes", json={"command": "true", "cwd": "../.."}), 403, "PERMISSION_DENIED")
    if workdir.path is not None:
        (workdir.path / "file").write_text("x")
        assert_error(api.post("/v1/processes", json={"command": "true", "cwd": workdir.join("file")}),
                     400, "INVALID_ARGUMENT")


def test_unknown_ids_and_paths(api, procs):
    for method, path in [("GET", "nope"), ("GET", "nope/events"), ("GET", "nope/wait"), ("DELETE", "nope"),
                         ("POST", "nope/signal"), ("POST", "nope/resize"), ("POST", "nope/stdin"),
                         ("DELETE", "nope/stdin")]:
        resp = api.request(method, f"/v1/processes/{path}", json={"signal": "SIGINT"} if "signal" in path else None)
        assert_error(resp, 404, "NOT_FOUND")
    pid = procs.start(command=["true"])["id"]
    for path in [f"{pid}/bogus", f"{pid}/events/x", "", f"{pid}/"]:
        assert api.get(f"/v1/processes/{path}").status_code == 404, path
    resp = api.request("GET", f"/v1/processes/{pid}/stdin")
    assert resp.status_code == 405 and set(resp.headers["Allow"].split(", ")) == {"POST", "DELETE"}
    resp = api.request("POST", f"/v1/processes/{pid}")
    assert resp.status_code == 405 and set(resp.headers["Allow"].split(", ")) == {"GET", "HEAD", "DELETE"}
    assert api.request("PUT", "/v1/processes").status_code == 405


# --------------------------------------------------------------------------
# events


def test_events_text_and_base64(api, procs):
    script = r"printf 'one\n'; printf 'two\n' >&2; printf '\303\251t\351\n'; printf 'no newline'"
    pid = procs.start(command=["sh", "-c", script])["id"]
    procs.wait(pid)
    with Events(api, pid) as events:
        text = events.all()
    with Events(api, pid, "?encoding=base64") as events:
        raw = events.all()
    assert text[-1]["event"] == "exit" and raw[-1]["event"] == "exit"
    assert json.loads(text[-1]["data"]) == {"exit_code": 0, "signal": None, "timed_out": False}
    ids = [e["id"] for e in text]
    assert ids == sorted(ids) and len(set(ids)) == len(ids) and all(isinstance(i, int) for i in ids)
    assert text_of(text) == "one\nét\ufffd\nno newline"
    assert text_of(text, "stderr") == "two\n"
    stdout = b"".join(base64.b64decode(json.loads(e["data"])) for e in raw if e["event"] == "stdout")
    assert stdout == b"one\n\xc3\xa9t\xe9\nno newline"
    assert {e["event"] for e in text} == {"stdout", "stderr", "exit"}
    assert_error(api.get(f"/v1/processes/{pid}/events?encoding=hex"), 400, "INVALID_ARGUMENT")


def test_output_arrives_in_chunks_not_lines(api, procs):
    pid = procs.start(command=["sh", "-c", "printf 'name? '; read name; echo \"hi $name\""], stdin=True)["id"]
    with Events(api, pid) as events:
        first = next(iter(events))
        assert first["event"] == "stdout" and json.loads(first["data"]) == "name? "
        procs.stdin(pid, "ada\n")
        rest = events.until(is_exit)
    assert text_of(rest) == "hi ada\n"


def test_a_character_split_across_reads_arrives_whole(api, procs):
    pid = procs.start(command=["sh", "-c", r"printf '\303'; read x; printf '\251!'"], stdin=True)["id"]
    with Events(api, pid) as events:
        procs.stdin(pid, "\n")
        seen = events.until(is_exit)
    assert text_of(seen) == "é!"


def test_two_concurrent_subscribers(api, procs):
    pid = procs.start(command=["cat"], stdin=True)["id"]
    with Events(api, pid) as a, Events(api, pid) as b:
        ia, ib = iter(a), iter(b)
        for word in ["alpha", "beta", "gamma"]:
            procs.stdin(pid, word + "\n")
            ea, eb = next(ia), next(ib)
            assert ea == eb and json.loads(ea["data"]) == word + "\n"
        procs.close_stdin(pid)
        ea, eb = next(ia), next(ib)
        assert ea == eb and ea["event"] == "exit"
    assert procs.wait(pid)["exit_code"] == 0


def test_late_subscriber_gets_replay_then_live(api, procs):
    pid = procs.start(command=["sh", "-c", "echo early; read x; echo late"], stdin=True)["id"]
    with Events(api, pid) as first:
        assert json.loads(next(iter(first))["data"]) == "early\n"
    with Events(api, pid) as late:
        it = iter(late)
        replayed = next(it)
        assert replayed["id"] == 1 and json.loads(replayed["data"]) == "early\n"
        procs.stdin(pid, "\n")
        rest = late.until(is_exit)
    assert text_of(rest) == "late\n" and rest[-1]["event"] == "exit"


def test_subscriber_after_exit_gets_everything(api, procs):
    pid = procs.start(command=["sh", "-c", "for i in 1 2 3; do echo $i; done; exit 4"])["id"]
    procs.wait(pid)
    for _ in range(2):
        with Events(api, pid) as events:
            seen = events.all()
        assert text_of(seen) == "1\n2\n3\n" and json.loads(seen[-1]["data"])["exit_code"] == 4


def test_last_event_id_resumes_without_gaps_or_duplicates(api, procs):
    pid = procs.start(command=["cat"], stdin=True)["id"]
    received: list[dict[str, Any]] = []
    with Events(api, pid) as events:
        it = iter(events)
        for n in range(3):
            procs.stdin(pid, f"line {n}\n")
            received.append(next(it))
    for n in range(3, 6):  # written while nobody listens
        procs.stdin(pid, f"line {n}\n")
    last = received[-1]["id"]
    with Events(api, pid, headers={"Last-Event-ID": str(last)}) as events:
        received += events.until_text("line 5\n")
        procs.stdin(pid, "line 6\n")
        received += events.until_text("line 6\n")
    # The query parameter works the same, for clients that cannot set headers (curl users, browsers' EventSource
    # on first connect).
    with Events(api, pid, f"?last_event_id={received[-2]['id']}") as events:
        again = next(iter(events))
    assert again == received[-1]
    procs.close_stdin(pid)
    ids = [e["id"] for e in received]
    assert ids == list(range(ids[0], ids[0] + len(ids))), ids
    assert text_of(received) == "".join(f"line {n}\n" for n in range(7))
    with Events(api, pid, headers={"Last-Event-ID": str(ids[-1])}) as events:
        tail = events.all()
    assert [e["event"] for e in tail] == ["exit"] and tail[0]["id"] > ids[-1]
    with Events(api, pid, headers={"Last-Event-ID": str(tail[0]["id"])}) as events:
        assert events.all() == []


def test_last_event_id_that_is_not_this_process(api, procs):
    pid = procs.start(command=["echo", "x"])["id"]
    procs.wait(pid)
    assert_error(api.get(f"/v1/processes/{pid}/events", headers={"Last-Event-ID": "abc"}), 400, "INVALID_ARGUMENT")
    assert_error(api.get(f"/v1/processes/{pid}/events", headers={"Last-Event-ID": "999"}), 400, "INVALID_ARGUMENT")


def test_replay_buffer_keeps_the_newest_megabyte(api, procs):
    total = 3 * MiB
    pid = procs.start(command=["sh", "-c", f"head -c {total} /dev/zero | tr '\\0' a; echo; echo end"])["id"]
    procs.wait(pid)
    with Events(api, pid, headers={"Last-Event-ID": "0"}) as events:
        seen = events.all()
        comments = events.comments
    out = text_of(seen)
    assert out.endswith("a\nend\n")
    assert MiB - 64 * 1024 <= len(out) <= MiB, len(out)
    first = seen[0]["id"]
    assert first > 1 and any(f"events 1-{first - 1} are no longer buffered" in c for c in comments), comments
    # Without Last-Event-ID the client is told as well.
    with Events(api, pid) as events:
        events.all()
        assert any("no longer buffered" in c for c in events.comments)


def test_slow_subscriber_is_cut_off_and_can_resume(api, procs):
    """A client that stops reading does not make the server buffer the process's whole output."""
    total = 48 * MiB
    pid = procs.start(command=["sh", "-c", f"head -c {total} /dev/zero | tr '\\0' x; echo; echo done"])["id"]
    with Events(api, pid, timeout=60, receive_buffer=64 * 1024) as events:
        procs.wait(pid, deadline=60)  # the process is never paused for the slow client
        seen = events.all()
    assert seen[-1]["event"] == "error", seen[-1]
    assert json.loads(seen[-1]["data"])["code"] == "RESOURCE_EXHAUSTED"
    got = len(text_of(seen))
    assert got < 24 * MiB, f"{got} bytes were queued for a client that did not read"
    last = max(e["id"] for e in seen if e["id"] is not None)
    with Events(api, pid, headers={"Last-Event-ID": str(last)}) as events:
        rest = events.all()
    assert rest[-1]["event"] == "exit" and text_of(rest).endswith("x\ndone\n")


def test_client_leaving_the_stream_leaves_the_process_running(api, procs):
    pid = procs.start(command=["cat"], stdin=True)["id"]
    with Events(api, pid) as events:
        procs.stdin(pid, "x\n")
        next(iter(events))
    procs.stdin(pid, "y\n")
    assert api.get(f"/v1/processes/{pid}").json()["status"] == "running"
    with Events(api, pid, headers={"Last-Event-ID": "1"}) as events:
        assert json.loads(next(iter(events))["data"]) == "y\n"


# --------------------------------------------------------------------------
# stdin


def test_stdin_is_delivered_in_order(api, procs):
    pid = procs.start(command=["cat"], stdin=True)["id"]
    pieces = [f"{n:04d}:" + "x" * (n % 7) + "\n" for n in range(300)]
    for piece in pieces:
        procs.stdin(pid, piece)
    big = os.urandom(512 * 1024)
    procs.stdin(pid, big)
    procs.close_stdin(pid)
    assert procs.wait(pid)["exit_code"] == 0
    with Events(api, pid, "?encoding=base64") as events:
        out = b"".join(base64.b64decode(json.loads(e["data"])) for e in events.all() if e["event"] == "stdout")
    assert out == "".join(pieces).encode() + big


def test_stdin_errors(api, procs):
    no_stdin = procs.start(command=["sleep", sleep_marker()])["id"]
    assert_error(api.post(f"/v1/processes/{no_stdin}/stdin", data=b"x"), 409, "CONFLICT")
    assert_error(api.request("DELETE", f"/v1/processes/{no_stdin}/stdin"), 409, "CONFLICT")
    pid = procs.start(command=["cat"], stdin=True)["id"]
    resp = api.post(f"/v1/processes/{pid}/stdin", data=b"y" * (MiB + 1))
    assert resp.status_code == 413 and resp.json()["code"] == "RESOURCE_EXHAUSTED", resp.text
    procs.stdin(pid, b"")
    procs.close_stdin(pid)
    assert_error(api.post(f"/v1/processes/{pid}/stdin", data=b"late"), 409, "CONFLICT")
    procs.close_stdin(pid, expect=409)
    assert procs.wait(pid)["exit_code"] == 0
    assert_error(api.post(f"/v1/processes/{pid}/stdin", data=b"x"), 409, "CONFLICT")


def test_stdin_of_a_process_that_does_not_read_is_bounded(api, procs):
    pid = procs.start(command=["sleep", sleep_marker()], stdin=True)["id"]
    statuses = [api.post(f"/v1/processes/{pid}/stdin", data=b"z" * MiB).status_code for _ in range(12)]
    assert statuses[:8] == [204] * 8 and statuses[-1] == 429, statuses
    # What is refused is not queued: a body that still fits is taken.
    assert api.post(f"/v1/processes/{pid}/stdin", data=b"z").status_code == 204
    assert_error(api.post(f"/v1/processes/{pid}/stdin", data=b"z" * (256 * 1024)), 429, "RESOURCE_EXHAUSTED")


def test_stdin_chunked_body(api, procs):
    pid = procs.start(command=["cat"], stdin=True)["id"]
    resp = api.post(f"/v1/processes/{pid}/stdin", data=iter([b"chunk one ", b"chunk two\n"]))
    assert resp.status_code == 204, resp.text
    procs.close_stdin(pid)
    procs.wait(pid)
    with Events(api, pid) as events:
        assert text_of(events.all()) == "chunk one chunk two\n"


# --------------------------------------------------------------------------
# signals, resize, delete


def test_sigint_to_sleep(api, procs):
    pid = procs.start(command=["sleep", sleep_marker()])["id"]
    with Events(api, pid) as events:
        procs.signal(pid, "SIGINT")
        seen = events.all()
    assert seen[-1]["event"] == "exit"
    assert json.loads(seen[-1]["data"]) == {"exit_code": 130, "signal": "SIGINT", "timed_out": False}
    done = procs.wait(pid)
    assert done["signal"] == "SIGINT" and done["exit_code"] == 130
    assert_error(api.post(f"/v1/processes/{pid}/signal", json={"signal": "SIGINT"}), 409, "CONFLICT")


@pytest.mark.parametrize("name,code", [("SIGTERM", 143), ("SIGKILL", 137), ("SIGHUP", 129), ("SIGQUIT", 131),
                                       ("SIGUSR1", 138), ("SIGUSR2", 140)])
def test_each_signal_name(api, procs, name, code):
    pid = procs.start(command=["sleep", sleep_marker()])["id"]
    procs.signal(pid, name)
    done = procs.wait(pid)
    assert done["signal"] == name and done["exit_code"] == code, done


def test_invalid_signals(api, procs):
    pid = procs.start(command=["sleep", sleep_marker()])["id"]
    for body in [{"signal": "SIGSTOP"}, {"signal": "INT"}, {"signal": "sigint"}, {"signal": 2}, {}, None]:
        resp = api.post(f"/v1/processes/{pid}/signal", json=body)
        assert_error(resp, 400, "INVALID_ARGUMENT")
    assert api.get(f"/v1/processes/{pid}").json()["status"] == "running"


def test_signal_goes_to_the_process_group(api, procs, server):
    same_machine(server)
    marker = sleep_marker()
    pid = procs.start(command=["sh", "-c", f"sleep {marker} & sleep {marker} & wait"])["id"]
    assert wait_until(lambda: len(processes_matching(f"sleep {marker}")) == 3, 10), "sh and two sleeps"
    procs.signal(pid, "SIGTERM")
    procs.wait(pid)
    assert wait_until(lambda: not processes_matching(f"sleep {marker}"), 10)


WINCH_SCRIPT = r"""
import os, signal, sys
def report(*_):
    size = os.get_terminal_size(0)
    sys.stdout.write(f"size {size.lines} {size.columns}\n")
    sys.stdout.flush()
signal.signal(signal.SIGWINCH, report)
report()
sys.stdin.readline()
"""


def test_resize_delivers_sigwinch(api, procs):
    pid = procs.start(command=["python3", "-c", WINCH_SCRIPT], pty={"cols": 80, "rows": 24})["id"]
    with Events(api, pid) as events:
        assert "size 24 80\r\n" in text_of(events.until_text("size 24 80\r\n"))
        resp = api.post(f"/v1/processes/{pid}/resize", json={"cols": 132, "rows": 43})
        assert resp.status_code == 204, resp.text
        assert "size 43 132" in text_of(events.until_text("size 43 132"))
        procs.stdin(pid, "\r")
        events.until(is_exit)
    for body in [{"cols": 0, "rows": 5}, {"cols": 5}, {"cols": "80", "rows": 24}]:
        assert_error(api.post(f"/v1/processes/{pid}/resize", json=body), 400, "INVALID_ARGUMENT")


def test_resize_without_pty_is_a_conflict(api, procs):
    pid = procs.start(command=["sleep", sleep_marker()])["id"]
    assert_error(api.post(f"/v1/processes/{pid}/resize", json={"cols": 80, "rows": 24}), 409, "CONFLICT")


def test_delete_kills_the_tree_and_forgets(api, procs, server):
    same_machine(server)
    marker = sleep_marker()
    pid = procs.start(command=["sh", "-c", f"sleep {marker} & (sleep {marker} &) ; sleep {marker}"])["id"]
    sleeps = lambda: [cmd for cmd in processes_matching(f"sleep {marker}").values() if cmd.startswith("sleep")]
    assert wait_until(lambda: len(sleeps()) == 3, 10), processes_matching(marker)
    with Events(api, pid) as events:
        resp = api.request("DELETE", f"/v1/processes/{pid}")
        assert resp.status_code == 204 and resp.content == b""
        seen = events.all()
    assert seen[-1]["event"] == "exit" and json.loads(seen[-1]["data"])["signal"] == "SIGKILL"
    assert wait_until(lambda: not processes_matching(f"sleep {marker}"), 10), processes_matching(marker)
    assert_error(api.get(f"/v1/processes/{pid}"), 404, "NOT_FOUND")
    assert pid not in [p["id"] for p in api.get("/v1/processes").json()["processes"]]
    assert_error(api.request("DELETE", f"/v1/processes/{pid}"), 404, "NOT_FOUND")


def test_what_a_process_left_behind_dies_at_its_exit(api, procs, server):
    """Every descendant dies with its command: background children in the group and one that left it (`setsid`)
    are killed when the main process exits, not kept until DELETE."""
    same_machine(server)
    marker = sleep_marker()
    pid = procs.start(command=["sh", "-c", f"sleep {marker} & setsid sleep {marker} & echo started"])["id"]
    assert procs.wait(pid)["exit_code"] == 0
    assert wait_until(lambda: not processes_matching(f"sleep {marker}"), 2), processes_matching(marker)
    assert api.request("DELETE", f"/v1/processes/{pid}").status_code == 204


def test_finished_processes_are_kept_up_to_a_count(api, procs):
    first = procs.start(command=["true"])["id"]
    procs.wait(first)
    ids = [procs.start(command=["true"])["id"] for _ in range(100)]
    for pid in ids:
        procs.wait(pid)
    assert_error(api.get(f"/v1/processes/{first}"), 404, "NOT_FOUND")
    listed = [p["id"] for p in api.get("/v1/processes").json()["processes"] if p["status"] == "exited"]
    assert len(listed) <= 100 and ids[-1] in listed


# --------------------------------------------------------------------------
# pty


def test_pty_tty_and_stty_size(api, procs):
    pid = procs.start(command="tty; stty size", shell=True, pty={"cols": 123, "rows": 45})["id"]
    assert procs.wait(pid)["exit_code"] == 0
    with Events(api, pid) as events:
        seen = events.all()
    assert {e["event"] for e in seen} == {"stdout", "exit"}, "a pty has only stdout"
    lines = text_of(seen).replace("\r\n", "\n").splitlines()
    assert lines[0].startswith("/dev/pts/"), lines
    assert lines[1] == "45 123", lines
    snapshot = api.get(f"/v1/processes/{pid}").json()
    assert snapshot["pty"] is True


def test_pty_python_repl_shows_its_prompt(api, procs):
    pid = procs.start(command=["python3", "-i", "-q"], pty={"cols": 80, "rows": 24})["id"]
    assert api.get(f"/v1/processes/{pid}").json()["stdin"] is True, "a pty always takes input"
    with Events(api, pid) as events:
        assert text_of(events.until_text(">>> ", end=True)).endswith(">>> ")
        procs.stdin(pid, "print(6*7)\r")
        assert text_of(events.until_text("\r\n42\r\n>>> ")).endswith("\r\n42\r\n>>> ")
        procs.close_stdin(pid)  # Ctrl-D
        rest = events.until(is_exit)
    assert json.loads(rest[-1]["data"])["exit_code"] == 0


@pytest.mark.deadline(30)
def test_pty_ctrl_c_interrupts_like_a_keyboard(api, procs):
    pid = procs.start(command=["python3", "-i", "-q"], pty={"cols": 80, "rows": 24})["id"]
    with Events(api, pid) as events:
        events.until_text(">>> ", end=True)
        procs.stdin(pid, "import time; print('sleeping'); time.sleep(300)\r")
        events.until_text("sleeping\r\n")
        procs.stdin(pid, b"\x03")
        assert "KeyboardInterrupt" in text_of(events.until_text("KeyboardInterrupt"))
        procs.stdin(pid, "exit()\r")
        events.until(is_exit)


# --------------------------------------------------------------------------
# the interactive session of issue 5


def test_interactive_python_session(api, procs):
    pid = procs.start(command=["python3", "-i"], stdin=True)["id"]
    with Events(api, pid) as events:
        assert text_of(events.until_text(">>> ", "stderr", end=True), "stderr").endswith(">>> ")
        procs.stdin(pid, "print(6*7)\n")
        assert text_of(events.until_text("\n")) == "42\n"
        procs.close_stdin(pid)
        rest = events.until(is_exit)
    assert rest[-1]["event"] == "exit"
    assert json.loads(rest[-1]["data"]) == {"exit_code": 0, "signal": None, "timed_out": False}
    assert procs.wait(pid)["status"] == "exited"


# --------------------------------------------------------------------------
# shutdown


@pytest.mark.deadline(60)
def test_shutdown_ends_processes_and_streams(start_server, make_api):
    srv = start_server()
    api = make_api(srv)
    marker = sleep_marker()
    pid = api.post("/v1/processes", json={"command": ["sleep", marker]}).json()["id"]
    with Events(api, pid) as events:
        it = iter(events)
        srv.proc.send_signal(15)
        srv.proc.wait(timeout=20)
        rest = list(it)
    assert srv.proc.returncode == 0
    assert not rest or rest[-1]["event"] == "exit", rest
    assert wait_until(lambda: not processes_matching(f"sleep {marker}"), 10)
    assert not descendants(srv.proc.pid)
