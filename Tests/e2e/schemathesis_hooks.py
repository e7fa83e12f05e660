"""Schemathesis hooks for test_fuzz_schemathesis.py: a check of what a per-event schema cannot say.

The OpenAPI document describes each Server-Sent Event (schemathesis validates every event against it), but not
the stream as a whole. `sse_stream_framing` checks that for both event streams: LF-only framing that ends with
a blank line, one `event:` and one `data:` line per event, `done` last and once on /execute/stream with any
`error` before it, and on a process's events `id`s that increase, `exit` (or `error`) last and once. A stream
that schemathesis cut short (it reads at most a bounded number of events) is checked as far as it got.

With SANDBOXD_FUZZ_BOUND_PROCESSES=1, `after_call` also sends SIGKILL to each process the fuzzer starts (POST
/v1/processes answered 201) unless its `timeout` ends it within 2 s. The body is fuzzed as generated (a huge
`timeout` once crashed the server at start); only the process's life is bounded, so that schemathesis, which reuses
the ids it was given, never waits on a REPL or a `cat` with stdin open until its request timeout (a wait with a long
`?timeout=` would fail the run, an event stream would stall it). Live processes are fuzzed in a pass of their own.

Loaded with SCHEMATHESIS_HOOKS=<this file>.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from typing import Any

import requests
import schemathesis


def _blocks(text: str) -> list[list[str]]:
    """The events of an LF-framed stream as lists of lines, comments dropped."""
    assert "\r" not in text, "event stream contains a CR: frames and payloads are LF-only"
    if not text:
        return []
    body = text
    if body.endswith("\n\n"):
        body = body[:-2]
    blocks = []
    for block in body.split("\n\n"):
        lines = [line for line in block.split("\n") if not line.startswith(":")]
        if lines:
            blocks.append(lines)
    return blocks


def _fields(lines: list[str]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(": ")
        assert sep and name in ("event", "id", "data"), f"unexpected line in an event: {line!r}"
        assert name not in fields, f"field {name!r} twice in one event: {lines!r}"
        fields[name] = value
    assert "event" in fields and "data" in fields, f"event without `event:` or `data:`: {lines!r}"
    return fields


def _check_execute_stream(events: list[dict[str, str]], complete: bool) -> None:
    kinds = [event["event"] for event in events]
    assert kinds.count("done") <= 1, f"`done` more than once: {kinds}"
    if "done" in kinds:
        assert kinds[-1] == "done", f"`done` is not the last event: {kinds}"
        done = json.loads(events[-1]["data"])
        assert isinstance(done.get("exit_code"), int) and isinstance(done.get("timed_out"), bool), done
        if done["timed_out"]:
            assert "error" in kinds and events[kinds.index("error")]["data"].startswith("Command timed out after"), (
                f"a timed-out command without its `error` event: {kinds}"
            )
    elif complete:
        raise AssertionError(f"the stream ended without `done`: {kinds}")


def _check_process_events(events: list[dict[str, str]], complete: bool, base64_encoded: bool) -> None:
    kinds = [event["event"] for event in events]
    last_id = -1
    for index, event in enumerate(events):
        if event["event"] in ("exit", "error"):
            assert index == len(events) - 1, f"`{event['event']}` is not the last event: {kinds}"
        if event["event"] == "error":
            continue
        assert "id" in event, f"`{event['event']}` event without an id"
        current = int(event["id"])
        assert current > last_id, f"event ids do not increase: {[e.get('id') for e in events]}"
        last_id = current
        if event["event"] in ("stdout", "stderr"):
            chunk = json.loads(event["data"])
            assert isinstance(chunk, str) and chunk, f"output data is not a non-empty JSON string: {event['data']!r}"
            if base64_encoded:
                try:
                    base64.b64decode(chunk, validate=True)
                except binascii.Error as exc:
                    raise AssertionError(f"?encoding=base64 chunk is not base64: {chunk!r}") from exc
    if complete and events:
        assert kinds[-1] in ("exit", "error"), f"the stream ended without `exit`: {kinds}"


@schemathesis.check
def sse_stream_framing(ctx: Any, response: Any, case: Any) -> bool | None:
    content_type = (response.headers.get("content-type") or [""])[0]
    if response.status_code != 200 or not content_type.startswith("text/event-stream"):
        return None
    complete = not response.stream_cut_short
    text = response.content.decode("utf-8")
    headers = {name.lower(): value for name, value in (case.headers or {}).items()}
    resumed = bool(str(headers.get("last-event-id", "")).strip() or str((case.query or {}).get("last_event_id", "")).strip())
    if text == "" and complete and resumed and case.path == "/v1/processes/{id}/events":
        return None  # resumed after the `exit` event: nothing is left to send
    if complete:
        assert text.endswith("\n\n"), f"the stream does not end with a blank line: {text[-80:]!r}"
    blocks = _blocks(text)
    if not complete and blocks and not text.endswith("\n\n"):
        blocks = blocks[:-1]  # cut inside the last event
    events = [_fields(lines) for lines in blocks]
    if case.path == "/execute/stream":
        _check_execute_stream(events, complete)
    elif case.path == "/v1/processes/{id}/events":
        encoding = (case.query or {}).get("encoding")
        _check_process_events(events, complete, encoding == "base64")
    else:
        raise AssertionError(f"an event stream from an operation that documents none: {case.path}")
    return None


@schemathesis.hook
def after_call(context: Any, case: Any, response: Any) -> None:
    if os.environ.get("SANDBOXD_FUZZ_BOUND_PROCESSES") != "1":
        return
    if case.method.upper() != "POST" or case.path != "/v1/processes" or response.status_code != 201:
        return
    timeout = case.body.get("timeout") if isinstance(case.body, dict) else None
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and 0 < timeout <= 2:
        return
    url = f"{response.request.url.rstrip('/')}/{response.json()['id']}/signal"
    # 204, or 409 when it has exited already.
    requests.post(url, json={"signal": "SIGKILL"}, timeout=10)
