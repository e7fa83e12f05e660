#!/usr/bin/env python3
"""Writes the link order of sandboxd's functions (Sources/sandboxd/symbol-order.txt, passed to lld as
--symbol-ordering-file): the functions a release build runs from its start to its first idle moment, then those one
request of each kind runs (HTTP, then gRPC), each group sorted by name. Placed together at the start of the text,
they fill a few hundred KiB instead of being spread over the whole 16 MB, so an idle server maps far fewer pages
of its binary (the kernel maps whole neighbourhoods of a page it faults in).

Found with valgrind's callgrind, which lists every function that ran. Run it through `make symbol-order` after
changes that move much code (a stale list costs memory, never correctness: names it lacks are simply not placed
first). Needs valgrind, binutils, and grpcio with the SDK's stubs (Tests/e2e/requirements.txt).

usage: symbol-order.py BINARY OUTPUT
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

START_TIMEOUT = 120.0  # seconds for the server to answer under valgrind (it runs ~50 times slower there)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port: int, method: str, path: str, body: bytes | None = None, ctype: str = "application/json") -> bytes:
    headers = {"Content-Type": ctype} if body is not None else {}
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=60) as answer:
        return answer.read()


def wait_until_serving(port: int, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"sandboxd ended with {server.returncode} before serving")
        try:
            request(port, "GET", "/")
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"sandboxd did not answer GET / within {START_TIMEOUT} s")


def one_of_each(port: int, grpc_port: int) -> None:
    """A request of every kind sandboxd serves, twice (first calls and repeated ones take different paths)."""
    import grpc
    from k8s_agent_sandbox.commands._process_stubs import process_pb2 as pb, process_pb2_grpc as pb_grpc

    command = json.dumps({"command": "echo hi"}).encode()
    boundary = "symbol-order"
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\nhello\r\n"
            f"--{boundary}--\r\n").encode()
    for _ in range(2):
        request(port, "POST", "/execute", command)
        request(port, "POST", "/execute/stream", command)
        request(port, "POST", "/upload", form, f"multipart/form-data; boundary={boundary}")
        for path in ("/download/a.txt", "/list/.", "/exists/a.txt", "/metrics", "/openapi.json"):
            request(port, "GET", path)
        request(port, "PUT", "/v1/files/d/b.txt", b"x" * 100_000, "application/octet-stream")
        request(port, "GET", "/v1/files/d/b.txt")
        request(port, "GET", "/v1/files/d")
        process = json.loads(request(port, "POST", "/v1/processes", json.dumps({"command": ["echo", "hi"]}).encode()))
        for path in ("/wait?timeout=10", "", "/events"):
            request(port, "GET", f"/v1/processes/{process['id']}{path}")
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=START_TIMEOUT)
            stub = pb_grpc.ProcessServiceStub(channel)
            config = pb.ProcessConfig(command=["echo", "hi"])
            stub.Execute(pb.ExecuteRequest(config=config), timeout=60)
            list(stub.Start(pb.StartRequest(config=config), timeout=60))


def profile(binary: Path, work: Path, name: str, workload=None) -> Path:
    """Runs `binary` under callgrind until it serves, then through `workload(port, grpc_port)` (with a gRPC listener)
    if there is one; returns callgrind's output file."""
    out = work / f"{name}.callgrind"
    root = work / f"root-{name}"
    root.mkdir()
    port, grpc_port = free_port(), free_port()
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--demangle=no", f"--callgrind-out-file={out}", str(binary),
         "--host", "127.0.0.1", "--port", str(port), "--root", str(root),
         *(["--grpc-port", str(grpc_port)] if workload else [])],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_serving(port, server)
        if workload:
            workload(port, grpc_port)
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=START_TIMEOUT)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    return out


def functions_run(callgrind_out: Path, object_name: str) -> set[str]:
    """Names of the functions of `object_name` that ran. callgrind writes a name once, then only its number."""
    objects, functions, current, ran = {}, {}, "", set()
    line_pattern = re.compile(r"^(c?ob|c?fn)=\((\d+)\)(?: (.*))?$")
    for line in callgrind_out.read_text(errors="replace").splitlines():
        match = line_pattern.match(line)
        if not match:
            continue
        kind, number, name = match.groups()
        table = objects if kind.endswith("ob") else functions
        if name:
            table[number] = name
        if kind == "ob":
            current = objects[number]
        elif kind == "fn" and current.endswith(object_name):
            ran.add(re.sub(r"'\d+$", "", functions[number]))  # 'N marks a recursion level, not another function
    return ran


def main() -> None:
    binary, output = Path(sys.argv[1]), Path(sys.argv[2])
    with tempfile.TemporaryDirectory(prefix="symbol-order-") as directory:
        work = Path(directory)
        # valgrind 3.19 cannot read DWARF 5: a copy without debug information (the symbol table stays).
        stripped = work / "sandboxd"
        subprocess.run(["strip", "--strip-debug", "-o", str(stripped), str(binary)], check=True, timeout=120)
        defined = set()
        for line in subprocess.run(["nm", "--defined-only", str(stripped)], capture_output=True, text=True,
                                   check=True, timeout=120).stdout.splitlines():
            fields = line.split()
            if len(fields) == 3 and fields[1] in "tTwW":
                defined.add(fields[2])
        idle = functions_run(profile(stripped, work, "idle"), "sandboxd") & defined
        requests = functions_run(profile(stripped, work, "requests", one_of_each), "sandboxd") & defined
    lines = ["# Generated by scripts/symbol-order.py (make symbol-order): the functions an idle sandboxd has run,",
             "# then those one request of each kind runs. lld places them first in the text (--symbol-ordering-file).",
             *sorted(idle), *sorted(requests - idle)]
    output.write_text("\n".join(lines) + "\n")
    print(f"{output}: {len(idle)} functions at start and idle, {len(requests - idle)} more for requests")


if __name__ == "__main__":
    main()
