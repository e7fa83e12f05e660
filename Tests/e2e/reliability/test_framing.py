"""Request framing and the message shapes request smuggling relies on (RFC 9112 §§3.2, 5.1, 6.1, 6.3).

Each refused head is sent as an attacker would: over a raw socket, followed by its body and by a second request
that would leave a file behind if it ran. The server must answer the head at once (well within its idle timeout,
so it did not wait for a body whose length it cannot know) with 400 (501 for a transfer coding it does not
implement) and `Connection: close`, then close without answering anything else; the second request never runs.
"""

from __future__ import annotations

import json
import uuid

import pytest

from .support import Closed, RawConn, Timeout, assert_healthy

# Far below the server's idle timeout (60 s): an answer this quick was given from the head, not after a wait.
AT_ONCE = 5.0


def _second_request(marker: str) -> bytes:
    body = json.dumps({"command": f"touch {marker}"}).encode()
    return (b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)) + body


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n" % len(data) + data + b"\r\n0\r\n\r\n"


BODY = b'{"command": "echo framed"}'

# name: (head without its final CRLF, what follows the head before the second request, expected status)
REFUSED = {
    # issue item 2: transfer codings other than chunked, and Content-Length beside Transfer-Encoding
    "unknown-coding": (b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       b"Transfer-Encoding: gzip\r\n", BODY, 501),
    "chunked-not-last": (b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Transfer-Encoding: chunked, gzip\r\n", _chunked(BODY), 400),
    "chunked-twice": (b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", _chunked(BODY), 400),
    "te-and-cl": (b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n", 400),
    "te-in-http10": (b"POST /execute HTTP/1.0\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n", _chunked(BODY), 400),
    # issue item 5: the smuggling shapes
    "differing-content-lengths": (b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                  b"Content-Length: %d\r\nContent-Length: 0\r\n" % len(BODY), BODY, 400),
    "space-before-colon": (b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           b"Transfer-Encoding : chunked\r\nContent-Length: 0\r\n", _chunked(BODY), 400),
    "gzip-then-chunked": (b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          b"Transfer-Encoding: gzip, chunked\r\n", _chunked(BODY), 400),
    "nul-in-target": (b"GET /exists/a\x00b HTTP/1.1\r\nHost: x\r\n", b"", 400),
    "nul-at-end-of-target": (b"GET /exists/a\x00 HTTP/1.1\r\nHost: x\r\n", b"", 400),
    "nul-in-query": (b"GET /exists/a?x=1\x00 HTTP/1.1\r\nHost: x\r\n", b"", 400),
    "control-byte-in-target": (b"GET /exists/a\x01b HTTP/1.1\r\nHost: x\r\n", b"", 400),
    "delete-byte-in-target": (b"GET /exists/a\x7fb HTTP/1.1\r\nHost: x\r\n", b"", 400),
    "tab-in-target": (b"GET /exists/a\tb HTTP/1.1\r\nHost: x\r\n", b"", 400),
    "space-in-target": (b"GET /exists/a b HTTP/1.1\r\nHost: x\r\n", b"", 400),
    "no-host": (b"GET / HTTP/1.1\r\n", b"", 400),
    "two-hosts": (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n", b"", 400),
    "two-hosts-http10": (b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n", b"", 400),
    "host-with-path": (b"GET / HTTP/1.1\r\nHost: a/b\r\n", b"", 400),
    "bare-cr-in-value": (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rContent-Length: 5\r\n", b"", 400),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_at_once_and_closed(server, case):
    head, rest, status = REFUSED[case]
    marker = f"smuggled-{uuid.uuid4().hex[:8]}"
    with RawConn(server) as conn:
        conn.send(head + b"\r\n" + rest + _second_request(marker))
        try:
            resp = conn.read_response(AT_ONCE)
        except (Closed, Timeout) as error:
            raise AssertionError(f"{case}: no answer within {AT_ONCE}s ({type(error).__name__})") from None
        assert resp.status == status, f"{case}: {resp}"
        assert resp.headers.get("connection", "").lower() == "close", f"{case}: {resp.headers}"
        assert resp.json()["detail"], resp
        try:
            after = conn.responses_until_close(AT_ONCE)
        except Timeout:
            raise AssertionError(f"{case}: the connection stayed open after the refusal") from None
        assert after == [], f"{case}: what followed the refused head was answered: {after}"
    assert not (server.root / marker).exists(), f"{case}: the request after the refused head ran"
    assert_healthy(server)


# Shapes that look alike but are valid: they keep working.
ACCEPTED = {
    "identical-content-lengths": (b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                  b"Content-Length: %d\r\nContent-Length: %d\r\n\r\n" % (len(BODY), len(BODY)) + BODY),
    "chunked-any-case": (b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Transfer-Encoding: Chunked\r\n\r\n" + _chunked(BODY)),
    "http10-without-host": (b"POST /execute HTTP/1.0\r\nContent-Type: application/json\r\n"
                            b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY),
    "empty-host": (b"POST /execute HTTP/1.1\r\nHost:\r\nContent-Type: application/json\r\n"
                   b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY),
    "ipv6-host-with-port": (b"POST /execute HTTP/1.1\r\nHost: [::1]:8000\r\nContent-Type: application/json\r\n"
                            b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY),
}


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_valid_framing_still_works(server, case):
    with RawConn(server) as conn:
        conn.send(ACCEPTED[case])
        resp = conn.read_response(10)
    assert resp.status == 200 and resp.json()["stdout"] == "framed\n", f"{case}: {resp}"


def test_utf8_in_target_still_works(server):
    """curl sends a UTF-8 path unencoded; bytes above 0x7F are not control bytes."""
    with RawConn(server) as conn:
        conn.send("GET /exists/caf\u00e9 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        resp = conn.read_response(10)
    assert resp.status == 200 and resp.json() == {"path": "caf\u00e9", "exists": False}, resp
