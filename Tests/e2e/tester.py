#!/usr/bin/env python3
"""Smoke test for a running sandboxd (or any python-runtime-sandbox compatible server).

Usage: python3 tester.py <ip> <port>

Standard library only, so it runs in a bare container with nothing but python3.
Prints one line per check and exits 1 at the first failure. Everything it
creates lives in one uniquely named directory under the sandbox root, removed
at the end, so it can run any number of times against the same server.
"""

import http.client
import json
import os
import shlex
import sys
import time
import urllib.parse
import uuid

TIMEOUT = 30  # seconds, for every request


class CheckFailed(Exception):
    pass


class Client:
    def __init__(self, host, port):
        self.host, self.port = host, int(port)

    def request(self, method, path, body=None, headers=None, timeout=TIMEOUT):
        """Send path as given (no dot-segment removal); return (status, headers, body bytes)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.headers, resp.read()
        finally:
            conn.close()

    def json(self, method, path, payload=None, timeout=TIMEOUT):
        body = None if payload is None else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"} if body is not None else {}
        status, _, data = self.request(method, path, body, headers, timeout)
        try:
            return status, json.loads(data)
        except ValueError:
            raise CheckFailed(f"{method} {path}: {status} with a body that is not JSON: {data[:200]!r}")

    def execute(self, command, **fields):
        status, body = self.json("POST", "/execute", {"command": command, **fields})
        expect(status == 200, f"POST /execute {command!r}: status {status}, body {body}")
        return body

    def upload(self, filename, content):
        boundary = uuid.uuid4().hex
        quoted = filename.replace("\\", "\\\\").replace('"', "%22")
        body = (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{quoted}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode() + content + f"\r\n--{boundary}--\r\n".encode()
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        status, _, data = self.request("POST", "/upload", body, headers)
        return status, json.loads(data or b"null")

    def stream(self, command, timeout=TIMEOUT):
        """POST /execute/stream; return the list of (event, data) in arrival order."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request("POST", "/execute/stream", body=json.dumps({"command": command}),
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            expect(resp.status == 200, f"POST /execute/stream: status {resp.status}")
            ctype = resp.headers.get("Content-Type", "")
            expect(ctype.startswith("text/event-stream"), f"Content-Type {ctype!r}")
            events, block = [], []
            while True:
                line = resp.readline()
                if not line:
                    break
                text = line.decode("utf-8").rstrip("\n")
                if text:
                    block.append(text)
                    continue
                if block and not block[0].startswith(":"):
                    expect(len(block) == 2 and block[0].startswith("event: ") and block[1].startswith("data: "),
                           f"malformed event {block!r}")
                    events.append((block[0][7:], block[1][6:]))
                block = []
            return events
        finally:
            conn.close()


def expect(condition, message):
    if not condition:
        raise CheckFailed(message)


def quote(path):
    return urllib.parse.quote(path, safe="")


def main(host, port):
    c = Client(host, port)
    work = f"tester-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    checks = []

    def check(name):
        def register(fn):
            checks.append((name, fn))
            return fn
        return register

    @check("health: GET / answers ok")
    def _():
        status, body = c.json("GET", "/")
        expect(status == 200, f"status {status}")
        expect(body == {"status": "ok", "message": "Sandbox Runtime is active."}, f"body {body}")

    @check("execute: stdout, empty stderr, exit 0")
    def _():
        body = c.execute("echo 'hello world'")
        expect(body.get("stdout") == "hello world\n", f"stdout {body.get('stdout')!r}")
        expect(body.get("stderr") == "" and body.get("exit_code") == 0, f"body {body}")
        expect(body.get("timed_out") is False, f"timed_out {body.get('timed_out')!r}")

    @check("execute: stderr and a non-zero exit code through sh -c")
    def _():
        body = c.execute("sh -c 'echo out; echo err >&2; exit 3'")
        expect((body["stdout"], body["stderr"], body["exit_code"]) == ("out\n", "err\n", 3), f"body {body}")

    @check("execute: arguments split with shlex rules, no shell")
    def _():
        args = "'a b' \"c d\" e\\ f '' $HOME *"
        body = c.execute(f"printf '<%s>' {args}")
        wanted = "".join(f"<{a}>" for a in shlex.split(args))
        expect(body["stdout"] == wanted, f"stdout {body['stdout']!r}, wanted {wanted!r}")

    @check("execute: a missing program exits 127")
    def _():
        body = c.execute("no-such-program-for-tester")
        expect(body["exit_code"] == 127 and "no-such-program-for-tester" in body["stderr"], f"body {body}")

    @check("execute: timeout kills the command (124, timed_out, message)")
    def _():
        started = time.monotonic()
        body = c.execute("sleep 30", timeout=1)
        elapsed = time.monotonic() - started
        expect(elapsed < 10, f"took {elapsed:.1f}s")
        expect(body["exit_code"] == 124 and body["timed_out"] is True, f"body {body}")
        expect("Command timed out after 1 seconds" in body["stderr"], f"stderr {body['stderr']!r}")

    @check("stream: stdout/stderr events, then done last")
    def _():
        events = c.stream("sh -c 'echo one; echo two >&2; echo three; exit 4'")
        expect([d for e, d in events if e == "stdout"] == ["one", "three"], f"events {events}")
        expect([d for e, d in events if e == "stderr"] == ["two"], f"events {events}")
        expect(events and events[-1][0] == "done", f"last event {events[-1:]}")
        expect(json.loads(events[-1][1]).get("exit_code") == 4, f"done {events[-1][1]!r}")
        expect([e for e, _ in events].count("done") == 1, f"events {events}")

    @check("upload: multipart file into a new subdirectory")
    def _():
        status, body = c.upload(f"{work}/hello.txt", b"Hello from tester.py\n")
        expect(status == 200, f"status {status}, body {body}")
        expect(body == {"message": f"File '{work}/hello.txt' uploaded successfully."}, f"body {body}")

    @check("download: the same bytes back")
    def _():
        status, headers, data = c.request("GET", f"/download/{quote(work + '/hello.txt')}")
        expect(status == 200 and data == b"Hello from tester.py\n", f"status {status}, body {data[:100]!r}")
        expect(headers.get("Content-Type") == "application/octet-stream", f"Content-Type {headers.get('Content-Type')}")

    @check("download: every byte value round-trips")
    def _():
        content = bytes(range(256)) * 512
        status, body = c.upload(f"{work}/bytes.bin", content)
        expect(status == 200, f"upload status {status}, body {body}")
        status, _, data = c.request("GET", f"/download/{work}/bytes.bin")
        expect(status == 200 and data == content, f"status {status}, {len(data)} bytes")

    @check("list: entries with name, size, type, mod_time")
    def _():
        status, body = c.json("GET", f"/list/{work}")
        expect(status == 200 and isinstance(body, list), f"status {status}, body {body}")
        entries = {e["name"]: e for e in body}
        expect(set(entries) == {"hello.txt", "bytes.bin"}, f"names {sorted(entries)}")
        hello = entries["hello.txt"]
        expect(hello["type"] == "file" and hello["size"] == 21 and isinstance(hello["mod_time"], float),
               f"entry {hello}")
        status, body = c.json("GET", "/list/")
        expect(status == 200 and any(e["name"] == work and e["type"] == "directory" for e in body),
               f"root listing lacks {work}")

    @check("exists: true for the file, false for a missing one")
    def _():
        status, body = c.json("GET", f"/exists/{work}/hello.txt")
        expect(status == 200 and body == {"path": f"{work}/hello.txt", "exists": True}, f"{status} {body}")
        status, body = c.json("GET", f"/exists/{work}/missing.txt")
        expect(status == 200 and body == {"path": f"{work}/missing.txt", "exists": False}, f"{status} {body}")

    @check("traversal: ../ and ..%2F on download, list, exists are 403")
    def _():
        for endpoint in ("download", "list", "exists"):
            for path in ("../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", f"{work}/../../etc/passwd"):
                status, body = c.json("GET", f"/{endpoint}/{path}")
                expect(status == 403 and body == {"message": "Access denied"}, f"{endpoint}/{path}: {status} {body}")

    @check("traversal: an absolute /etc/passwd is looked up inside the root")
    def _():
        status, body = c.json("GET", "/exists/%2Fetc%2Fpasswd")
        expect(status == 200 and body.get("exists") is False, f"exists: {status} {body}")
        status, _, data = c.request("GET", "/download//etc/passwd")
        expect(status == 404, f"download /etc/passwd: {status} {data[:80]!r}")

    @check("traversal: a symlink inside the root pointing at /etc is 403")
    def _():
        body = c.execute(f"ln -s /etc {work}/etc-link")
        expect(body["exit_code"] == 0, f"ln failed: {body}")
        for endpoint, path in (("download", "etc-link/passwd"), ("list", "etc-link"), ("exists", "etc-link/passwd")):
            status, body = c.json("GET", f"/{endpoint}/{work}/{path}")
            expect(status == 403 and body == {"message": "Access denied"}, f"{endpoint}/{path}: {status} {body}")

    @check("upload traversal: ../../ filename is 403 and writes nothing")
    def _():
        name = f"evil-{uuid.uuid4().hex[:8]}.txt"
        status, body = c.upload(f"../../{name}", b"malicious")
        expect(status == 403 and body == {"message": "Access denied"}, f"{status} {body}")
        for up in ("..", "../.."):
            body = c.execute(f"test -e {up}/{name}")
            expect(body["exit_code"] == 1, f"{up}/{name} exists after a refused upload")

    failed, passed = None, 0
    for name, fn in checks:
        try:
            fn()
        except (CheckFailed, OSError, ValueError, KeyError, TypeError) as e:
            print(f"FAIL  {name}: {type(e).__name__ + ': ' if not isinstance(e, CheckFailed) else ''}{e}")
            failed = name
            break
        print(f"ok    {name}")
        passed += 1

    try:
        c.execute(f"rm -rf {work}")
    except (CheckFailed, OSError, ValueError):
        print(f"note  could not remove {work}")
    print(f"{passed} passed, {1 if failed else 0} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("Usage: python3 tester.py <ip> <port>")
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
