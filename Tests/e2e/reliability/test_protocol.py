"""Issue 4, part 6: raw-protocol robustness.

Malformed HTTP over raw sockets: bad request lines, unknown methods, HTTP/0.9, huge and numerous headers, bad
chunked encoding, truncated multipart, bodies shorter and longer than Content-Length, pipelining,
Expect: 100-continue, and abrupt disconnects at every stage. After each, the server has answered (never a 500)
or closed, and `GET /` on a new connection still answers 200 quickly.

The module runs its own server with `--idle-timeout 2`, so "answers or closes" has a bound even for a message
the server can only wait on (a partial request whose client half-closed): the idle timeout plus a margin.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import uuid
from typing import Iterator

import pytest

from conftest import Server, launch, sandboxd_binary, stop, wait_until

from .support import (
    Closed,
    MiB,
    RawConn,
    Timeout,
    assert_healthy,
    kill_matching,
    live_matching,
    multipart_body,
    no_server_error,
    request_bytes,
    unique_sleep,
)

IDLE_TIMEOUT = 2
# Seconds the server gets to answer or close: the idle timeout, plus libmicrohttpd's 1 s timeout granularity, plus
# a margin for a loaded machine.
ANSWER_OR_CLOSE = IDLE_TIMEOUT + 3.0
MORE_ANSWERS = 1.0  # after a first answer, how long further answers (pipelined, or to trailing junk) may take


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    """This module's sandboxd (shadows the suite's `server`, so the suite's after-test check of a live server with no
    children applies to it): --idle-timeout 2, its own root."""
    binary = sandboxd_binary()
    if not binary.is_file():
        pytest.fail(f"sandboxd binary not found at {binary}")
    srv = launch(binary, tmp_path_factory.mktemp("root-protocol"), ("--idle-timeout", str(IDLE_TIMEOUT)))
    yield srv
    stop(srv)


@pytest.fixture
def root(server) -> pathlib.Path:
    return server.root


@pytest.fixture
def workdir(server) -> Iterator[pathlib.Path]:
    """A fresh directory under the root; its name relative to the root is workdir.name."""
    path = server.root / f"protocol-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    yield path


def _answer_or_close(server, payload: bytes, what: str, half_close: bool = True) -> list:
    """Send payload (then, by default, half-close) and collect the answers: the server must answer or close within
    ANSWER_OR_CLOSE; an answer followed by a connection kept open is fine. No 5xx but 501/505; then GET / works."""
    with RawConn(server) as conn:
        conn.send(payload)
        if half_close:
            try:
                conn.sock.shutdown(1)
            except OSError:
                pass
        responses = []
        try:
            while True:
                responses.append(conn.read_response(MORE_ANSWERS if responses else ANSWER_OR_CLOSE))
        except Closed:
            pass
        except Timeout:
            assert responses, f"{what}: neither an answer nor a close within {ANSWER_OR_CLOSE}s"
        except AssertionError as error:  # an unparseable response is a finding of its own
            raise AssertionError(f"{what}: {error}") from None
    no_server_error(responses, what)
    assert_healthy(server)
    return responses


# ==========================================================================
# malformed request heads

BAD_REQUEST_LINES = {
    "garbage": b"GARBAGE\r\n\r\n",
    "method-only": b"GET\r\n\r\n",
    "no-version": b"GET / \r\nHost: x\r\n\r\n",
    "extra-token": b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n",
    "bad-version": b"GET / HTTP/x.y\r\nHost: x\r\n\r\n",
    "future-version": b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
    "lowercase-version": b"GET / http/1.1\r\nHost: x\r\n\r\n",
    "binary": b"\x00\xff\xfe\x01\x80 / HTTP/1.1\r\n\r\n",
    "empty-lines-only": b"\r\n\r\n\r\n\r\n",
    "no-host-http11": b"GET / HTTP/1.1\r\n\r\n",
    "bare-lf": b"GET / HTTP/1.1\nHost: x\n\n",
    "space-in-path": b"GET /a b/c HTTP/1.1\r\nHost: x\r\n\r\n",
    "absolute-uri": b"GET http://example.com/ HTTP/1.1\r\nHost: x\r\n\r\n",
    "asterisk": b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
    "connect-authority": b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n",
    "header-without-colon": b"GET / HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n",
    "header-space-before-colon": b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
    "obs-fold": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n  folded\r\n\r\n",
    "nul-in-header": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "long-uri-100k": b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "unknown-method": b"FROB / HTTP/1.1\r\nHost: x\r\n\r\n",
    "lowercase-method": b"get / HTTP/1.1\r\nHost: x\r\n\r\n",
    "http09": b"GET /\r\n",
    "http10": b"GET / HTTP/1.0\r\n\r\n",
}


@pytest.mark.parametrize("case", list(BAD_REQUEST_LINES))
def test_malformed_request_heads(server, case):
    responses = _answer_or_close(server, BAD_REQUEST_LINES[case], case)
    if case == "http10":
        assert responses and responses[0].status == 200, responses


HUGE_HEADERS = {
    "one-64k-header": b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (64 * 1024) + b"\r\n\r\n",
    "one-1m-header": b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * MiB + b"\r\n\r\n",
    "10000-headers": b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(10_000)) + b"\r\n",
    "many-cookies": b"GET / HTTP/1.1\r\nHost: x\r\n" + b"Cookie: a=b\r\n" * 5000 + b"\r\n",
    "huge-post-head": b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Big: "
    + b"b" * (200 * 1024) + b"\r\nContent-Length: 2\r\n\r\n{}",
}


@pytest.mark.parametrize("case", list(HUGE_HEADERS))
def test_huge_or_numerous_headers(server, case):
    responses = _answer_or_close(server, HUGE_HEADERS[case], case, half_close=False)
    for resp in responses:
        assert resp.status in (400, 413, 414, 431), f"{case}: {resp}"


CONFLICTING = {
    "two-content-lengths": b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Content-Length: 5\r\nContent-Length: 30\r\n\r\n{\"command\": \"echo smuggled\"}",
    "negative-content-length": b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    "huge-content-length": b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    "non-numeric-content-length": b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Length: 12abc\r\n\r\n",
    "te-and-cl": b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "unknown-transfer-encoding": b"POST /execute HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
}


# libmicrohttpd 0.9.75 rejects a Content-Length it cannot parse before sandboxd sees the request, but writes its
# 400 (413 for a number too large) head twice (reproduced with a 20-line C program on the bare library), so only
# the first answer is readable.
# README lists it among the libmicrohttpd limits; what matters is a 4xx, no command run, and a healthy server.
UNPARSEABLE_LENGTH = {"negative-content-length", "huge-content-length", "non-numeric-content-length"}


@pytest.mark.parametrize("case", list(CONFLICTING))
def test_conflicting_or_invalid_framing(server, case):
    if case in UNPARSEABLE_LENGTH:
        with RawConn(server) as conn:
            conn.send(CONFLICTING[case])
            conn.sock.settimeout(ANSWER_OR_CLOSE)
            head = conn.sock.recv(64)
        assert head.startswith((b"HTTP/1.1 400 ", b"HTTP/1.1 413 ")), f"{case}: {head!r}"
        assert_healthy(server)
        return
    responses = _answer_or_close(server, CONFLICTING[case], case)
    assert not any(resp.status == 200 and b"smuggled" in resp.body for resp in responses), responses


# ==========================================================================
# chunked bodies

_CHUNKED_HEAD = b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
_CMD = b'{"command": "echo chunked"}'  # 0x1b bytes: a valid body, so running it would show a misparse
BAD_CHUNKED = {
    "bad-hex-size": b"zz\r\n" + _CMD + b"\r\n0\r\n\r\n",
    "size-overflow": b"fffffffffffffffffffffff\r\n" + _CMD + b"\r\n0\r\n\r\n",
    "negative-size": b"-1b\r\n" + _CMD + b"\r\n0\r\n\r\n",
    "missing-crlf-after-data": b"1b\r\n" + _CMD + b"XX0\r\n\r\n",
    "data-longer-than-size": b"1a\r\n" + _CMD + b"\r\n0\r\n\r\n",
    "size-without-crlf": b"1b" + _CMD + b"\r\n0\r\n\r\n",
    "missing-last-chunk-then-eof": b"1b\r\n" + _CMD + b"\r\n",
}
ODD_CHUNKED = {  # unusual but harmless: any answer but a 5xx is fine
    "odd-extension": b"1b;;;=\x01\r\n" + _CMD + b"\r\n0\r\n\r\n",
    "uppercase-hex": b"1B\r\n" + _CMD + b"\r\n0\r\n\r\n",
    "leading-zeros": b"00001b\r\n" + _CMD + b"\r\n0000\r\n\r\n",
    "empty-body": b"0\r\n\r\n",
}


@pytest.mark.parametrize("case", list(BAD_CHUNKED))
def test_bad_chunked_encoding(server, case):
    responses = _answer_or_close(server, _CHUNKED_HEAD + BAD_CHUNKED[case], case)
    for resp in responses:
        assert resp.status != 200, f"{case}: a broken chunked body was run: {resp}"


@pytest.mark.parametrize("case", list(ODD_CHUNKED))
def test_odd_but_harmless_chunked_encoding(server, case):
    _answer_or_close(server, _CHUNKED_HEAD + ODD_CHUNKED[case], case)


def test_valid_chunked_with_extensions_and_trailers_works(server):
    body = b'{"command": "echo chunked-ok"}'
    payload = _CHUNKED_HEAD + b"5;name=value\r\n" + body[:5] + b"\r\n" + b"%x\r\n" % (len(body) - 5) + body[5:] \
        + b"\r\n0\r\nX-Trailer: t\r\n\r\n"
    responses = _answer_or_close(server, payload, "chunked with extension and trailer", half_close=False)
    assert responses and responses[0].status == 200 and responses[0].json()["stdout"] == "chunked-ok\n", responses


# ==========================================================================
# bodies that do not match their framing


def test_truncated_multipart_leaves_nothing(server, workdir):
    name = f"{workdir.name}/truncated.bin"
    body, ctype = multipart_body(name, b"x" * 5000)
    cut = body[: len(body) - 200]  # the end of the content and the closing boundary are missing
    responses = _answer_or_close(server, request_bytes("POST", "/upload", cut, {"Content-Type": ctype}),
                                 "truncated multipart")
    assert responses and 400 <= responses[0].status < 500, responses
    assert wait_until(lambda: not os.listdir(workdir), 5.0), os.listdir(workdir)


def test_multipart_without_closing_boundary_leaves_nothing(server, workdir):
    name = f"{workdir.name}/unclosed.bin"
    body, ctype = multipart_body(name, b"y" * 5000)
    unclosed = body[: body.rindex(b"\r\n--")]  # the whole content, but no closing delimiter
    responses = _answer_or_close(server, request_bytes("POST", "/upload", unclosed, {"Content-Type": ctype}),
                                 "multipart without closing boundary")
    assert responses and 400 <= responses[0].status < 500, responses
    assert wait_until(lambda: not os.listdir(workdir), 5.0), os.listdir(workdir)


@pytest.mark.parametrize("target", ["execute", "upload", "v1-put"])
def test_body_shorter_than_content_length_then_close(server, workdir, target):
    name = f"{workdir.name}/{uuid.uuid4().hex[:8]}"
    if target == "execute":
        body, ctype, path = f'{{"command": "touch {name}"}}'.encode(), "application/json", "/execute"
    elif target == "upload":
        body, ctype = multipart_body(name, b"z" * 10_000)
        path = "/upload"
    else:
        body, ctype, path = b"z" * 10_000, "application/octet-stream", f"/v1/files/{name}"
    head = (f"POST {path} HTTP/1.1\r\n" if target != "v1-put" else f"PUT {path} HTTP/1.1\r\n").encode()
    head += f"Host: x\r\nContent-Type: {ctype}\r\nContent-Length: {len(body) + 1000}\r\n\r\n".encode()
    for how in ("half-close", "close", "reset"):
        conn = RawConn(server)
        conn.send(head + body)
        if how == "half-close":  # the server sees EOF mid-body and must close, not wait forever
            conn.sock.shutdown(1)
            try:
                responses = conn.responses_until_close(ANSWER_OR_CLOSE)
            except Timeout:
                conn.close()
                raise AssertionError(f"{target}: EOF in the body neither answered nor closed in {ANSWER_OR_CLOSE}s")
            no_server_error(responses, f"{target} short body")
            conn.close()
        elif how == "close":
            conn.close()
        else:
            conn.abort()
        assert_healthy(server)
    assert wait_until(lambda: not os.listdir(workdir), 5.0), f"{target}: a cut body had an effect: {os.listdir(workdir)}"


def test_body_longer_than_content_length(server):
    body = b'{"command": "echo first"}'
    extra = b"THIS IS NOT HTTP\r\n\r\n"
    responses = _answer_or_close(server, request_bytes("POST", "/execute", body, {"Content-Type": "application/json"})
                                 + extra, "body longer than Content-Length", half_close=False)
    assert responses and responses[0].status == 200 and responses[0].json()["stdout"] == "first\n", responses
    for resp in responses[1:]:
        assert 400 <= resp.status < 500, f"the extra bytes were answered with {resp}"


# ==========================================================================
# pipelining and Expect


def test_pipelined_gets_answered_in_order(server):
    payload = request_bytes("GET", "/") + request_bytes("GET", "/exists/nope-pipelined") + request_bytes("GET", "/nope")
    with RawConn(server) as conn:
        conn.send(payload)
        statuses = [conn.read_final_response(5) for _ in range(3)]
        assert [r.status for r in statuses] == [200, 200, 404], statuses
        assert statuses[1].json() == {"path": "nope-pipelined", "exists": False}
        conn.send(request_bytes("GET", "/"))  # the connection is still in sync
        assert conn.read_final_response(5).status == 200


def test_pipelined_executes_keep_their_order(server):
    """A slow command first, a fast one second, in one write: the answers come in request order."""
    slow = request_bytes("POST", "/execute", b'{"command": "sh -c \\"sleep 0.5; echo slow\\""}',
                         {"Content-Type": "application/json"})
    fast = request_bytes("POST", "/execute", b'{"command": "echo fast"}', {"Content-Type": "application/json"})
    stream = request_bytes("POST", "/execute/stream", b'{"command": "echo streamed"}',
                           {"Content-Type": "application/json"})
    with RawConn(server) as conn:
        conn.send(slow + fast + stream + request_bytes("GET", "/"))
        answers = [conn.read_final_response(10) for _ in range(4)]
    assert [a.status for a in answers] == [200, 200, 200, 200], answers
    assert answers[0].json()["stdout"] == "slow\n" and answers[1].json()["stdout"] == "fast\n", answers
    assert b"data: streamed" in answers[2].body and b"event: done" in answers[2].body, answers[2]


@pytest.mark.parametrize("case", ["execute", "over-limit", "unknown-expectation", "http10-expect"])
def test_expect_header(server, case):
    body = b'{"command": "echo continued"}'
    headers = {"Content-Type": "application/json", "Expect": "100-continue"}
    if case == "over-limit":
        body = b'{"command": "echo x", "pad": "' + b"p" * (2 * MiB) + b'"}'
    if case == "unknown-expectation":
        headers["Expect"] = "something-else"
    raw = request_bytes("POST", "/execute", body, headers)
    if case == "http10-expect":
        raw = raw.replace(b"HTTP/1.1", b"HTTP/1.0", 1)
    head, _, _ = raw.partition(b"\r\n\r\n")
    with RawConn(server) as conn:
        conn.send(head + b"\r\n\r\n")
        first = None
        try:
            # a 100, or an early final answer; or nothing: then send anyway, as curl does after 1 s
            first = conn.read_response(0.8)
        except Timeout:
            pass
        if first is None or first.status == 100:
            conn.send(body)
            final = conn.read_final_response(10)
        else:
            final = first
    no_server_error([final], case)
    if case == "execute":
        assert final.status == 200 and final.json()["stdout"] == "continued\n", final
    elif case == "over-limit":
        assert final.status == 413, final
    elif case == "unknown-expectation":
        assert final.status in (200, 417), final
    assert_healthy(server)


# ==========================================================================
# abrupt disconnects at every stage

STAGES = {
    "after-connect": b"",
    "mid-request-line": b"POST /exec",
    "after-request-line": b"POST /execute HTTP/1.1\r\n",
    "mid-headers": b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: appl",
    "after-headers": b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 30\r\n\r\n",
    "mid-body": b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 30\r\n\r\n{\"comm",
    "mid-chunked-body": _CHUNKED_HEAD + b"4\r\n{\"co",
    "mid-multipart": b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
    b"Content-Length: 100000\r\n\r\n--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"abrupt-cut.bin\"\r\n\r\nabc",
}


@pytest.mark.parametrize("how", ["close", "reset"])
@pytest.mark.parametrize("stage", list(STAGES))
def test_abrupt_disconnect_before_the_answer(server, root, stage, how):
    conn = RawConn(server)
    conn.send(STAGES[stage])
    conn.close() if how == "close" else conn.abort()
    assert_healthy(server)
    assert wait_until(lambda: not (root / "abrupt-cut.bin").exists() and
                      not [n for n in os.listdir(root) if "abrupt-cut" in n], 5.0), os.listdir(root)


@pytest.mark.deadline(40)
@pytest.mark.parametrize("how", ["close", "reset"])
def test_abrupt_disconnect_while_waiting_for_a_command(server, how):
    duration = unique_sleep(300)
    conn = RawConn(server)
    conn.send(request_bytes("POST", "/execute", json.dumps({"command": f"sleep {duration}"}).encode(),
                            {"Content-Type": "application/json"}))
    started = wait_until(lambda: live_matching(f"sleep {duration}"), 5.0)
    conn.close() if how == "close" else conn.abort()
    assert started, "the command did not start"
    assert_healthy(server)
    gone = wait_until(lambda: not live_matching(f"sleep {duration}"), 5.0)
    kill_matching(f"sleep {duration}")
    assert gone, "the command outlived its client by 5 s"


@pytest.mark.deadline(40)
@pytest.mark.parametrize("how", ["close", "reset"])
def test_abrupt_disconnect_mid_stream(server, how):
    marker = f"abrupt-{uuid.uuid4().hex[:8]}"
    conn = RawConn(server)
    conn.send(request_bytes("POST", "/execute/stream", json.dumps({"command": f"yes {marker}"}).encode(),
                            {"Content-Type": "application/json"}))
    status, _ = conn.read_head(5)
    assert status == 200
    got = b""
    while got.count(marker.encode()) < 50:
        got += conn.sock.recv(4096)
    conn.close() if how == "close" else conn.abort()
    assert_healthy(server)
    gone = wait_until(lambda: not live_matching(f"yes {marker}"), 10.0)
    kill_matching(f"yes {marker}")
    assert gone, "yes outlived its stream client by 10 s"


@pytest.mark.deadline(60)
@pytest.mark.parametrize("how", ["close", "reset"])
@pytest.mark.parametrize("route", ["/download/", "/v1/files/"])
def test_abrupt_disconnect_mid_download(server, root, route, how):
    name = f"big-{uuid.uuid4().hex[:8]}.bin"
    with open(root / name, "wb") as f:
        f.truncate(64 * MiB)  # sparse: a big download without writing 64 MiB
    try:
        for _ in range(3):  # several times: a leak per cut download would add up
            conn = RawConn(server, rcvbuf=65536)
            conn.send(request_bytes("GET", route + name))
            status, headers = conn.read_head(5)
            assert status == 200 and int(headers["content-length"]) == 64 * MiB, (status, headers)
            received = len(conn.buf)
            while received < MiB:
                received += len(conn.sock.recv(65536))
            conn.close() if how == "close" else conn.abort()
            assert_healthy(server)
        with RawConn(server) as conn:  # a whole download still works and is intact
            conn.send(request_bytes("GET", route + name))
            resp = conn.read_final_response(60)
        assert resp.status == 200 and len(resp.body) == 64 * MiB
        assert hashlib.sha256(resp.body).hexdigest() == hashlib.sha256(bytes(64 * MiB)).hexdigest()
    finally:
        os.unlink(root / name)
