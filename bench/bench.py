#!/usr/bin/env python3
"""sandboxd benchmark: sandboxd and this machine's limits for the same work, measured in one run (targets: issues 6,
11 and 15).

    python3 bench/bench.py --bin .build-release/release/sandboxd            # full run (`make bench`)
    python3 bench/bench.py --bin .build-release/release/sandboxd --smoke    # tiny sizes (`make bench-smoke`)
    python3 bench/bench.py --bin .build-release/release/sandboxd --only grpc  # only the gRPC steps

Prints a table (sandboxd, the limit, the ratio sandboxd/limit, the issues' target, pass/fail) and writes
bench/out/results.json and bench/out/chart.png (and scale.png: the scale step against N); a full run also rewrites
bench/RESULTS.md, bench/RESULTS.png and bench/RESULTS-scale.png.
A missed target never makes it exit non-zero (it is a benchmark); a step that produced no number does
(and `--smoke` checks only that: every step produced a number).

Every server listens on 127.0.0.1 only; every loop is bounded in count and time. Needs wrk, nginx, gcc and h2load
(Debian's packages), matplotlib for the chart, and for the gRPC steps grpcio with the k8s-agent-sandbox SDK's
process.v1 stubs (Tests/e2e/requirements.txt); only the Python standard library otherwise. The small C programs
beside it (spawn_floor.c, launcher.c) are compiled into the output folder on each run.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import fcntl
import json
import os
import platform
import re
import resource
import select
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MiB = 1024 * 1024

FULL = dict(
    starts=20,  # exec → first GET /, median of this many starts
    wrk_seconds=5,  # each wrk run
    floor_seconds=5,  # each spawn_floor loop run
    output_bytes=20_000_000,  # /execute of this much output
    output_reps=3,
    transfer_bytes=1 << 30,  # upload / download / TCP / file write and read
    transfer_reps=3,  # best of
    stream_lines=200,  # one timestamp line every 10 ms → 2 s
    seq_n=1_000_000,  # events/s of `seq 1 N`
    concurrent=1000,  # concurrent `sleep 1` executes and streams
    probe_idle_seconds=1.0,  # GET / probe baseline before the burst
    rounds=2,  # GET /, /execute and concurrency: sandboxd and its limit alternate this many times; best of each
    watch_files=50,  # files created one at a time under a watch, each timed from its close to its event
    watch_tree_dirs=500,  # the watched tree: this many directories of 20 files (10,000 files)
    scale=(1000, 2000, 5000),  # concurrent `sleep 2` streams, each size against a fresh server; targets at the last
)
SMOKE = dict(
    starts=3,
    wrk_seconds=1,
    floor_seconds=0.5,
    output_bytes=1_000_000,
    output_reps=1,
    transfer_bytes=8 * MiB,
    transfer_reps=1,
    stream_lines=20,
    seq_n=10_000,
    concurrent=50,
    probe_idle_seconds=0.3,
    rounds=1,
    watch_files=5,
    watch_tree_dirs=50,
    scale=(20, 40, 100),
)

# Every process this script started, so that it can end them (and only them) whatever happens.
CHILDREN: list[subprocess.Popen] = []


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def median(values):
    return statistics.median(values) if values else None


def percentile(values, p):
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(p / 100 * (len(ordered) - 1)))))
    return ordered[index]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def popen(args, **kwargs) -> subprocess.Popen:
    process = subprocess.Popen(args, **kwargs)
    CHILDREN.append(process)
    return process


def end_process(process: subprocess.Popen, grace: float = 15.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    if process in CHILDREN:
        CHILDREN.remove(process)


def end_all_children() -> None:
    for process in list(CHILDREN):
        try:
            end_process(process, grace=5)
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


# --------------------------------------------------------------------------------------------------------------------
# /proc


def proc_status(pid: int) -> dict:
    """VmRSS, VmHWM, RssAnon, RssFile, RssShmem (kB) and Threads of a process, from /proc/<pid>/status."""
    fields = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem", "Threads"):
                    fields[key] = int(value.split()[0])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return fields


def reset_peak_rss(pid: int) -> bool:
    """Resets VmHWM to the current RSS (writing "5" to /proc/<pid>/clear_refs)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def process_tree(pid: int) -> list[int]:
    pids, queue = [], [pid]
    while queue and len(pids) < 1000:
        current = queue.pop()
        pids.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as f:
                    queue.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return pids


class BackgroundLoop:
    """A loop (`_run`, which polls `self._stop`) on a thread of its own for the length of a `with` block."""

    def __init__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        raise NotImplementedError

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)


class Sampler(BackgroundLoop):
    """Samples a process's VmRSS and Threads every `interval` seconds while a step runs (peak and count)."""

    def __init__(self, pid: int, interval: float = 0.005):
        self.pid, self.interval = pid, interval
        self.peak_rss_kb = 0
        self.peak_threads = 0
        self.samples = 0
        super().__init__()

    def _run(self):
        while not self._stop.is_set():
            status = proc_status(self.pid)
            if status:
                self.samples += 1
                self.peak_rss_kb = max(self.peak_rss_kb, status.get("VmRSS", 0))
                self.peak_threads = max(self.peak_threads, status.get("Threads", 0))
            self._stop.wait(self.interval)

    def summary(self) -> dict:
        return {
            "peak_rss_mib": self.peak_rss_kb / 1024,
            "peak_threads": self.peak_threads,
            "samples": self.samples,
        }


# --------------------------------------------------------------------------------------------------------------------
# Servers


class Sandboxd:
    def __init__(self, binary: str, root: Path, logdir: Path, extra=()):
        self.binary, self.root, self.logdir, self.extra = binary, root, logdir, list(extra)
        self.port = 0
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def __enter__(self):
        self.port = free_port()
        self.root.mkdir(parents=True, exist_ok=True)
        self.logfile = open(self.logdir / "sandboxd.log", "ab")
        args = [self.binary, "--host", "127.0.0.1", "--port", str(self.port), "--root", str(self.root), *self.extra]
        self.process = popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.logfile)
        wait_ready(self.port, self.process, 10)
        return self

    def __exit__(self, exc_type, exc, tb):
        died = self.process.poll()
        end_process(self.process)
        self.logfile.close()
        if died is not None:
            # It exited before being told to: say how, with the end of its log, whatever else went wrong.
            raise RuntimeError(f"sandboxd died during the step (status {died}"
                               f"{', signal ' + signal.Signals(-died).name if died < 0 else ''}); "
                               f"end of its log: {self.log_tail()!r}") from exc

    def log_tail(self, size: int = 1 << 20) -> str:
        """Its log's lines that are not request lines, from the last MiB (a crash's message), or the last line; the
        last MiB is also kept in the output folder as sandboxd-died.log."""
        try:
            with open(self.logdir / "sandboxd.log", "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - size))
                tail = f.read()
            (self.logdir.parent / "sandboxd-died.log").write_bytes(tail)
        except OSError:
            return ""
        lines = tail.decode(errors="replace").splitlines()
        unusual = [line for line in lines if "request_id=" not in line and "listening on" not in line
                   and "shutting down" not in line and "received signal" not in line]
        return "\n".join(unusual[-8:] or lines[-1:])


class Nginx:
    def __init__(self, workdir: Path, workers: int):
        self.workdir, self.workers = workdir, workers
        self.port = 0

    def prepare(self, port: int) -> list[str]:
        """Writes the config for `port` under a fresh prefix; returns the command line."""
        prefix = Path(tempfile.mkdtemp(prefix="nginx-", dir=self.workdir))
        conf = (HERE / "nginx.conf").read_text()
        conf = conf.replace("@WORKERS@", str(self.workers)).replace("@PORT@", str(port))
        conf = conf.replace("@PREFIX@", str(prefix))
        (prefix / "nginx.conf").write_text(conf)
        return [nginx_binary(), "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(prefix / "nginx.conf")]

    def __enter__(self):
        self.port = free_port()
        args = self.prepare(self.port)
        self.process = popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_ready(self.port, self.process, 10)
        return self

    @property
    def pid(self) -> int:
        return self.process.pid

    def __exit__(self, *exc):
        end_process(self.process)


def nginx_binary() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


def wait_ready(port: int, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode} before answering")
        try:
            status, _, _ = http_request(port, "GET", "/", timeout=1)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.005)
    raise RuntimeError(f"{process.args[0]} did not answer GET / within {timeout} s")


# --------------------------------------------------------------------------------------------------------------------
# HTTP over raw sockets (Connection: close, read to EOF)


def http_request(port, method, path, body=b"", headers=None, timeout=60.0):
    """One request on a new connection; returns (status, header block, body), the body de-chunked."""
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    for key, value in (headers or {}).items():
        head += f"{key}: {value}\r\n"
    if body or method in ("POST", "PUT"):
        head += f"Content-Length: {len(body)}\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head.encode() + b"\r\n" + body)
        data = bytearray()
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            data += chunk
    header_end = data.find(b"\r\n\r\n")
    if header_end < 0:
        raise RuntimeError(f"no HTTP answer to {method} {path}: {bytes(data[:200])!r}")
    header_block = bytes(data[:header_end]).decode("latin-1")
    status = int(header_block.split(" ", 2)[1])
    payload = bytes(data[header_end + 4 :])
    if "transfer-encoding: chunked" in header_block.lower():
        dechunker = Dechunker()
        payload = dechunker.feed(payload)
    return status, header_block, payload


class Dechunker:
    """Incremental decoder of HTTP/1.1 chunked transfer coding."""

    def __init__(self):
        self.buf = bytearray()
        self.remaining = 0
        self.state = "size"

    @property
    def done(self) -> bool:
        return self.state == "done"

    def feed(self, data: bytes) -> bytes:
        self.buf += data
        out = []
        while True:
            if self.state == "size":
                i = self.buf.find(b"\r\n")
                if i < 0:
                    break
                size = int(bytes(self.buf[:i]).split(b";")[0], 16)
                del self.buf[: i + 2]
                if size == 0:
                    self.state = "done"
                    break
                self.remaining, self.state = size, "data"
            elif self.state == "data":
                if not self.buf:
                    break
                take = min(self.remaining, len(self.buf))
                out.append(bytes(self.buf[:take]))
                del self.buf[:take]
                self.remaining -= take
                if self.remaining == 0:
                    self.state = "crlf"
            elif self.state == "crlf":
                if len(self.buf) < 2:
                    break
                del self.buf[:2]
                self.state = "size"
            else:
                break
        return b"".join(out)


def read_head(s: socket.socket, what: str) -> tuple[bytes, bytes]:
    """Reads a response's header block; returns it and the body bytes received with it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise RuntimeError(f"{what} closed before its headers")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def open_stream(port: int, command: str, timeout: float = 60.0):
    """POSTs /execute/stream; returns (socket, header block, body bytes already received)."""
    body = json.dumps({"command": command}).encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(
        b"POST /execute/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    )
    head, rest = read_head(s, "stream")
    if b" 200 " not in head.split(b"\r\n")[0] + b" ":
        raise RuntimeError(f"stream answered {head[:60]!r}")
    return s, head.decode("latin-1"), rest


# --------------------------------------------------------------------------------------------------------------------
# Tools


def run_json(args, timeout):
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"{Path(args[0]).name} printed no result (exit {result.returncode}): {result.stderr[-400:]}")
    return json.loads(lines[-1])


def wrk_time_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(f"wrk time {text!r}")
    value, unit = float(match.group(1)), match.group(2)
    return value * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}[unit]


def run_wrk(url: str, connections: int, threads: int, seconds: int, script: Path | None = None) -> dict:
    args = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    if script:
        args += ["-s", str(script)]
    args.append(url)
    result = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60)
    out = result.stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    total = re.search(r"(\d+) requests in", out)
    if not (rps and p50 and p99 and total):
        raise RuntimeError(f"wrk output not understood (exit {result.returncode}): {out[-400:]} {result.stderr[-400:]}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "connections": connections,
        "threads": threads,
        "seconds": seconds,
        "requests": int(total.group(1)),
        "rps": float(rps.group(1)),
        "p50_ms": wrk_time_ms(p50.group(1)),
        "p99_ms": wrk_time_ms(p99.group(1)),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": sum(int(x) for x in errors.groups()) if errors else 0,
    }


def compile_c(name: str, outdir: Path) -> Path:
    source = HERE / f"{name}.c"
    binary = outdir / name
    if not binary.exists() or binary.stat().st_mtime < source.stat().st_mtime:
        subprocess.run(["gcc", "-O2", "-Wall", "-pthread", "-o", str(binary), str(source)], check=True, timeout=120)
    return binary


def timed_run(args, timeout) -> float:
    t0 = time.perf_counter()
    subprocess.run(args, check=True, timeout=timeout, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def drop_page_cache() -> bool:
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3")
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------------------------------------------------
# Steps. Each returns a dict of raw figures; run() records an exception as the step's error.


class Context:
    def __init__(self, args, sizes, outdir: Path, workdir: Path):
        self.binary = args.bin
        self.sizes = sizes
        self.outdir = outdir
        self.workdir = workdir
        self.spawn_floor = compile_c("spawn_floor", outdir)
        self.launcher = compile_c("launcher", outdir)
        self.workers = os.cpu_count() or 1

    def sandboxd(self, extra=(), root: Path | None = None) -> Sandboxd:
        return Sandboxd(self.binary, root or self.workdir / "root", self.workdir, extra)


def step_startup(ctx: Context) -> dict:
    starts = ctx.sizes["starts"]
    root = ctx.workdir / "root"
    root.mkdir(exist_ok=True)
    sandboxd_ms, nginx_ms, errors = [], [], []
    for _ in range(starts):
        port = free_port()
        cmd = [ctx.binary, "--host", "127.0.0.1", "--port", str(port), "--root", str(root)]
        result = run_json([str(ctx.launcher), str(port), "5000", *cmd], timeout=30)
        (sandboxd_ms.append(result["ms"]) if result["ms"] is not None else errors.append(result))
    nginx = Nginx(ctx.workdir, ctx.workers)
    for _ in range(starts):
        port = free_port()
        result = run_json([str(ctx.launcher), str(port), "5000", *nginx.prepare(port)], timeout=30)
        (nginx_ms.append(result["ms"]) if result["ms"] is not None else errors.append(result))
    if errors:
        raise RuntimeError(f"starts that did not answer: {errors[:3]}")
    # Idle memory and threads: a fresh server, one answered GET /, then 0.5 s of quiet.
    with ctx.sandboxd() as server:
        time.sleep(0.5)
        idle = proc_status(server.pid)
    with Nginx(ctx.workdir, ctx.workers) as server:
        time.sleep(0.5)
        tree = process_tree(server.pid)
        nginx_rss_kb = sum(proc_status(pid).get("VmRSS", 0) for pid in tree)
    return {
        "starts": starts,
        "sandboxd_first_get_ms": sandboxd_ms,
        "sandboxd_first_get_median_ms": median(sandboxd_ms),
        "nginx_first_get_ms": nginx_ms,
        "nginx_first_get_median_ms": median(nginx_ms),
        "idle_rss_mib": idle["VmRSS"] / 1024,
        "idle_rss_anon_mib": idle.get("RssAnon", 0) / 1024,
        "idle_rss_file_mib": idle.get("RssFile", 0) / 1024,
        "idle_threads": idle["Threads"],
        "nginx_idle_rss_mib": nginx_rss_kb / 1024,
        "nginx_processes": len(tree),
    }


def best_of(runs: list[dict], key: str = "rps") -> dict:
    """The run with the highest `key`, with every run's figure beside it."""
    best = dict(max(runs, key=lambda run: run[key]))
    best[f"{key}_runs"] = [round(run[key], 1) for run in runs]
    return best


def step_get(ctx: Context) -> dict:
    """wrk against sandboxd and nginx, alternating, `rounds` times; the best round of each (the machine is shared)."""
    seconds, rounds = ctx.sizes["wrk_seconds"], ctx.sizes["rounds"]
    runs: dict[str, list] = {}
    with ctx.sandboxd() as sandboxd, Nginx(ctx.workdir, ctx.workers) as nginx, Sampler(sandboxd.pid) as sampler:
        for _ in range(rounds):
            for connections, threads in ((1, 1), (32, 2)):
                for name, server in (("sandboxd", sandboxd), ("nginx", nginx)):
                    result = run_wrk(f"http://127.0.0.1:{server.port}/", connections, threads, seconds)
                    runs.setdefault(f"{name}_c{connections}", []).append(result)
    out = {key: best_of(value) for key, value in runs.items()}
    out["sandboxd_sampled"] = sampler.summary()
    out["nginx_workers"] = ctx.workers
    out["rounds"] = rounds
    return out


def step_execute(ctx: Context) -> dict:
    """wrk POST /execute against sandboxd, alternating with the spawn floor, `rounds` times; the best of each."""
    seconds, rounds, floor = ctx.sizes["wrk_seconds"], ctx.sizes["rounds"], ctx.sizes["floor_seconds"]
    script = HERE / "execute.lua"
    runs: dict[str, list] = {}
    with ctx.sandboxd() as server, Sampler(server.pid) as sampler:
        url = f"http://127.0.0.1:{server.port}/execute"
        for _ in range(rounds):
            for connections, threads, workers in ((1, 1, 1), (8, 2, 2)):
                result = run_wrk(url, connections, threads, seconds, script)
                if result["non_2xx"] or result["socket_errors"]:
                    raise RuntimeError(f"/execute under wrk: {result}")
                runs.setdefault(f"sandboxd_c{connections}", []).append(result)
                args = [str(ctx.spawn_floor), "loop", str(workers), str(floor), "1000000000", "echo", "hi"]
                runs.setdefault(f"floor_{workers}w", []).append(run_json(args, timeout=floor + 60))
    out = {key: best_of(value, "rps" if key.startswith("sandboxd") else "spawns_per_s") for key, value in runs.items()}
    out["sandboxd_sampled"] = sampler.summary()
    out["rounds"] = rounds
    return out


def step_output(ctx: Context) -> dict:
    size = ctx.sizes["output_bytes"]
    line = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmnopqrstuvwxyz"
    command = f"sh -c 'yes {line} | head -c {size}'"
    body = json.dumps({"command": command}).encode()
    runs = []
    with ctx.sandboxd(extra=["--max-output-bytes", "33554432"]) as server:
        for _ in range(ctx.sizes["output_reps"]):
            time.sleep(0.2)
            before = proc_status(server.pid)["VmRSS"]
            hwm_reset = reset_peak_rss(server.pid)
            with Sampler(server.pid, 0.002) as sampler:
                t0 = time.perf_counter()
                status, _, payload = http_request(server.port, "POST", "/execute", body,
                                                  {"Content-Type": "application/json"}, timeout=120)
                elapsed = time.perf_counter() - t0
            after = proc_status(server.pid)
            answer = json.loads(payload)
            if status != 200 or answer["exit_code"] != 0 or len(answer["stdout"]) != size:
                raise RuntimeError(f"20 MB /execute: status {status}, exit {answer.get('exit_code')}, "
                                   f"{len(answer.get('stdout', ''))} bytes, truncated={answer.get('truncated')}")
            peak = after["VmHWM"] if hwm_reset else sampler.peak_rss_kb
            runs.append({
                "seconds": elapsed,
                "response_bytes": len(payload),
                "rss_before_mib": before / 1024,
                "peak_rss_mib": peak / 1024,
                "sampled_peak_rss_mib": sampler.peak_rss_kb / 1024,
                "rss_growth_mib": (peak - before) / 1024,
                "peak_from": "VmHWM" if hwm_reset else "sampled VmRSS",
            })
    direct = []
    for _ in range(ctx.sizes["output_reps"]):
        t0 = time.perf_counter()
        child = popen(["sh", "-c", f"yes {line} | head -c {size}"], stdout=subprocess.PIPE)
        got = 0
        while True:
            chunk = child.stdout.read1(1 << 20)
            if not chunk:
                break
            got += len(chunk)
        child.wait(60)
        CHILDREN.remove(child)
        direct.append(time.perf_counter() - t0)
    return {
        "output_bytes": size,
        "runs": runs,
        "seconds_median": median([r["seconds"] for r in runs]),
        "rss_growth_mib_max": max(r["rss_growth_mib"] for r in runs),
        "direct_pipe_seconds_median": median(direct),
    }


def tcp_receive(listener: socket.socket, timeout: float) -> tuple[int, float]:
    listener.settimeout(timeout)
    conn, _ = listener.accept()
    conn.settimeout(timeout)
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    got = 0
    t0 = time.perf_counter()
    with conn:
        while True:
            n = conn.recv_into(view)
            if not n:
                break
            got += n
    return got, time.perf_counter() - t0


def tcp_send(port: int, nbytes: int) -> None:
    """--tcp-send helper process: sends nbytes of zeros to 127.0.0.1:port in 1 MiB writes."""
    block = bytes(1 << 20)
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        left = nbytes
        while left > 0:
            n = min(left, len(block))
            s.sendall(block[:n] if n < len(block) else block)
            left -= n


def sendfile_send(port: int, source: str) -> None:
    """--sendfile-send helper process: sends the file to 127.0.0.1:port with sendfile, as the upload client does."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s, open(source, "rb") as f:
        s.sendfile(f)


def receive_into_file(listener: socket.socket, target: Path, use_splice: bool, timeout: float) -> tuple[int, float]:
    """The upload's ceiling, the receiving half: what arrives on one accepted connection written into `target` (on
    the same filesystem as sandboxd's root), with recv into a 1 MiB buffer + write, or with splice (socket → pipe →
    file, no copy through user space). Seconds from the accept to the last write."""
    listener.settimeout(timeout)
    conn, _ = listener.accept()
    conn.settimeout(timeout)
    got = 0
    t0 = time.perf_counter()
    with conn, open(target, "wb") as f:
        if use_splice:
            # splice needs a blocking socket (a timeout makes Python's socket non-blocking); poll bounds each wait.
            conn.setblocking(True)
            read_end, write_end = os.pipe()
            try:
                fcntl.fcntl(write_end, 1031, 1 << 20)  # F_SETPIPE_SZ: 1 MiB, as the recv buffer
                while True:
                    if not select.select([conn], [], [], timeout)[0]:
                        raise RuntimeError(f"the ceiling's sender sent nothing for {timeout} s")
                    n = os.splice(conn.fileno(), write_end, 1 << 20)
                    if not n:
                        break
                    got += n
                    while n:
                        n -= os.splice(read_end, f.fileno(), n)
            finally:
                os.close(read_end)
                os.close(write_end)
        else:
            view = memoryview(bytearray(1 << 20))
            while True:
                n = conn.recv_into(view)
                if not n:
                    break
                got += n
                f.write(view[:n])
    return got, time.perf_counter() - t0


def send_file_request(port: int, head: bytes, source: Path, tail: bytes, timeout: float) -> tuple[int, float, bytes]:
    """Sends `head`, then `source` with sendfile, then `tail`, on a connection of its own, and reads the answer to
    the server's close: (status, seconds from connecting to the close, the answer)."""
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s, open(source, "rb") as f:
        s.sendall(head)
        s.sendfile(f)
        if tail:
            s.sendall(tail)
        answer = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
    elapsed = time.perf_counter() - t0
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
    return status, elapsed, answer


def put_file(port: int, source: Path, name: str, timeout: float) -> tuple[int, float, bytes]:
    """`PUT /v1/files/{name}`: the raw body (no multipart)."""
    head = (f"PUT /v1/files/{name} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {source.stat().st_size}\r\n\r\n").encode()
    return send_file_request(port, head, source, b"", timeout)


def upload(port: int, source: Path, name: str, timeout: float) -> tuple[int, float, bytes]:
    """`POST /upload`: one multipart part holding the file."""
    boundary = "----sandboxd-bench-" + os.urandom(8).hex()
    preamble = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
                "Content-Type: application/octet-stream\r\n\r\n").encode()
    epilogue = f"\r\n--{boundary}--\r\n".encode()
    head = (f"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {len(preamble) + source.stat().st_size + len(epilogue)}\r\n\r\n").encode()
    return send_file_request(port, head + preamble, source, epilogue, timeout)


def download(port: int, path: str, timeout: float) -> tuple[int, int, float]:
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET /download/{path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        head, rest = read_head(s, "download")
        status = int(head.split(b" ", 2)[1])
        got = len(rest)
        while True:
            n = s.recv_into(view)
            if not n:
                break
            got += n
    return status, got, time.perf_counter() - t0


def step_transfer(ctx: Context) -> dict:
    """Best of `transfer_reps` runs for each figure (the limits and sandboxd alike); RSS growth is the largest seen.
    Dirty pages are written back (sync) before each write, so that no run pays for the one before it."""
    nbytes = ctx.sizes["transfer_bytes"]
    reps = ctx.sizes["transfer_reps"]
    mib = nbytes / MiB
    root = Path(tempfile.mkdtemp(prefix="transfer-", dir=ctx.workdir))
    source = root / "source.bin"
    out = {"bytes": nbytes, "reps": reps}
    runs = {key: [] for key in ("file_write", "file_write_fdatasync", "file_read", "file_read_warm", "tcp",
                                "ceiling_recv", "ceiling_splice", "upload", "put", "download", "upload_rss_growth",
                                "put_rss_growth", "download_rss_growth")}
    try:
        count = f"count={nbytes // MiB}"
        # File write to the same filesystem: plain (page cache; sandboxd does not fsync uploads) and with fdatasync.
        for conv in ([], ["conv=fdatasync"]):
            for _ in range(reps):
                source.unlink(missing_ok=True)
                os.sync()
                seconds = timed_run(["dd", "if=/dev/zero", f"of={source}", "bs=1M", count, *conv], timeout=300)
                runs["file_write_fdatasync" if conv else "file_write"].append(mib / seconds)
        # File read: with the page cache dropped if permitted, and warm.
        for _ in range(reps):
            out["page_cache_dropped"] = drop_page_cache()
            runs["file_read"].append(mib / timed_run(["dd", f"if={source}", "of=/dev/null", "bs=1M"], timeout=300))
        for _ in range(reps):
            runs["file_read_warm"].append(mib / timed_run(["dd", f"if={source}", "of=/dev/null", "bs=1M"], 300))
        # Raw loopback TCP: a sender process, this process receiving into one 1 MiB buffer (as the download does).
        for _ in range(reps):
            with socket.socket() as listener:
                listener.bind(("127.0.0.1", 0))
                listener.listen(1)
                sender = popen([sys.executable, __file__, "--tcp-send", str(listener.getsockname()[1]), str(nbytes)])
                got, seconds = tcp_receive(listener, 120)
                sender.wait(60)
                CHILDREN.remove(sender)
            if got != nbytes:
                raise RuntimeError(f"TCP received {got} of {nbytes}")
            runs["tcp"].append(mib / seconds)
        # The upload's real ceiling: the same bytes sent the same way (sendfile) over loopback to a receiver that
        # writes them into a file on the same filesystem, on the same two cores; both receivers, the faster counts.
        for _ in range(reps):
            for key, use_splice in (("ceiling_recv", False), ("ceiling_splice", True)):
                target = root / "ceiling.bin"
                os.sync()
                with socket.socket() as listener:
                    listener.bind(("127.0.0.1", 0))
                    listener.listen(1)
                    sender = popen([sys.executable, __file__, "--sendfile-send", str(listener.getsockname()[1]),
                                    str(source)])
                    got, seconds = receive_into_file(listener, target, use_splice, 120)
                    sender.wait(60)
                    CHILDREN.remove(sender)
                target.unlink()
                if got != nbytes:
                    raise RuntimeError(f"the ceiling's receiver got {got} of {nbytes}")
                runs[key].append(mib / seconds)
        # Upload (multipart, the client sends the file with sendfile), download (into a 1 MiB buffer), and the same
        # file as a raw PUT /v1/files. Each write starts as the ceiling's did: dirty pages written back and no other
        # written file of its size left in the page cache (here a second 1 GiB file still cached halved the next
        # write's rate: the page cache of this VM is reclaimed as it grows).
        with ctx.sandboxd(root=root) as server:
            def measured(call):
                """Runs `call` and returns its result and the server's peak RSS growth meanwhile, in MiB."""
                before = proc_status(server.pid)["VmRSS"]
                hwm = reset_peak_rss(server.pid)
                with Sampler(server.pid) as sampler:
                    result = call()
                peak = proc_status(server.pid)["VmHWM"] if hwm else sampler.peak_rss_kb
                out["rss_before_mib"] = before / 1024
                out["peak_from"] = "VmHWM" if hwm else "sampled VmRSS"
                return result, (peak - before) / 1024

            for index in range(reps):
                name = f"bench/upload-{index}.bin"
                os.sync()
                time.sleep(0.2)
                (status, seconds, answer), growth = measured(lambda: upload(server.port, source, name, 300))
                uploaded = root / name
                if status != 200 or not uploaded.exists() or uploaded.stat().st_size != nbytes:
                    raise RuntimeError(f"upload: status {status}: {answer[-200:]!r}")
                runs["upload"].append(mib / seconds)
                runs["upload_rss_growth"].append(growth)
                time.sleep(0.2)
                (status, got, seconds), growth = measured(lambda: download(server.port, name, 300))
                if status != 200 or got != nbytes:
                    raise RuntimeError(f"download: status {status}, {got} of {nbytes} bytes")
                runs["download"].append(mib / seconds)
                runs["download_rss_growth"].append(growth)
                uploaded.unlink()
                put_name = f"bench/put-{index}.bin"
                os.sync()
                time.sleep(0.2)
                (status, seconds, answer), growth = measured(lambda: put_file(server.port, source, put_name, 300))
                put = root / put_name
                if status not in (200, 201, 204) or not put.exists() or put.stat().st_size != nbytes:
                    raise RuntimeError(f"PUT /v1/files: status {status}: {answer[-200:]!r}")
                runs["put"].append(mib / seconds)
                runs["put_rss_growth"].append(growth)
                put.unlink()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for key, values in runs.items():
        if not values:
            continue
        best = max(values)  # the fastest run, and the largest RSS growth
        if key == "file_read" and not out.get("page_cache_dropped"):
            key = "file_read_unknown_cache"
        elif key == "file_read":
            key = "file_read_cold"
        out[f"{key}_mib_s" if not key.endswith("rss_growth") else f"{key}_mib"] = best
        out[f"{key}_runs"] = [round(v, 2) for v in values]
    return out


def stamp_program(lines: int) -> str:
    return ("import time\n"
            f"for i in range({lines}):\n"
            "    print(time.monotonic_ns(), flush=True)\n"
            "    time.sleep(0.01)\n")


def parse_stamps(block: bytes, received_ns: int, latencies: list) -> None:
    for event in block.split(b"\n\n"):
        if event.startswith(b"event: stdout\ndata: "):
            latencies.append((received_ns - int(event[20:])) / 1e6)


def step_stream(ctx: Context) -> dict:
    lines = ctx.sizes["stream_lines"]
    program = stamp_program(lines)
    seq_n = ctx.sizes["seq_n"]
    out = {"lines": lines, "seq_n": seq_n}
    with ctx.sandboxd() as server, Sampler(server.pid) as sampler:
        # Write → event latency: the child prints time.monotonic_ns() every 10 ms, the client compares on arrival.
        sock, _, rest = open_stream(server.port, "python3 -c " + shlex.quote(program), timeout=lines * 0.01 + 30)
        latencies = []
        dechunker = Dechunker()
        pending = b""
        with sock:
            data = rest
            deadline = time.monotonic() + lines * 0.01 + 30
            while time.monotonic() < deadline:
                received = time.monotonic_ns()
                pending += dechunker.feed(data)
                cut = pending.rfind(b"\n\n")
                if cut >= 0:
                    parse_stamps(pending[:cut], received, latencies)
                    pending = pending[cut + 2 :]
                if dechunker.done:
                    break
                data = sock.recv(65536)
                if not data:
                    break
        if len(latencies) != lines:
            raise RuntimeError(f"stream latency: {len(latencies)} of {lines} stamp events")
        out["latency_p50_ms"] = percentile(latencies, 50)
        out["latency_p99_ms"] = percentile(latencies, 99)
        out["latency_max_ms"] = max(latencies)
        # Events/s for `seq 1 N`, from sending the request to the `done` event.
        t0 = time.perf_counter()
        sock, _, rest = open_stream(server.port, f"seq 1 {seq_n}", timeout=120)
        events = 0
        dechunker = Dechunker()
        pending = b""
        with sock:
            data = rest
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                pending += dechunker.feed(data)
                cut = pending.rfind(b"\n\n")
                if cut >= 0:
                    events += pending.count(b"event: stdout\n", 0, cut + 2)
                    pending = pending[cut + 2 :]
                if dechunker.done:
                    break
                data = sock.recv(1 << 20)
                if not data:
                    break
        seconds = time.perf_counter() - t0
        if events != seq_n:
            raise RuntimeError(f"seq stream: {events} of {seq_n} events")
        out["events_per_s"] = events / seconds
        out["seq_seconds"] = seconds
    out["sandboxd_sampled"] = sampler.summary()
    # The limit: the same child writing to a pipe this process reads directly.
    child = popen([sys.executable, "-c", program], stdout=subprocess.PIPE)
    pipe_latencies = []
    pending = b""
    deadline = time.monotonic() + lines * 0.01 + 30
    while time.monotonic() < deadline:
        data = os.read(child.stdout.fileno(), 65536)
        received = time.monotonic_ns()
        if not data:
            break
        pending += data
        cut = pending.rfind(b"\n")
        for stamp in pending[:cut].split(b"\n") if cut >= 0 else []:
            pipe_latencies.append((received - int(stamp)) / 1e6)
        pending = pending[cut + 1 :]
    child.wait(30)
    CHILDREN.remove(child)
    out["pipe_latency_p50_ms"] = percentile(pipe_latencies, 50)
    out["pipe_latency_p99_ms"] = percentile(pipe_latencies, 99)
    t0 = time.perf_counter()
    child = popen(["seq", "1", str(seq_n)], stdout=subprocess.PIPE)
    count = 0
    while True:
        data = os.read(child.stdout.fileno(), 1 << 20)
        if not data:
            break
        count += data.count(b"\n")
    child.wait(30)
    CHILDREN.remove(child)
    out["pipe_lines_per_s"] = count / (time.perf_counter() - t0)
    return out


def probe(port: int, interval_ms: float, max_seconds: float) -> None:
    """--probe helper process: GET / on a new connection every interval until stdin closes; prints `ready` after the
    first answer (the caller waits for it, so a slow interpreter start cannot leave the burst without samples), and
    at the end JSON samples."""
    samples, errors = [], 0
    deadline = time.monotonic() + max_seconds
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    while time.monotonic() < deadline:
        t0 = time.monotonic_ns()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.sendall(request)
                data = b""
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            ok = data.startswith(b"HTTP/1.1 200")
        except OSError:
            ok = False
        t1 = time.monotonic_ns()
        if ok:
            samples.append((t0, (t1 - t0) / 1e6))
            if len(samples) == 1:
                print("ready", flush=True)
        else:
            errors += 1
        ready, _, _ = select.select([sys.stdin], [], [], interval_ms / 1000)
        if ready and not sys.stdin.read(1):
            break
    print(json.dumps({"samples": samples, "errors": errors}), flush=True)


async def one_request(port: int, request: bytes, timeout: float, done_at: list) -> bytes:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    try:
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout)
        done_at.append(time.perf_counter())
        return answer
    finally:
        writer.close()


async def burst(port: int, request: bytes, count: int, timeout: float):
    done_at: list[float] = []
    t0 = time.perf_counter()
    start_ns = time.monotonic_ns()
    results = await asyncio.gather(*(one_request(port, request, timeout, done_at) for _ in range(count)),
                                   return_exceptions=True)
    elapsed = time.perf_counter() - t0
    return results, elapsed, start_ns, time.monotonic_ns(), [t - t0 for t in done_at]


def listen_drops() -> dict:
    """TcpExt ListenOverflows and ListenDrops from /proc/net/netstat (the whole host's network namespace)."""
    try:
        with open("/proc/net/netstat") as f:
            lines = f.read().splitlines()
        for names, values in zip(lines[::2], lines[1::2]):
            if names.startswith("TcpExt:"):
                table = dict(zip(names.split()[1:], (int(v) for v in values.split()[1:])))
                return {k: table.get(k, 0) for k in ("ListenOverflows", "ListenDrops", "TCPReqQFullDrop")}
    except OSError:
        pass
    return {}


def concurrent_run(ctx: Context, path: str, check: bytes) -> dict:
    count = ctx.sizes["concurrent"]
    body = json.dumps({"command": "sleep 1"}).encode()
    request = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    with ctx.sandboxd(extra=["--max-connections", "4096"]) as server:
        time.sleep(0.2)
        idle_threads = proc_status(server.pid)["Threads"]
        prober = popen([sys.executable, __file__, "--probe", str(server.port), "5", "120"],
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if prober.stdout.readline().strip() != "ready":
            raise RuntimeError("the GET / probe never had an answer")
        time.sleep(ctx.sizes["probe_idle_seconds"])  # the probe's baseline: the same GET / on the idle server
        drops_before = listen_drops()
        with Sampler(server.pid, 0.005) as sampler:
            results, seconds, start_ns, end_ns, finished = asyncio.run(burst(server.port, request, count, 60))
        drops_after = listen_drops()
        prober.stdin.close()
        probe_out = json.loads(prober.stdout.read())
        prober.wait(30)
        CHILDREN.remove(prober)
    failures = [r for r in results
                if isinstance(r, BaseException) or not (r.startswith(b"HTTP/1.1 200") and check in r)]
    during = [lat for t, lat in probe_out["samples"] if start_ns <= t <= end_ns]
    idle = [lat for t, lat in probe_out["samples"] if t < start_ns]
    out = {
        "count": count,
        "seconds": seconds,
        "failures": len(failures),
        "failure_examples": [repr(f)[:200] for f in failures[:3]],
        "answer_p50_s": percentile(finished, 50),
        "answer_p99_s": percentile(finished, 99),
        "idle_threads": idle_threads,
        "listen_drops_during": {k: drops_after.get(k, 0) - v for k, v in drops_before.items()},
        **sampler.summary(),
        "get_probes_during": len(during),
        "get_probe_errors": probe_out["errors"],
        "get_p50_ms": percentile(during, 50),
        "get_p99_ms": percentile(during, 99),
        "get_max_ms": max(during) if during else None,
        "get_probes_idle": len(idle),
        "get_idle_p50_ms": percentile(idle, 50),
        "get_idle_p99_ms": percentile(idle, 99),
    }
    if failures:
        raise RuntimeError(f"{len(failures)} of {count} concurrent {path} failed: {out['failure_examples']}")
    return out


def step_concurrency(ctx: Context) -> dict:
    """Executes, streams and the spawn floor, alternating, `rounds` times; for each the round that finished first
    (with its own threads, RSS and GET / figures; every round's total is kept)."""
    count = ctx.sizes["concurrent"]
    runs: dict[str, list] = {"execute": [], "stream": [], "floor": []}
    for _ in range(ctx.sizes["rounds"]):
        runs["execute"].append(concurrent_run(ctx, "/execute", b'"exit_code":0'))
        runs["stream"].append(concurrent_run(ctx, "/execute/stream", b'event: done\ndata: {"exit_code":0'))
        floor = [str(ctx.spawn_floor), "burst", str(count), "60", "sleep", "1"]
        runs["floor"].append(run_json(floor, timeout=90))
    out = {}
    for key, values in runs.items():
        best = dict(min(values, key=lambda run: run["seconds"]))
        best["seconds_runs"] = [round(run["seconds"], 3) for run in values]
        if key != "floor":
            best["peak_threads_all_rounds"] = max(run["peak_threads"] for run in values)
            best["get_p99_ms_all_rounds"] = [run["get_p99_ms"] for run in values]
        out[key] = best
    return out


# --------------------------------------------------------------------------------------------------------------------
# gRPC (`--grpc-port`): process.v1.ProcessService over HTTP/2 without TLS. The client side needs grpcio and the
# k8s-agent-sandbox SDK's process.v1 stubs (Tests/e2e/requirements.txt), imported only by these steps.


def grpc_modules():
    import grpc
    from k8s_agent_sandbox.commands._process_stubs import process_pb2, process_pb2_grpc

    return grpc, process_pb2, process_pb2_grpc


EXECUTE_PATH = "/process.v1.ProcessService/Execute"


def grpc_frame(message: bytes) -> bytes:
    """One gRPC length-prefixed message: not compressed (0), the length (4 bytes, big-endian), the message."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def run_h2load(url: str, body: Path, clients: int, threads: int, seconds: float) -> dict:
    """h2load posting `body` (a gRPC frame) as a unary call: `clients` connections with one call in flight on each,
    as wrk's connections carry one request each, for `seconds`."""
    args = ["h2load", f"-c{clients}", f"-t{threads}", "-m1", f"-D{seconds}", "-d", str(body),
            "-H", "content-type: application/grpc", "-H", "te: trailers", url]
    result = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60)
    out = result.stdout
    finished = re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", out)
    requests = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                         r"(\d+) errored, (\d+) timeout", out)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    data = re.search(r"traffic: .*?, \S+ \((\d+)\) data", out)
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", out)
    if not (finished and requests and codes and data and mean):
        raise RuntimeError(f"h2load output not understood (exit {result.returncode}): {out[-400:]} "
                           f"{result.stderr[-400:]}")
    done, succeeded, failed, errored, timeout = (int(x) for x in requests.groups()[2:])
    return {
        "clients": clients,
        "threads": threads,
        "seconds": seconds,
        "requests": done,
        "succeeded": succeeded,
        "failed": failed + errored + timeout,
        "status_2xx": int(codes.group(1)),
        "data_bytes": int(data.group(1)),
        "rps": float(finished.group(1)),
        "mean_ms": wrk_time_ms(mean.group(1)),
    }


def floor_loop(ctx: Context, workers: int, seconds: float) -> dict:
    args = [str(ctx.spawn_floor), "loop", str(workers), str(seconds), "1000000000", "echo", "hi"]
    return run_json(args, timeout=seconds + 60)


def step_grpc_execute(ctx: Context) -> dict:
    """h2load of unary Execute calls (`echo hi`, and an empty command: INVALID_ARGUMENT at once, no spawn), alternating
    with the spawn floor as step_execute does, `rounds` times; the best of each."""
    grpc, pb, _ = grpc_modules()
    seconds, rounds, floor = ctx.sizes["wrk_seconds"], ctx.sizes["rounds"], ctx.sizes["floor_seconds"]
    calls = {
        "echo": pb.ExecuteRequest(config=pb.ProcessConfig(command=["echo", "hi"])).SerializeToString(),
        "noop": pb.ExecuteRequest(config=pb.ProcessConfig(command=[])).SerializeToString(),
    }
    bodies = {}
    for name, message in calls.items():
        bodies[name] = ctx.workdir / f"grpc-execute-{name}.bin"
        bodies[name].write_bytes(grpc_frame(message))
    # Each answer's DATA: the echo's one ExecuteResponse frame; the no-op's none (its status is in the trailers).
    echo_answer = grpc_frame(pb.ExecuteResponse(exit_code=0, stdout=b"hi\n").SerializeToString())
    answer_bytes = {"echo": len(echo_answer), "noop": 0}
    grpc_port = free_port()
    runs: dict[str, list] = {}
    with ctx.sandboxd(extra=["--grpc-port", str(grpc_port)]) as server:
        # The same bytes h2load sends, through grpcio once: the echo answers OK with `hi`, the no-op INVALID_ARGUMENT.
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=10)
            call = channel.unary_unary(EXECUTE_PATH, request_serializer=lambda raw: raw,
                                       response_deserializer=lambda raw: raw)
            answer = call(bodies["echo"].read_bytes()[5:], timeout=30)
            if grpc_frame(answer) != echo_answer:
                raise RuntimeError(f"gRPC Execute of echo hi answered {pb.ExecuteResponse.FromString(answer)}")
            try:
                call(bodies["noop"].read_bytes()[5:], timeout=30)
                raise RuntimeError("gRPC Execute of an empty command succeeded")
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.INVALID_ARGUMENT:
                    raise RuntimeError(f"gRPC Execute of an empty command: {error.code()} {error.details()}")
        url = f"http://127.0.0.1:{grpc_port}{EXECUTE_PATH}"
        with Sampler(server.pid) as sampler:
            for _ in range(rounds):
                for clients, threads, workers in ((1, 1, 1), (8, 2, 2)):
                    for name in ("echo", "noop"):
                        result = run_h2load(url, bodies[name], clients, threads, seconds)
                        # h2load sees HTTP statuses only (200 for every gRPC answer): each answer's DATA shows
                        # which it was.
                        if (result["failed"] or result["status_2xx"] != result["requests"] or not result["requests"]
                                or result["data_bytes"] != result["succeeded"] * answer_bytes[name]):
                            raise RuntimeError(f"gRPC Execute {name} under h2load: {result} "
                                               f"(expected {answer_bytes[name]} data bytes per answer)")
                        runs.setdefault(f"{name}_c{clients}", []).append(result)
                    runs.setdefault(f"floor_{workers}w", []).append(floor_loop(ctx, workers, floor))
    out = {key: best_of(value, "spawns_per_s" if key.startswith("floor") else "rps") for key, value in runs.items()}
    out["sandboxd_sampled"] = sampler.summary()
    out["rounds"] = rounds
    return out


def keepalive_probe(port: int, interval_ms: float, max_seconds: float) -> None:
    """--keepalive-probe helper process: GET / on one keep-alive connection every interval until stdin closes;
    prints `ready` after the first answer, and at the end JSON samples (monotonic ns at the start, ms) and errors.
    A process of its own, as --probe: a thread beside the gRPC client would wait for that client's share of the
    GIL, and count it as the server's."""
    import http.client

    samples, errors = [], []
    deadline = time.monotonic() + max_seconds
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    while time.monotonic() < deadline:
        t0 = time.monotonic_ns()
        try:
            connection.request("GET", "/")
            response = connection.getresponse()
            response.read()
            if response.status == 200:
                samples.append((t0, (time.monotonic_ns() - t0) / 1e6))
                if len(samples) == 1:
                    print("ready", flush=True)
            else:
                errors.append(f"GET / {response.status}")
        except (OSError, http.client.HTTPException) as error:
            errors.append(repr(error))
            connection.close()
        ready, _, _ = select.select([sys.stdin], [], [], interval_ms / 1000)
        if ready and not sys.stdin.read(1):
            break
    connection.close()
    print(json.dumps({"samples": samples, "errors": errors[:100], "error_count": len(errors)}), flush=True)


def grpc_starts_run(ctx: Context) -> dict:
    """`concurrent` Start streams of `sleep 1` at once over 8 grpc.aio channels: the time from the first call to the
    last stream's end, with the server's threads and RSS sampled and a keep-alive GET / every 5 ms meanwhile (from
    a process of its own)."""
    grpc, pb, pb_grpc = grpc_modules()
    import grpc.aio

    count = ctx.sizes["concurrent"]
    grpc_port = free_port()

    async def run_all() -> tuple[float, int, int, list]:
        channels = [grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") for _ in range(8)]
        try:
            for channel in channels:
                await asyncio.wait_for(channel.channel_ready(), 10)
            stubs = [pb_grpc.ProcessServiceStub(channel) for channel in channels]
            request = pb.StartRequest(config=pb.ProcessConfig(command=["sleep", "1"]))

            async def one(index: int):
                exit_code = None
                async for event in stubs[index % len(stubs)].Start(request, timeout=60):
                    if event.HasField("exit"):
                        exit_code = event.exit.exit_code
                return exit_code

            start_ns = time.monotonic_ns()
            t0 = time.perf_counter()
            codes = await asyncio.gather(*(one(i) for i in range(count)), return_exceptions=True)
            return time.perf_counter() - t0, start_ns, time.monotonic_ns(), codes
        finally:
            for channel in channels:
                await channel.close()

    with ctx.sandboxd(extra=["--grpc-port", str(grpc_port)]) as server:
        time.sleep(0.2)
        idle_threads = proc_status(server.pid)["Threads"]
        prober = popen([sys.executable, __file__, "--keepalive-probe", str(server.port), "5", "120"],
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if prober.stdout.readline().strip() != "ready":
            raise RuntimeError("the GET / probe never had an answer")
        time.sleep(ctx.sizes["probe_idle_seconds"])  # the probe's baseline: the same GET / on the idle server
        with Sampler(server.pid, 0.005) as sampler:
            seconds, start_ns, end_ns, codes = asyncio.run(run_all())
        prober.stdin.close()
        probe_out = json.loads(prober.stdout.read())
        prober.wait(30)
        CHILDREN.remove(prober)
    samples, get_errors = probe_out["samples"], probe_out["errors"]
    failures = [code for code in codes if code != 0]
    during = [lat for t, lat in samples if start_ns <= t <= end_ns]
    idle = [lat for t, lat in samples if t < start_ns]
    out = {
        "count": count,
        "channels": 8,
        "seconds": seconds,
        "failures": len(failures),
        "failure_examples": [repr(f)[:200] for f in failures[:3]],
        "idle_threads": idle_threads,
        **sampler.summary(),
        "get_probes_during": len(during),
        "get_probe_errors": probe_out["error_count"],
        "get_error_examples": get_errors[:3],
        "get_p50_ms": percentile(during, 50),
        "get_p99_ms": percentile(during, 99),
        "get_max_ms": max(during) if during else None,
        "get_probes_idle": len(idle),
        "get_idle_p99_ms": percentile(idle, 99),
    }
    if failures or get_errors:
        raise RuntimeError(f"{len(failures)} of {count} gRPC Starts did not exit 0, {len(get_errors)} GET / "
                           f"failed: {out['failure_examples']} {out['get_error_examples']}")
    return out


def step_grpc_concurrency(ctx: Context) -> dict:
    """gRPC Start bursts and the spawn floor's burst, alternating, `rounds` times; the burst that finished first (with
    its own figures), the most threads and every GET / p99 of all rounds."""
    count = ctx.sizes["concurrent"]
    runs: dict[str, list] = {"start": [], "floor": []}
    for _ in range(ctx.sizes["rounds"]):
        runs["start"].append(grpc_starts_run(ctx))
        runs["floor"].append(run_json([str(ctx.spawn_floor), "burst", str(count), "60", "sleep", "1"], timeout=90))
    out = {}
    for key, values in runs.items():
        best = dict(min(values, key=lambda run: run["seconds"]))
        best["seconds_runs"] = [round(run["seconds"], 3) for run in values]
        out[key] = best
    out["start"]["peak_threads_all_rounds"] = max(run["peak_threads"] for run in runs["start"])
    out["start"]["get_p99_ms_all_rounds"] = [run["get_p99_ms"] for run in runs["start"]]
    return out


def step_grpc_idle(ctx: Context) -> dict:
    """Idle RSS of a fresh server without and with `--grpc-port`, 0.5 s after one request of each kind it serves:
    `GET /` and `POST /execute`, and with gRPC also an Execute and a Start."""
    out = {}
    for name, extra in (("without", []), ("with", ["--grpc-port", str(free_port())])):
        with ctx.sandboxd(extra=extra) as server:
            body = json.dumps({"command": "echo hi"}).encode()
            status, _, payload = http_request(server.port, "POST", "/execute", body,
                                              {"Content-Type": "application/json"}, timeout=30)
            if status != 200 or json.loads(payload).get("exit_code") != 0:
                raise RuntimeError(f"POST /execute answered {status}: {payload[:200]!r}")
            if extra:
                grpc, pb, pb_grpc = grpc_modules()
                with grpc.insecure_channel(f"127.0.0.1:{extra[1]}") as channel:
                    grpc.channel_ready_future(channel).result(timeout=10)
                    stub = pb_grpc.ProcessServiceStub(channel)
                    config = pb.ProcessConfig(command=["echo", "hi"])
                    answer = stub.Execute(pb.ExecuteRequest(config=config), timeout=30)
                    events = list(stub.Start(pb.StartRequest(config=config), timeout=30))
                if answer.exit_code != 0 or not events or events[-1].exit.exit_code != 0:
                    raise RuntimeError(f"gRPC Execute answered {answer}; Start's last event {events[-1:]}")
            time.sleep(0.5)
            status = proc_status(server.pid)
        out[f"{name}_grpc_rss_mib"] = status["VmRSS"] / 1024
        out[f"{name}_grpc_rss_anon_mib"] = status.get("RssAnon", 0) / 1024
        out[f"{name}_grpc_rss_file_mib"] = status.get("RssFile", 0) / 1024
        out[f"{name}_grpc_threads"] = status["Threads"]
    return out


# --------------------------------------------------------------------------------------------------------------------
# Directory watches (`GET /v1/watch`, the same core as gRPC WatchDir), over HTTP so that the client is a socket.


def open_watch(port: int, path: str, recursive: bool, timeout: float = 10.0) -> tuple[socket.socket, bytes]:
    """GET /v1/watch; returns the socket and the bytes after the head once the 200 is in (the watch is set up)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(f"GET /v1/watch?path={path}&recursive={'true' if recursive else 'false'} HTTP/1.1\r\n"
              "Host: 127.0.0.1\r\n\r\n".encode())
    head, rest = read_head(s, "watch")
    if not head.startswith(b"HTTP/1.1 200"):
        s.close()
        raise RuntimeError(f"GET /v1/watch?path={path}: {head[:200]!r}")
    return s, rest


def watch_latencies(ctx: Context, debounce: str) -> list[float]:
    """Files created and closed one at a time in a watched directory: ms from each close to its event's arrival."""
    root = ctx.workdir / "root"
    watched = root / f"watch-latency-{debounce}"
    watched.mkdir(parents=True, exist_ok=True)
    latencies = []
    with ctx.sandboxd(extra=["--watch-debounce", debounce]) as server:
        s, pending = open_watch(server.port, watched.name, False)
        with s:
            for index in range(ctx.sizes["watch_files"]):
                needle = f'/f{index}.txt"'.encode()
                with open(watched / f"f{index}.txt", "wb") as f:
                    f.write(b"x")
                closed = time.perf_counter()
                deadline = closed + 10
                while needle not in pending:
                    s.settimeout(max(0.01, deadline - time.perf_counter()))
                    chunk = s.recv(65536)
                    if not chunk:
                        raise RuntimeError("the watch ended before the event")
                    pending += chunk
                latencies.append((time.perf_counter() - closed) * 1000)
                pending = pending[pending.index(needle) + len(needle):]
    shutil.rmtree(watched, ignore_errors=True)
    return latencies


def step_watch(ctx: Context) -> dict:
    """A file's close to its event on the client (with the default 250 ms window and with none), and the server's
    memory and threads with 64 recursive watches of one tree of `watch_tree_dirs` × 20 files."""
    out = {}
    for debounce, key in (("0.25", "latency"), ("0", "latency_no_debounce")):
        values = watch_latencies(ctx, debounce)
        out[f"{key}_p50_ms"] = percentile(values, 50)
        out[f"{key}_p99_ms"] = percentile(values, 99)
    dirs = ctx.sizes["watch_tree_dirs"]
    tree = ctx.workdir / "root" / "watch-tree"
    for d in range(dirs):
        (tree / f"d{d}").mkdir(parents=True, exist_ok=True)
        for f in range(20):
            (tree / f"d{d}" / f"f{f}").write_bytes(b"")
    watches = 64
    with ctx.sandboxd(extra=["--max-watches", str(watches)]) as server:
        time.sleep(0.5)
        before = proc_status(server.pid)
        sockets = []
        try:
            t0 = time.perf_counter()
            for _ in range(watches):
                sockets.append(open_watch(server.port, tree.name, True, timeout=60)[0])
            out["watches_set_up_s"] = time.perf_counter() - t0
            time.sleep(0.5)
            after = proc_status(server.pid)
        finally:
            for s in sockets:
                s.close()
    shutil.rmtree(tree, ignore_errors=True)
    watched_dirs = watches * (dirs + 1)
    out.update({
        "watches": watches, "tree_dirs": dirs + 1, "tree_files": dirs * 20,
        "threads_before": before["Threads"], "threads_with_watches": after["Threads"],
        "rss_growth_mib": (after["VmRSS"] - before["VmRSS"]) / 1024,
        "bytes_per_watched_dir": (after["VmRSS"] - before["VmRSS"]) * 1024 / watched_dirs,
    })
    return out


# --------------------------------------------------------------------------------------------------------------------
# Scale: concurrent streams past 1,000, each size against a fresh server with a descriptor limit raised for it.

SCALE_NOFILE = 65536  # this step's descriptor limit, for the server (inherited) and for this script's client sockets
SCALE_SPARE = 64  # connections and processes allowed beyond the streams: the GET / probe and stragglers


def scale_descriptors(count: int) -> int:
    """Descriptors sandboxd may hold with `--max-connections` and `--max-processes` of `count` + SCALE_SPARE: its
    reserve (64) and 3 per connection and 3 per running command (DescriptorBudget in Sources/)."""
    return 64 + 6 * (count + SCALE_SPARE)


def scale_cap(nofile: int) -> int:
    """The most streams a descriptor limit of `nofile` lets this step run: a stream of `sleep` holds 3 of the server's
    descriptors (its socket and the command's stdout and stderr pipes; measured, and sampled by the step), fewer than
    its budget's 6; the server's own (about 20) and the spares' take the rest. This script holds one socket per stream,
    the floor one pipe per `sleep`."""
    return max(1, (nofile - 64 - 3 * SCALE_SPARE) // 3)


def raise_nofile(wanted: int) -> tuple[int, str | None]:
    """Raises this process's soft and hard descriptor limits to `wanted` (root may, up to fs.nr_open); the processes
    it starts inherit them. Returns the soft limit now in force and, if it is lower than `wanted`, why."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted, None
        except (ValueError, OSError) as error:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            return hard, f"cannot raise the descriptor limit to {wanted} ({error}); {hard} is the hard limit"
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    return max(soft, wanted), None


def process_start(pid: int) -> int | None:
    """A process's start time (field 22 of /proc/<pid>/stat), which tells it from a later process with its pid."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rpartition(")")[2].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def children_of(pid: int) -> list[int]:
    """The direct children of every thread of `pid`."""
    children = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    children.extend(int(c) for c in f.read().split())
            except OSError:
                pass
    except OSError:
        pass
    return children


def end_left_behind(processes: dict[int, int | None]) -> int:
    """SIGKILLs those of `processes` (pid → start time) that still run as the same process; returns how many."""
    ended = 0
    for pid, start in processes.items():
        if start is not None and process_start(pid) == start:
            try:
                os.kill(pid, signal.SIGKILL)
                ended += 1
            except OSError:
                pass
    return ended


class ChildWatcher(BackgroundLoop):
    """Counts a server's children every 50 ms while a burst runs: the most commands running at once, and the server's
    descriptors when they were most (read at most every 0.25 s); reads the memory of 20 of them once 20 run (what a
    pod pays per command outside the server)."""

    def __init__(self, pid: int):
        self.pid = pid
        self.peak = 0
        self.sampled: list[dict] = []
        self.descriptors: int | None = None
        super().__init__()

    def _run(self):
        counted_at = 0.0
        while not self._stop.is_set():
            children = children_of(self.pid)
            if len(children) > self.peak:
                self.peak = len(children)
                if time.monotonic() - counted_at >= 0.25:
                    try:
                        self.descriptors = len(os.listdir(f"/proc/{self.pid}/fd"))
                        counted_at = time.monotonic()
                    except OSError:
                        pass
            if not self.sampled and len(children) >= 20:
                self.sampled = [proc_status_extra(child) for child in children[:20]]
            self._stop.wait(0.05)


def proc_status_extra(pid: int) -> dict:
    """VmRSS, RssAnon and VmPTE (page tables) of a process, kB."""
    fields = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "RssAnon", "VmPTE"):
                    fields[key] = int(value.split()[0])
    except OSError:
        pass
    return fields


def server_nofile(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/limits") as f:
            for line in f:
                if line.startswith("Max open files"):
                    return int(line.split()[3])
    except (OSError, ValueError, IndexError):
        pass
    return None


def budget_lines(logdir: Path) -> tuple[str | None, str | None]:
    """The budget the server derived at start (its last `descriptor limit …` log line) and, if it logged one, its
    warning that the budget exceeds the limit."""
    try:
        lines = (logdir / "sandboxd.log").read_text(errors="replace").splitlines()
    except OSError:
        return None, None
    starts = [i for i, line in enumerate(lines) if "descriptor limit" in line and " info " in line]
    if not starts:
        return None, None
    budget = lines[starts[-1]].split("sandboxd: ", 1)[-1]
    warning = next((line.split("sandboxd: ", 1)[-1] for line in lines[starts[-1] + 1 : starts[-1] + 4]
                    if "may need" in line), None)
    return budget, warning


def answer_kind(answer, check: bytes) -> str:
    """`ok`, or what went wrong with one stream: the exception, or the answer's status line and the end of its body
    (a refusal's message)."""
    if isinstance(answer, BaseException):
        return f"{type(answer).__name__}: {answer}"[:200]
    if check in answer:
        return "ok"
    if not answer:
        return "closed without an answer"
    head, _, body = answer.partition(b"\r\n\r\n")
    return (head.split(b"\r\n", 1)[0] + b" " + body[-160:]).decode("latin-1").replace("\r\n", " ")[:240]


def scale_run(ctx: Context, count: int) -> dict:
    """`count` streams of `sleep 2` opened at once against a fresh server: the time from the first connection to the
    last stream's end, its peak threads and RSS, RSS per command, and GET / meanwhile from a process of its own.
    Whatever happens, the server and the probe are ended and no `sleep` of this run is left running."""
    check = b'event: done\ndata: {"exit_code":0'
    body = json.dumps({"command": "sleep 2"}).encode()
    request = (f"POST /execute/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    limits = ["--max-connections", str(count + SCALE_SPARE), "--max-processes", str(count + SCALE_SPARE),
              "--shutdown-timeout", "3"]
    out: dict = {"count": count}
    left: dict[int, int | None] = {}
    try:
        with ctx.sandboxd(extra=limits) as server:
            prober = None
            try:
                time.sleep(0.2)
                out["server_nofile"] = server_nofile(server.pid)
                out["server_budget"], out["server_budget_warning"] = budget_lines(ctx.workdir)
                prober = popen([sys.executable, __file__, "--probe", str(server.port), "5", "180"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                if prober.stdout.readline().strip() != "ready":
                    raise RuntimeError("the GET / probe never had an answer")
                time.sleep(ctx.sizes["probe_idle_seconds"])  # the probe's baseline: the same GET / on the idle server
                idle = proc_status(server.pid)
                reset_peak_rss(server.pid)
                drops_before = listen_drops()
                with Sampler(server.pid, 0.01) as sampler, ChildWatcher(server.pid) as watcher:
                    results, seconds, start_ns, end_ns, finished = asyncio.run(burst(server.port, request, count, 90))
                drops_after = listen_drops()
                after = proc_status(server.pid)
                prober.stdin.close()
                probe_out = json.loads(prober.stdout.read())
                prober.wait(30)
                CHILDREN.remove(prober)
                prober = None
            finally:
                left = {pid: process_start(pid) for pid in children_of(server.pid)}
                if prober is not None:
                    end_process(prober, grace=5)
    finally:
        out["left_behind_ended"] = end_left_behind(left)
    kinds: dict[str, int] = {}
    for answer in results:
        kind = answer_kind(answer, check)
        kinds[kind] = kinds.get(kind, 0) + 1
    failures = count - kinds.pop("ok", 0)
    during = [lat for t, lat in probe_out["samples"] if start_ns <= t <= end_ns]
    idle_probes = [lat for t, lat in probe_out["samples"] if t < start_ns]
    peak_kb = max(sampler.peak_rss_kb, after.get("VmHWM", 0))
    children = watcher.sampled
    out.update({
        "seconds": seconds,
        "answer_p50_s": percentile(finished, 50),
        "answer_p99_s": percentile(finished, 99),
        "failures": failures,
        "failure_kinds": dict(sorted(kinds.items(), key=lambda kv: -kv[1])[:5]),
        "commands_running_peak": watcher.peak,
        "server_descriptors_most_running": watcher.descriptors,
        "idle_threads": idle.get("Threads"),
        "idle_rss_mib": idle.get("VmRSS", 0) / 1024,
        "peak_threads": sampler.peak_threads,
        "peak_rss_mib": peak_kb / 1024,
        "rss_per_command_kib": (peak_kb - idle.get("VmRSS", 0)) / count,
        "rss_samples": sampler.samples,
        "command_rss_kib": median([c["VmRSS"] for c in children if "VmRSS" in c]),
        "command_rss_anon_kib": median([c["RssAnon"] for c in children if "RssAnon" in c]),
        "command_page_tables_kib": median([c["VmPTE"] for c in children if "VmPTE" in c]),
        "listen_drops_during": {k: drops_after.get(k, 0) - v for k, v in drops_before.items()},
        "get_probes_during": len(during),
        "get_probe_errors": probe_out["errors"],
        "get_p50_ms": percentile(during, 50),
        "get_p99_ms": percentile(during, 99),
        "get_max_ms": max(during) if during else None,
        "get_idle_p99_ms": percentile(idle_probes, 99),
    })
    if failures:
        log(f"   {failures} of {count} streams did not end with exit 0: {out['failure_kinds']}")
    return out


def step_scale(ctx: Context) -> dict:
    """For each of `scale` sizes: the spawn floor's burst of that many `sleep 2`, then that many streams of `sleep 2`
    against a fresh server, with this step's descriptor limit (SCALE_NOFILE) for the server and this script; without
    the privilege to raise it, sizes are capped to what the limit allows (and say so). A run that fails is kept as
    its error; the other sizes still run."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    nofile, why = raise_nofile(SCALE_NOFILE)
    out: dict = {"nofile": nofile, "nofile_before": list(before), "nofile_note": why, "runs": {},
                 "step_errors": []}
    if why:
        log(f"   {why}")
    try:
        for requested in ctx.sizes["scale"]:
            count = min(requested, scale_cap(nofile))
            run: dict = {"requested": requested, "count": count, "descriptors_needed": scale_descriptors(count),
                         "loadavg_1min": loadavg()}
            if count < requested:
                run["capped_by"] = f"descriptor limit {nofile}"
            log(f"   {count} streams of sleep 2")
            try:
                run["floor"] = run_json([str(ctx.spawn_floor), "burst", str(count), "60", "sleep", "2"], timeout=90)
                run.update(scale_run(ctx, count))
            except Exception as error:  # noqa: BLE001 - the other sizes still run; the error is reported
                run["error"] = f"{type(error).__name__}: {error}"
                out["step_errors"].append(f"{requested} streams: {run['error']}")
                log(traceback.format_exc())
            out["runs"][str(requested)] = run
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)
    return out


STEPS = [
    ("startup", step_startup),
    ("get", step_get),
    ("execute", step_execute),
    ("output", step_output),
    ("transfer", step_transfer),
    ("stream", step_stream),
    ("concurrency", step_concurrency),
    ("grpc_execute", step_grpc_execute),
    ("grpc_concurrency", step_grpc_concurrency),
    ("grpc_idle", step_grpc_idle),
    ("watch", step_watch),
    ("scale", step_scale),
]


# --------------------------------------------------------------------------------------------------------------------
# The table


def get(results, *keys):
    value = results
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def build_rows(r: dict, sizes: dict) -> list[dict]:
    rows = []

    def row(metric, unit, value, limit=None, limit_name="", target=None, better="higher", chart=False):
        """target: (kind, number) with kind 'value<=' / 'value>=' on the sandboxd figure, or 'ratio>=' / 'ratio<='
        on sandboxd/limit. better: which direction is good (for the chart)."""
        ratio = value / limit if isinstance(value, (int, float)) and isinstance(limit, (int, float)) and limit else None
        passed = None
        if target and value is not None:
            kind, number = target
            subject = ratio if kind.startswith("ratio") else value
            if subject is not None:
                passed = subject >= number if kind.endswith(">=") else subject <= number
        rows.append({
            "metric": metric, "unit": unit, "sandboxd": value, "limit": limit, "limit_name": limit_name,
            "ratio": ratio, "target": list(target) if target else None, "pass": passed, "better": better,
            "chart": chart,
        })

    n = sizes["concurrent"]
    out_mib = sizes["output_bytes"] / MiB
    xfer = "1 GiB" if sizes["transfer_bytes"] == 1 << 30 else f"{sizes['transfer_bytes'] // MiB} MiB"
    row("idle RSS", "MiB", get(r, "startup", "idle_rss_mib"), get(r, "startup", "nginx_idle_rss_mib"),
        "nginx idle (master+workers)", ("value<=", 12), "lower")
    row("idle RSS: anonymous", "MiB", get(r, "startup", "idle_rss_anon_mib"), None, "", None, "lower")
    row("idle RSS: file-backed (binary, libraries)", "MiB", get(r, "startup", "idle_rss_file_mib"), None, "", None,
        "lower")
    row("idle threads", "", get(r, "startup", "idle_threads"), None, "", None, "lower")
    row("idle RSS after GET / and /execute, without --grpc-port", "MiB", get(r, "grpc_idle", "without_grpc_rss_mib"),
        None, "", ("value<=", 16), "lower")
    row("idle RSS after one request of each kind, with --grpc-port", "MiB", get(r, "grpc_idle", "with_grpc_rss_mib"),
        None, "", ("value<=", 24), "lower")
    row("watch: file close → event p50 (--watch-debounce 0.25)", "ms", get(r, "watch", "latency_p50_ms"), None, "",
        ("value<=", 255), "lower")
    row("watch: file close → event p99 (--watch-debounce 0.25)", "ms", get(r, "watch", "latency_p99_ms"), None, "",
        ("value<=", 255), "lower")
    row("watch: file close → event p99 (--watch-debounce 0)", "ms", get(r, "watch", "latency_no_debounce_p99_ms"),
        None, "", None, "lower")
    row(f"64 recursive watches of {get(r, 'watch', 'tree_files')} files: server threads", "",
        get(r, "watch", "threads_with_watches"), get(r, "watch", "threads_before"), "threads before the watches",
        ("ratio<=", 1.0), "lower")
    row("64 recursive watches: memory per watched directory", "bytes", get(r, "watch", "bytes_per_watched_dir"), None,
        "", ("value<=", 2048), "lower")
    row(f"exec → first GET / (median of {sizes['starts']})", "ms", get(r, "startup", "sandboxd_first_get_median_ms"),
        get(r, "startup", "nginx_first_get_median_ms"), "nginx", ("value<=", 20), "lower", chart=True)
    for c in (1, 32):
        row(f"GET / c={c}", "req/s", get(r, "get", f"sandboxd_c{c}", "rps"), get(r, "get", f"nginx_c{c}", "rps"),
            "nginx return 200", ("ratio>=", 0.80) if c == 32 else None, chart=True)
        row(f"GET / c={c} p50", "ms", get(r, "get", f"sandboxd_c{c}", "p50_ms"),
            get(r, "get", f"nginx_c{c}", "p50_ms"), "nginx", None, "lower")
        row(f"GET / c={c} p99", "ms", get(r, "get", f"sandboxd_c{c}", "p99_ms"),
            get(r, "get", f"nginx_c{c}", "p99_ms"), "nginx", None, "lower")
    row("GET / under wrk: server peak RSS", "MiB", get(r, "get", "sandboxd_sampled", "peak_rss_mib"), None, "",
        None, "lower")
    row("GET / under wrk: server peak threads", "", get(r, "get", "sandboxd_sampled", "peak_threads"), None, "",
        None, "lower")
    for c, w, goal in ((1, 1, 0.90), (8, 2, 0.85)):
        floor = f"posix_spawn floor, {w} worker{'s' if w > 1 else ''}"
        row(f"POST /execute echo c={c}", "req/s", get(r, "execute", f"sandboxd_c{c}", "rps"),
            get(r, "execute", f"floor_{w}w", "spawns_per_s"), floor, ("ratio>=", goal), chart=True)
        row(f"POST /execute echo c={c} p50", "ms", get(r, "execute", f"sandboxd_c{c}", "p50_ms"),
            get(r, "execute", f"floor_{w}w", "p50_ms"), floor, None, "lower")
        row(f"POST /execute echo c={c} p99", "ms", get(r, "execute", f"sandboxd_c{c}", "p99_ms"),
            get(r, "execute", f"floor_{w}w", "p99_ms"), floor, None, "lower")
    row("POST /execute under wrk: server peak RSS", "MiB", get(r, "execute", "sandboxd_sampled", "peak_rss_mib"),
        None, "", None, "lower")
    row("POST /execute under wrk: server peak threads", "", get(r, "execute", "sandboxd_sampled", "peak_threads"),
        None, "", None, "lower")
    for c, w, goal in ((1, 1, 0.90), (8, 2, 0.85)):
        floor = f"posix_spawn floor, {w} worker{'s' if w > 1 else ''}"
        row(f"gRPC Execute echo c={c}", "req/s", get(r, "grpc_execute", f"echo_c{c}", "rps"),
            get(r, "grpc_execute", f"floor_{w}w", "spawns_per_s"), floor, ("ratio>=", goal), chart=True)
        row(f"gRPC Execute echo c={c} mean", "ms", get(r, "grpc_execute", f"echo_c{c}", "mean_ms"), None, "", None,
            "lower")
        row(f"gRPC Execute no-op (empty command) c={c}", "req/s", get(r, "grpc_execute", f"noop_c{c}", "rps"),
            get(r, "grpc_execute", f"echo_c{c}", "rps"), "gRPC Execute echo (ratio: the client's headroom)", None)
    row("gRPC Execute under h2load: server peak threads", "",
        get(r, "grpc_execute", "sandboxd_sampled", "peak_threads"), None, "", None, "lower")
    row(f"/execute {sizes['output_bytes'] / 1e6:g} MB output: time", "s", get(r, "output", "seconds_median"),
        get(r, "output", "direct_pipe_seconds_median"), "same command into a pipe", None, "lower", chart=True)
    row(f"/execute {sizes['output_bytes'] / 1e6:g} MB output: peak RSS growth", "MiB",
        get(r, "output", "rss_growth_mib_max"), out_mib, "output size", ("ratio<=", 1.5), "lower")
    ceiling = max((v for v in (get(r, "transfer", "ceiling_recv_mib_s"), get(r, "transfer", "ceiling_splice_mib_s"))
                   if v is not None), default=None)
    row(f"upload {xfer} (multipart)", "MiB/s", get(r, "transfer", "upload_mib_s"), ceiling,
        "loopback TCP into a file (sendfile → recv+write or splice)", ("ratio>=", 0.75), chart=True)
    row(f"PUT /v1/files {xfer} (raw body)", "MiB/s", get(r, "transfer", "put_mib_s"), ceiling,
        "loopback TCP into a file (sendfile → recv+write or splice)", ("ratio>=", 0.8), chart=True)
    row(f"upload {xfer} vs page-cache write", "MiB/s", get(r, "transfer", "upload_mib_s"),
        get(r, "transfer", "file_write_mib_s"), "file write (dd, page cache)", None)
    row(f"upload {xfer} vs durable write", "MiB/s", get(r, "transfer", "upload_mib_s"),
        get(r, "transfer", "file_write_fdatasync_mib_s"), "file write (dd conv=fdatasync)", None, chart=True)
    row(f"upload {xfer}: peak RSS growth", "MiB", get(r, "transfer", "upload_rss_growth_mib"), None, "",
        ("value<=", 8), "lower")
    row(f"PUT /v1/files {xfer}: peak RSS growth", "MiB", get(r, "transfer", "put_rss_growth_mib"), None, "",
        ("value<=", 8), "lower")
    row(f"download {xfer}", "MiB/s", get(r, "transfer", "download_mib_s"), get(r, "transfer", "tcp_mib_s"),
        "loopback TCP", ("ratio>=", 0.50), chart=True)
    cold = get(r, "transfer", "file_read_cold_mib_s")
    row(f"download {xfer} vs file read", "MiB/s", get(r, "transfer", "download_mib_s"),
        cold if cold is not None else get(r, "transfer", "file_read_unknown_cache_mib_s"),
        "file read (dd, page cache dropped)" if cold is not None else "file read (cache not dropped)", None)
    row(f"download {xfer}: peak RSS growth", "MiB", get(r, "transfer", "download_rss_growth_mib"), None, "",
        ("value<=", 8), "lower")
    row("stream write → event p50", "ms", get(r, "stream", "latency_p50_ms"), get(r, "stream", "pipe_latency_p50_ms"),
        "pipe read directly", ("value<=", 2), "lower", chart=True)
    row("stream write → event p99", "ms", get(r, "stream", "latency_p99_ms"), get(r, "stream", "pipe_latency_p99_ms"),
        "pipe read directly", None, "lower")
    row(f"stream events/s (seq 1 {sizes['seq_n']})", "events/s", get(r, "stream", "events_per_s"),
        get(r, "stream", "pipe_lines_per_s"), "seq into a pipe, lines/s", ("value>=", 100_000), chart=True)
    row("streams: server peak RSS", "MiB", get(r, "stream", "sandboxd_sampled", "peak_rss_mib"), None, "", None,
        "lower")
    for kind, label in (("execute", "executes"), ("stream", "streams")):
        row(f"{n} concurrent sleep 1 {label}: total", "s", get(r, "concurrency", kind, "seconds"),
            get(r, "concurrency", "floor", "seconds"), f"posix_spawn {n} × sleep 1", ("value<=", 3), "lower",
            chart=True)
        row(f"{n} concurrent sleep 1 {label}: peak threads", "",
            get(r, "concurrency", kind, "peak_threads_all_rounds"),
            None, "", ("value<=", 32), "lower")
        row(f"{n} concurrent sleep 1 {label}: GET / p99 meanwhile", "ms", get(r, "concurrency", kind, "get_p99_ms"),
            get(r, "concurrency", kind, "get_idle_p99_ms"), "same probe, idle server, just before",
            ("value<=", 20), "lower")
        row(f"{n} concurrent sleep 1 {label}: peak RSS", "MiB", get(r, "concurrency", kind, "peak_rss_mib"),
            None, "", None, "lower")
    row(f"{n} concurrent gRPC Start sleep 1 (8 channels): total", "s", get(r, "grpc_concurrency", "start", "seconds"),
        get(r, "grpc_concurrency", "floor", "seconds"), f"posix_spawn {n} × sleep 1", ("value<=", 3), "lower",
        chart=True)
    row(f"{n} concurrent gRPC Start sleep 1: peak threads", "",
        get(r, "grpc_concurrency", "start", "peak_threads_all_rounds"), None, "", ("value<=", 31), "lower")
    row(f"{n} concurrent gRPC Start sleep 1: GET / p99 meanwhile", "ms",
        get(r, "grpc_concurrency", "start", "get_p99_ms"), get(r, "grpc_concurrency", "start", "get_idle_p99_ms"),
        "same probe, idle server, just before", ("value<=", 20), "lower")
    row(f"{n} concurrent gRPC Start sleep 1: peak RSS", "MiB", get(r, "grpc_concurrency", "start", "peak_rss_mib"),
        None, "", None, "lower")
    scale = tuple(sizes.get("scale", ()))
    if scale:
        last = scale_run_for(r, scale[-1])
        n_last = last.get("count", scale[-1])
        row("scale: descriptor limit of the server and the client", "", get(r, "scale", "nofile"),
            last.get("descriptors_needed"), f"sandboxd's budget for {n_last} streams: 64 + 6 × (N + 64)")
        row(f"scale: server descriptors with the most of {n_last} commands running", "",
            last.get("server_descriptors_most_running"), get(r, "scale", "nofile"), "the descriptor limit")
    for requested in scale:
        run = scale_run_for(r, requested)
        at_target = requested == scale[-1]  # the issue's targets are for the largest size
        count = run.get("count", requested)
        label = f"{count} concurrent sleep 2 streams"
        if run.get("capped_by"):
            label += f" (capped from {requested} by the {run['capped_by']})"
        row(f"{label}: wall time", "s", run.get("seconds"), get(run, "floor", "seconds"),
            f"posix_spawn {count} × sleep 2", ("value<=", 5) if at_target else None, "lower", chart=at_target)
        ended = count - run["failures"] if run.get("failures") is not None else None
        kinds = run.get("failure_kinds") or {}
        row(f"{label}: ended with exit 0" + (f" (else: {next(iter(kinds))})" if kinds else ""), "", ended,
            count if ended is not None else None, "streams opened", ("ratio>=", 1.0))
        row(f"{label}: most commands running at once", "", run.get("commands_running_peak"),
            count if run.get("commands_running_peak") is not None else None, "streams opened", None)
        row(f"{label}: server peak threads", "", run.get("peak_threads"), None, "",
            ("value<=", 32) if at_target else None, "lower")
        row(f"{label}: server peak RSS", "MiB", run.get("peak_rss_mib"), run.get("idle_rss_mib"),
            "idle RSS just before", None, "lower")
        row(f"{label}: server RSS per command", "KiB", run.get("rss_per_command_kib"), None, "",
            ("value<=", 40) if at_target else None, "lower")
        row(f"{label}: GET / p99 meanwhile", "ms", run.get("get_p99_ms"), run.get("get_idle_p99_ms"),
            "same probe, idle server, just before", ("value<=", 50) if at_target else None, "lower")
    return rows


def scale_run_for(r: dict, requested: int) -> dict:
    return get(r, "scale", "runs", str(requested)) or {}


def fmt(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def target_text(row) -> str:
    if not row["target"]:
        return ""
    kind, number = row["target"]
    if kind.startswith("ratio"):
        return f"ratio {kind[5:]} {number:g}"
    return f"{kind[5:]} {fmt(number)} {row['unit']}".strip()


def mark(row) -> str:
    return {True: "pass", False: "MISS", None: ("" if not row["target"] else "n/a")}[row["pass"]]


TABLE_COLUMNS = ("metric", "unit", "sandboxd", "limit", "sandboxd/limit", "target", "", "limit is")


def table_cells(row) -> list[str]:
    return [row["metric"], row["unit"], fmt(row["sandboxd"]), fmt(row["limit"]),
            fmt(row["ratio"]) if row["ratio"] is not None else "", target_text(row), mark(row), row["limit_name"]]


def text_table(rows) -> str:
    cells = [list(TABLE_COLUMNS)] + [table_cells(row) for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(TABLE_COLUMNS))]
    right = {2, 3, 4}
    lines = []
    for index, line in enumerate(cells):
        lines.append("  ".join(c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(line)))
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def markdown_table(rows) -> str:
    out = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "|".join(["---", "---", "--:", "--:", "--:", "---", "---",
                                                                       "---"]) + "|"]
    for row in rows:
        cells = table_cells(row)
        cells[6] = {"pass": "✅", "MISS": "❌ miss"}.get(cells[6], cells[6])
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(out)


def chart(rows, path: Path, title: str) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        return f"no chart: {error}"
    # Left: sandboxd's speed as a fraction of the machine's limit for the same work (1 = the limit).
    # Throughputs, and the time or latency of the main figures inverted (limit/sandboxd), so that 1 is the limit.
    speed = []
    for row in rows:
        if row["ratio"] is None or not row.get("chart"):
            continue
        fraction = row["ratio"] if row["better"] == "higher" else 1 / row["ratio"] if row["ratio"] else None
        goal = None
        if row["target"] and row["target"][0] == "ratio>=":
            goal = row["target"][1]
        speed.append((row["metric"], fraction, goal, row["pass"] if goal else None))
    # Right: share of its issue's budget each absolute target uses (≤ 1 meets it).
    budget = []
    for row in rows:
        if not row["target"] or row["sandboxd"] is None:
            continue
        kind, number = row["target"]
        if kind == "value<=":
            used = row["sandboxd"] / number
        elif kind == "value>=":
            used = number / row["sandboxd"] if row["sandboxd"] else None
        elif kind == "ratio<=":
            used = row["ratio"] / number if row["ratio"] is not None else None
        else:
            continue
        if used is not None:
            budget.append((row["metric"], used, row["pass"]))
    colour = {True: "#2e8b57", False: "#c0392b", None: "#7f8c8d"}
    fig, axes = plt.subplots(1, 2, figsize=(16, max(6, 0.38 * max(len(speed), len(budget)) + 2)))
    ax = axes[0]
    names = [s[0] for s in speed][::-1]
    values = [s[1] or 0 for s in speed][::-1]
    ax.barh(names, values, color=[colour[s[3]] for s in speed][::-1])
    for y, s in enumerate(speed[::-1]):
        if s[2]:
            ax.plot([s[2], s[2]], [y - 0.4, y + 0.4], color="black", linewidth=2)
        ax.text((s[1] or 0) + 0.01, y, fmt(s[1]), va="center", fontsize=8)
    ax.axvline(1.0, color="#34495e", linestyle="--", linewidth=1)
    ax.set_xlabel("sandboxd as a fraction of the machine's limit (1 = limit; black tick = target)")
    ax.set_title("Speed against the limit, same work, same run")
    ax.tick_params(axis="y", labelsize=8)
    ax = axes[1]
    names = [b[0] for b in budget][::-1]
    values = [max(b[1], 1e-3) for b in budget][::-1]
    ax.barh(names, values, color=[colour[b[2]] for b in budget][::-1])
    for y, b in enumerate(budget[::-1]):
        ax.text(max(b[1], 1e-3) * 1.05, y, fmt(b[1]), va="center", fontsize=8)
    ax.axvline(1.0, color="black", linewidth=1.5)
    ax.set_xscale("log")
    ax.set_xlabel("share of the target's budget used (≤ 1 meets the target; log scale)")
    ax.set_title("Absolute targets")
    ax.tick_params(axis="y", labelsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def scale_chart(result: dict, path: Path, title: str) -> str | None:
    """The scale step against N: wall time (sandboxd and the spawn floor) and server RSS per command, with the
    targets; each point is labelled with the server's peak threads and GET / p99."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        return f"no chart (scale): {error}"
    runs = [run for run in result["runs"].values() if run.get("seconds") is not None]
    if not runs:
        return "no chart (scale): no size produced a number"
    ns = [run["count"] for run in runs]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    ax = axes[0]
    ax.plot(ns, [run["seconds"] for run in runs], "o-", color="#2e86c1",
            label="sandboxd: first connection → last done")
    floors = [(run["count"], get(run, "floor", "seconds")) for run in runs if get(run, "floor", "seconds")]
    ax.plot([n for n, _ in floors], [v for _, v in floors], "s--", color="#7f8c8d",
            label="floor: posix_spawn N × sleep 2, pipes read, reaped")
    ax.axhline(5, color="#c0392b", linestyle=":", label="target at 5,000: 5 s")
    ax.axhline(2, color="black", linewidth=0.8, label="sleep 2 itself")
    for run in runs:
        ax.annotate(f"{run['peak_threads']} threads\nGET / p99 {fmt(run['get_p99_ms'])} ms"
                    + (f"\n{run['failures']} failed" if run.get("failures") else ""),
                    (run["count"], run["seconds"]), textcoords="offset points", xytext=(6, 6), fontsize=8)
    ax.set_xlabel("concurrent `sleep 2` streams (N)")
    ax.set_ylabel("s")
    ax.set_xticks(ns)
    ax.set_ylim(0, max([5.0] + [run["seconds"] for run in runs] + [v for _, v in floors]) * 1.3)
    ax.set_title("Wall time against N")
    ax.legend(fontsize=8, loc="upper left")
    ax = axes[1]
    ax.plot(ns, [run["rss_per_command_kib"] for run in runs], "o-", color="#2e86c1",
            label="(peak RSS − idle RSS) / N")
    ax.axhline(40, color="#c0392b", linestyle=":", label="target at 5,000: 40 KiB")
    for run in runs:
        ax.annotate(f"peak {fmt(run['peak_rss_mib'])} MiB", (run["count"], run["rss_per_command_kib"]),
                    textcoords="offset points", xytext=(6, 6), fontsize=8)
    ax.set_xlabel("concurrent `sleep 2` streams (N)")
    ax.set_ylabel("KiB of server RSS per running command")
    ax.set_xticks(ns)
    ax.set_ylim(0, max([40.0] + [run["rss_per_command_kib"] for run in runs]) * 1.3)
    ax.set_title("Server memory per command against N")
    ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def git_source() -> str:
    """The commit the binary was built from, and whether the work tree had changes."""
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "Sources", "Package.swift"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return f"{head} with uncommitted changes in Sources" if dirty else head
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def loadavg() -> float | None:
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except OSError:
        return None


def machine() -> dict:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass

    def version(args):
        try:
            result = subprocess.run(args, capture_output=True, text=True, timeout=10)
            return (result.stdout + result.stderr).strip().splitlines()[0]
        except Exception:  # noqa: BLE001
            return None

    return {
        "nproc": os.cpu_count(),
        "loadavg_1min_at_start": loadavg(),
        "cpu": cpu,
        "kernel": platform.release(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30), 1),
        "python": platform.python_version(),
        "wrk": (version(["wrk", "-v"]) or "").split(" Copyright")[0] or None,
        "nginx": version([nginx_binary(), "-v"]),
        "h2load": version(["h2load", "--version"]),
        "gcc": version(["gcc", "--version"]),
    }


def write_results_md(path: Path, meta: dict, rows, errors, chart_name: str, scale_chart_name: str | None) -> None:
    m = meta["machine"]
    misses = [row for row in rows if row["pass"] is False]
    lines = [
        "# sandboxd benchmark results",
        "",
        f"Written by `make bench` (`bench/bench.py`) on {meta['date']}. Machine: {m['nproc']} cores (`nproc`), "
        f"{m['cpu']}, Linux {m['kernel']}, {m['memory_gib']} GiB. sandboxd {meta['sandboxd_version']} "
        f"(release, static Swift stdlib, built from {meta['source']}); {m['nginx']}; {m['wrk']}; "
        f"{m.get('h2load')}.",
        "",
        "sandboxd and the machine's limit for the same work, measured in the same run; the ratio is sandboxd/limit. "
        "These figures vary by about ±25 % between runs on this machine (more when other work shares its "
        f"{m['nproc']} cores: the 1-minute load average was {m['loadavg_1min_at_start']} at the start of this run, "
        + ", ".join(f"{k} {v}" for k, v in meta["loadavg_1min_at_step_start"].items()) + " at the start of each step)"
        ": compare within a run. Targets are issues 6, 11 and 15's; a missed target is marked, never an error. "
        "`make bench` runs it all (about two minutes, one more for the gRPC steps and one and a half for scale); `make bench-smoke` runs the "
        "same steps with tiny sizes and checks only that each produced a number.",
        "",
        markdown_table(rows),
        "",
        f"![sandboxd against the machine's limits]({chart_name})",
        "",
    ]
    if scale_chart_name:
        lines += [f"![concurrent streams: wall time and server RSS per command against N]({scale_chart_name})", ""]
    if misses:
        lines += ["Targets missed in this run: " + "; ".join(f"{r['metric']} ({fmt(r['sandboxd'])} {r['unit']}, "
                                                            f"target {target_text(r)})" for r in misses) + ".", ""]
    if errors:
        lines += ["Steps that failed in this run:", ""] + [f"- {e}" for e in errors] + [""]
    lines += [
        "## How each figure is measured",
        "",
        "- **Repeats.** The machine is shared, so each comparison alternates sandboxd and its limit: GET /, "
        "/execute, the concurrency bursts and their gRPC counterparts run `rounds` times (2) and the best round of "
        "each side is shown; transfers and file and TCP limits are the best of 3; the 20 MB output the median of 3 "
        "(RSS growth: the largest). Every run's figure is in results.json.",
        "- **Server RSS and threads** are the server process's own (`VmRSS`, `Threads` in /proc/<pid>/status), "
        "sampled every 5 ms while each step runs; peak RSS growth is `VmHWM` after the step (reset by writing 5 to "
        "/proc/<pid>/clear_refs just before it) minus `VmRSS` just before it. Idle figures are read 0.5 s after the "
        "first answered `GET /` of a fresh server.",
        "- **exec → first GET /**: `bench/launcher.c` spawns the server and then connects and sends `GET /` in a "
        "loop (50 µs pause after a refused attempt) until a 200 comes back; median of the starts. nginx is started "
        "the same way with `bench/nginx.conf`.",
        "- **GET /**: `wrk --latency` for a fixed duration (1 thread at c=1, 2 threads at c=32), against sandboxd and "
        "against nginx (`return 200 '{\"status\":\"ok\"}'`, one worker per core, access log on, as sandboxd logs "
        "every request; sandboxd's log goes to a file).",
        "- **POST /execute**: wrk with `bench/execute.lua` (`{\"command\":\"echo hi\"}`); the floor is "
        "`bench/spawn_floor.c`: posix_spawnp of `echo hi` with stdout on a pipe read to EOF, then waitpid, back to "
        "back in 1 and 2 threads, for the same duration.",
        "- **20 MB output**: `sh -c 'yes <98 chars> | head -c 20000000'` through `/execute` (sandboxd started with "
        "`--max-output-bytes 33554432`), median time of the runs and the largest RSS growth; the limit is the "
        "same command read from a pipe.",
        "- **upload/download**: a multipart `POST /upload` whose file part the client sends with sendfile, the same "
        "file as the raw body of `PUT /v1/files/…` (sendfile), and `GET /download/…` read into a 1 MiB buffer. An "
        "upload's ceiling is the same file sent the same way (sendfile, a process of its own) over loopback TCP to a "
        "receiver that writes what arrives into a file on the same filesystem, with `recv` into a 1 MiB buffer + "
        "`write` and with `splice` (socket → pipe → file); the faster is the limit. Beside it, the other limits are "
        "`dd` writing the same number of bytes to the "
        "same filesystem (without and with `conv=fdatasync`; sandboxd does not fsync uploads), `dd` reading it back "
        "with the page cache dropped, and a Python sender process → receiver over loopback TCP (1 MiB writes, the "
        "download's receive loop).",
        "- **stream latency**: the command prints `time.monotonic_ns()` every 10 ms for 2 s; the client stamps each "
        "`stdout` event on arrival with the same clock. The limit is the same child read from a pipe directly. "
        "**events/s**: `seq 1 1000000` through `/execute/stream`, from the request to `done`; the limit is `seq` "
        "read from a pipe.",
        "- **concurrency**: 1,000 `sleep 1` requests opened at once from asyncio (sandboxd with "
        "`--max-connections 4096`), each on its own connection, total time to the last answer; a separate process "
        "sends `GET /` on a new connection every 5 ms meanwhile (p99 of those during the burst). The floor is "
        "`spawn_floor burst`: 1,000 `sleep 1` posix_spawned at once, each stdout on a pipe, all read to EOF and "
        "reaped.",
        "- **gRPC Execute** (sandboxd with `--grpc-port`): `h2load -m1` posting a prebuilt unary call (the 5-byte "
        "gRPC prefix and the serialized `ExecuteRequest` of `echo hi`; `content-type: application/grpc`, "
        "`te: trailers`) to `/process.v1.ProcessService/Execute`, on 1 connection (1 thread) and 8 (2 threads), "
        "one call in flight on each as wrk's /execute connections, alternating with the same spawn floor runs; "
        "every answer's DATA is checked to be the echo's `ExecuteResponse` (h2load sees only HTTP's 200), and the "
        "same bytes go through grpcio once first. The **no-op** is the same call with an empty command "
        "(`INVALID_ARGUMENT` at once, nothing spawned): what the client and HTTP/2 alone reach.",
        "- **gRPC concurrency**: 1,000 `Start` streams of `sleep 1` at once over 8 `grpc.aio` channels, from the "
        "first call to the last stream's end; the server's threads sampled every 5 ms; a separate process sends "
        "`GET /` every 5 ms on one keep-alive connection meanwhile (p99 of those during the burst). Beside the spawn "
        "floor's burst, alternating.",
        "- **directory watch**: `GET /v1/watch` (the core gRPC `WatchDir` uses) of a directory in which the client "
        "creates and closes one file at a time; the time from the close to that file's event arriving, with the "
        "default `--watch-debounce 0.25` (target: the window + 5 ms) and with none. Then 64 recursive watches of one "
        "tree of 20 files per directory: the server's threads before and after (no thread per watch) and its RSS "
        "growth per watched directory (64 × the tree's directories; the kernel's inotify memory is not in it).",
        "- **idle RSS without/with `--grpc-port`**: `VmRSS` of a fresh server 0.5 s after one `GET /` and one "
        "`POST /execute` (and with gRPC one `Execute` and one `Start`).",
        "- **scale** (1,000, 2,000 and 5,000 concurrent streams): for each N, first the spawn floor's burst of N "
        "`sleep 2`, then a fresh server with `--max-connections` and `--max-processes` of N + 64 and N "
        "`POST /execute/stream` of `sleep 2` opened at once from asyncio, each on its own connection; wall time from "
        "the first connection's start to the last stream's end (`event: done`); the server's threads and RSS sampled "
        "every 10 ms (peak RSS also from `VmHWM`); RSS per command = (peak RSS − idle RSS just before) / N; `GET /` "
        "on a new connection every 5 ms from another process meanwhile. The step raises the descriptor limit (soft "
        "and hard) of the script, and so of the server and the floor it starts, to 65,536 for itself only; without "
        "the privilege to, N is capped to what the limit allows and the row says so. Targets (at 5,000): every "
        "stream ends with exit 0 within 5 s of the first start, ≤ 32 threads, ≤ 40 KiB of server RSS per command, "
        "`GET /` p99 ≤ 50 ms.",
        "",
        "What a pod needs for 5,000 concurrent commands (bench/PROFILE.md has the figures): a descriptor limit of "
        "at least 64 + 3 per connection + 3 per running command (≈ 30,500 for 5,000 streams; sandboxd raises its "
        "soft limit to the hard one at start, and gives commands the soft limit it was started with) and "
        "`--max-connections`/`--max-processes` set to match, since the default caps connections at 1,024; a pids "
        "limit above N plus the server's threads (each `sleep` is a process, each command one or more), e.g. "
        "`pids.max` ≥ 6,000; memory for the server (its idle RSS + N × RSS per command above) plus the commands "
        "themselves and the kernel's share of each (its task, page tables, pipes and socket buffers).",
        "",
        "Raw figures: `bench/out/results.json` after a run (not committed).",
        "",
    ]
    path.write_text("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default=str(REPO / ".build-release" / "release" / "sandboxd"))
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and durations; checks only that every "
                        "step produced a number")
    parser.add_argument("--out", default=str(HERE / "out"))
    parser.add_argument("--only", help="comma-separated steps to run (" + ",".join(n for n, _ in STEPS) + "); the "
                        "part of a name before its '_' selects every step that starts with it (grpc: the gRPC steps)")
    parser.add_argument("--no-results-md", action="store_true", help="do not rewrite bench/RESULTS.md")
    parser.add_argument("--tcp-send", nargs=2, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sendfile-send", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--probe", nargs=3, type=float, help=argparse.SUPPRESS)
    parser.add_argument("--keepalive-probe", nargs=3, type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tcp_send:
        tcp_send(*args.tcp_send)
        return 0
    if args.sendfile_send:
        sendfile_send(int(args.sendfile_send[0]), args.sendfile_send[1])
        return 0
    if args.probe:
        probe(int(args.probe[0]), args.probe[1], args.probe[2])
        return 0
    if args.keepalive_probe:
        keepalive_probe(int(args.keepalive_probe[0]), args.keepalive_probe[1], args.keepalive_probe[2])
        return 0

    # 1,000 connections at once, and 1,000 pipes in the spawn floor: raise the descriptor limit (children inherit it).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 65536
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(wanted, 1 << 20)), hard))

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sizes = SMOKE if args.smoke else FULL
    outdir = Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    if not os.access(args.bin, os.X_OK):
        log(f"no sandboxd binary at {args.bin}: build it first (make bench does)")
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="bench-", dir=outdir))
    results, errors, timings, loads = {}, [], {}, {}
    machine_info = machine()
    source = git_source()
    wanted_steps = set(args.only.split(",")) if args.only else None
    started = time.perf_counter()
    try:
        ctx = Context(args, sizes, outdir, workdir)
        for name, function in STEPS:
            if wanted_steps and name not in wanted_steps and name.split("_")[0] not in wanted_steps:
                continue
            log(f"== {name}")
            loads[name] = loadavg()
            t0 = time.perf_counter()
            try:
                results[name] = function(ctx)
                # A step that measures several sizes keeps the others' figures when one fails, and reports it here.
                errors.extend(f"{name}: {e}" for e in results[name].pop("step_errors", []))
            except Exception as error:  # noqa: BLE001 - a failed step is reported, the others still run
                errors.append(f"{name}: {type(error).__name__}: {error}")
                log(traceback.format_exc())
            timings[name] = round(time.perf_counter() - t0, 2)
            log(f"   {name} took {timings[name]} s")
        log_size = (workdir / "sandboxd.log").stat().st_size if (workdir / "sandboxd.log").exists() else 0
    finally:
        end_all_children()
        shutil.rmtree(workdir, ignore_errors=True)

    version = subprocess.run([args.bin, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "mode": "smoke" if args.smoke else "full",
        "sandboxd_version": version,
        "source": source,
        "sandboxd_binary": args.bin,
        "machine": machine_info,
        "sizes": sizes,
        "step_seconds": timings,
        "loadavg_1min_at_step_start": loads,
        "total_seconds": round(time.perf_counter() - started, 1),
        "sandboxd_log_bytes": log_size,
    }
    rows = build_rows(results, sizes)
    if wanted_steps:
        rows = [row for row in rows if row["sandboxd"] is not None]
    title = (f"sandboxd {version} vs machine limits — {meta['date']} — {meta['machine']['nproc']} cores "
             f"{meta['machine']['cpu']}, Linux {meta['machine']['kernel']}" + (" (smoke)" if args.smoke else ""))
    chart_error = chart(rows, outdir / "chart.png", title)
    if chart_error:
        errors.append(chart_error)
    (outdir / "scale.png").unlink(missing_ok=True)
    if get(results, "scale", "runs"):
        chart_error = scale_chart(results["scale"], outdir / "scale.png", title)
        if chart_error:
            errors.append(chart_error)
    (outdir / "results.json").write_text(json.dumps(
        {"meta": meta, "rows": rows, "steps": results, "errors": errors}, indent=2, default=str))

    print()
    print(f"sandboxd {version} — {meta['date']} — {meta['machine']['nproc']} cores, {meta['machine']['cpu']}, "
          f"Linux {meta['machine']['kernel']}" + (" — SMOKE (tiny sizes; the figures mean nothing)" if args.smoke
                                                   else ""))
    print(text_table(rows))
    missing = [row["metric"] for row in rows if row["sandboxd"] is None or (row["limit_name"] and row["limit"] is None)]
    misses = [row["metric"] for row in rows if row["pass"] is False]
    print()
    print(f"targets: {sum(1 for r in rows if r['pass'])} met, {len(misses)} missed"
          + (f" ({'; '.join(misses)})" if misses else ""))
    for error in errors:
        print(f"error: {error}")
    print(f"wrote {outdir / 'results.json'} and {outdir / 'chart.png'}"
          + (f" and {outdir / 'scale.png'}" if (outdir / "scale.png").exists() else "")
          + f" in {meta['total_seconds']} s")

    if not args.smoke and not args.no_results_md and not wanted_steps:
        shutil.copyfile(outdir / "chart.png", HERE / "RESULTS.png")
        scale_png = None
        if (outdir / "scale.png").exists() and get(results, "scale", "runs"):
            scale_png = "RESULTS-scale.png"
            shutil.copyfile(outdir / "scale.png", HERE / scale_png)
        write_results_md(HERE / "RESULTS.md", meta, rows, errors, "RESULTS.png", scale_png)
        print(f"wrote {HERE / 'RESULTS.md'} and {HERE / 'RESULTS.png'}")
    if missing:
        print(f"no number for: {'; '.join(missing)}")
    # A missed target is not a failure (it's a benchmark); a step that produced no number is.
    return 1 if (missing or [e for e in errors if not e.startswith("no chart")]) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        end_all_children()
