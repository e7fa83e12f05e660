"""The legacy execute endpoints parse a body exactly as the reference does: JSON only for `application/json` and
`application/…+json`, text decoded as Python's `json.loads` decodes bytes. The expected answers are the table
measured on the reference's FastAPI (execute_body_table.py; Tests/tools/measure_fastapi_bodies.py re-measures it).
"""

from __future__ import annotations

import json
import socket

import pytest

from execute_body_table import ROWS


@pytest.mark.parametrize("endpoint", ["/execute", "/execute/stream"])
@pytest.mark.parametrize("name,content_type,body,status,answer", ROWS, ids=[row[0] for row in ROWS])
def test_body_is_parsed_as_the_reference_parses_it(api, endpoint, name, content_type, body, status, answer):
    headers = {} if content_type is None else {"Content-Type": content_type}
    resp = api.raw("POST", endpoint, body=body, headers=headers)
    assert resp.status == status, f"{name}: {resp.status} {resp.content[:300]!r}"
    if answer is not None:
        assert json.loads(resp.content) == answer, f"{name}: {resp.content[:500]!r}"
    elif endpoint == "/execute":
        assert json.loads(resp.content)["stdout"] == "ok\n", resp.content
    else:
        assert b"event: stdout\ndata: ok\n\n" in resp.content and b"event: done\n" in resp.content, resp.content



@pytest.mark.parametrize("types,status", [(("text/plain", "application/json"), 422),
                                          (("application/json", "text/plain"), 200)])
def test_a_repeated_content_type_counts_by_its_first_value(api, types, status):
    """Starlette reads the first of repeated headers (measured: 422, then 200, on the reference's versions)."""
    body = b'{"command": "echo ok"}'
    raw = (f"POST /execute HTTP/1.1\r\nHost: e2e\r\nContent-Type: {types[0]}\r\nContent-Type: {types[1]}\r\n"
           f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
    with socket.create_connection((api.server.host, api.server.port), timeout=10) as sock:
        sock.sendall(raw)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer[:300]
