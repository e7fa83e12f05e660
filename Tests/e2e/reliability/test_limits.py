"""Descriptor and process limits.

sandboxd under a descriptor limit of 1024 (soft and hard, as many pods have): processes are started until refused,
every 201 is a running process, every refusal a 429 or 503 with a message, and the server keeps answering; a flood
of connections neither spins the server nor floods its log; the process cap and a spawn that runs out of
descriptors answer over HTTP before anything is registered.
"""

from __future__ import annotations

import json
import os
import pathlib
import resource
import socket
import subprocess
import time

import pytest
import requests

from conftest import Server, wait_until

from .support import get_root_latency, kill_matching, live_matching, proc_snapshot, record_figures, unique_sleep


def _cpu_seconds(pid: int) -> float:
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _log_lines(srv: Server) -> int:
    return len(srv.logs().splitlines())


def _assert_refusal(resp: requests.Response, what: str) -> None:
    """A refusal for lack of processes or resources: 429, or 503 with Retry-After; a message either way."""
    assert resp.status_code in (429, 503), f"{what}: {resp.status_code} {resp.text[:300]}"
    body = resp.json()
    message = body.get("message", body.get("detail"))
    assert isinstance(message, str) and message, f"{what}: no message in {body}"
    if "code" in body:
        assert body["code"] == "RESOURCE_EXHAUSTED", f"{what}: {body}"
    if resp.status_code == 503:
        assert resp.headers.get("Retry-After", "").isdigit(), f"{what}: 503 without Retry-After"


def _start_until_refused(srv: Server, session: requests.Session, duration: str, attempts: int) -> tuple[list, list]:
    """POST /v1/processes (`sleep duration`) until refused a few times in a row; GET / on a fresh connection must
    keep answering meanwhile."""
    started, refused = [], []
    for attempt in range(attempts):
        resp = session.post(srv.base_url + "/v1/processes", json={"command": ["sleep", duration]}, timeout=10)
        if resp.status_code == 201:
            started.append(resp.json())
        else:
            refused.append(resp)
            if len(refused) >= 10:
                break
        if attempt % 50 == 0:
            assert get_root_latency(srv) < 1.0
    return started, refused


@pytest.mark.deadline(150)
def test_under_a_descriptor_limit_of_1024_every_201_runs_and_every_refusal_says_why(start_limited):
    srv = start_limited(1024)
    assert srv.wait_for_log(r"descriptor limit 1024: up to \d+ connections"), srv.log_tail()
    duration = unique_sleep(300)
    session = requests.Session()
    try:
        started, refused = _start_until_refused(srv, session, duration, 600)
        assert started and refused, f"{len(started)} started, {len(refused)} refused of 600"
        for resp in refused:
            _assert_refusal(resp, "POST /v1/processes at the limit")
        table = proc_snapshot()
        for process in started:
            assert isinstance(process["pid"], int), process
            shown = session.get(f"{srv.base_url}/v1/processes/{process['id']}", timeout=10).json()
            assert shown["status"] == "running" and shown["pid"] == process["pid"], shown
            entry = table.get(process["pid"])
            assert entry is not None and entry.state != "Z" and entry.ppid == srv.pid, (process, entry)
            assert entry.cmdline == f"sleep {duration}", entry
        listed = session.get(srv.base_url + "/v1/processes", timeout=10).json()["processes"]
        assert sorted(p["id"] for p in listed) == sorted(p["id"] for p in started), "a refused start was listed"

        # Every front refuses the same way, before anything is started or any 200 is sent.
        _assert_refusal(session.post(srv.base_url + "/execute", json={"command": "echo hi"}, timeout=10),
                        "/execute at the limit")
        streamed = session.post(srv.base_url + "/execute/stream", json={"command": "echo hi"}, timeout=10)
        _assert_refusal(streamed, "/execute/stream at the limit")
        _assert_refusal(session.post(srv.base_url + "/v1/processes", timeout=10,
                                     json={"command": ["sh"], "pty": {"cols": 80, "rows": 24}}), "pty at the limit")
        assert get_root_latency(srv) < 1.0
        metrics = session.get(srv.base_url + "/metrics", timeout=10).text
        assert "sandboxd_processes_refused_total" in metrics
        record_figures("processes_under_nofile_1024", {"started": len(started), "refused": len(refused),
                                                       "statuses": sorted({r.status_code for r in refused})})

        # Everything works again once the processes end.
        for process in started:
            assert session.delete(f"{srv.base_url}/v1/processes/{process['id']}", timeout=10).status_code == 204
        assert wait_until(lambda: not live_matching(f"sleep {duration}"), 10.0), "the processes did not end"

        def runs_again() -> bool:
            resp = session.post(srv.base_url + "/execute", json={"command": "echo again"}, timeout=10)
            return resp.status_code == 200 and resp.json()["stdout"] == "again\n"

        assert wait_until(runs_again, 5.0, 0.1), "/execute does not work again after the processes ended"
        resp = session.post(srv.base_url + "/v1/processes", json={"command": ["true"]}, timeout=10)
        assert resp.status_code == 201, resp.text
    finally:
        session.close()
        kill_matching(f"sleep {duration}")


@pytest.mark.deadline(120)
def test_a_connection_flood_under_1024_descriptors_neither_spins_nor_floods_the_log(start_limited):
    """With every process slot taken, 1,100 clients connect and stay: the server refuses what is over its connection
    limit, uses (almost) no CPU and writes a bounded number of log lines meanwhile, and `GET /` on a fresh connection
    works as soon as the others close."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1300:
        if hard < 1300:
            pytest.skip(f"this test opens 1,100 sockets; its own descriptor limit is {soft}:{hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    srv = start_limited(1024)
    duration = unique_sleep(300)
    session = requests.Session()
    sockets: list[socket.socket] = []
    try:
        started, _ = _start_until_refused(srv, session, duration, 600)
        session.close()
        cpu_before, lines_before = _cpu_seconds(srv.pid), _log_lines(srv)
        refused_at_connect = 0
        for _ in range(1100):
            try:
                sockets.append(socket.create_connection((srv.host, srv.port), timeout=5))
            except OSError:
                refused_at_connect += 1
        observed = 3.0
        time.sleep(observed)  # the window in which a spinning accept loop would burn CPU and log
        cpu = _cpu_seconds(srv.pid) - cpu_before
        lines = _log_lines(srv) - lines_before
        record_figures("connection_flood_nofile_1024", {
            "processes": len(started), "connections": len(sockets), "refused_at_connect": refused_at_connect,
            "server_cpu_seconds": round(cpu, 2), "observed_seconds": observed, "log_lines": lines})
        assert cpu < 0.5, f"the server used {cpu:.2f} s of CPU in {observed} s with 1,100 clients connected"
        assert lines < 50, f"{lines} log lines in {observed} s:\n{srv.log_tail(20)}"
    finally:
        for sock in sockets:
            sock.close()
        session.close()

    def fresh_get() -> bool:
        try:
            return get_root_latency(srv, timeout=1) < 1.0
        except (OSError, AssertionError):
            return False

    try:
        assert wait_until(fresh_get, 5.0, 0.05), "GET / on a fresh connection fails after the clients left"
    finally:
        kill_matching(f"sleep {duration}")


@pytest.mark.deadline(60)
def test_the_process_cap_answers_429_on_every_front_until_a_process_ends(start_server):
    srv = start_server("--max-processes", "2")
    duration = unique_sleep(300)
    try:
        ids = []
        for _ in range(2):
            resp = requests.post(srv.base_url + "/v1/processes", json={"command": ["sleep", duration]}, timeout=10)
            assert resp.status_code == 201, resp.text
            ids.append(resp.json()["id"])
        over = requests.post(srv.base_url + "/v1/processes", json={"command": ["sleep", duration]}, timeout=10)
        assert over.status_code == 429 and over.json()["code"] == "RESOURCE_EXHAUSTED", over.text
        assert "--max-processes" in over.json()["message"], over.text
        legacy = requests.post(srv.base_url + "/execute", json={"command": "echo hi"}, timeout=10)
        assert legacy.status_code == 429 and "--max-processes" in legacy.json()["detail"], legacy.text
        streamed = requests.post(srv.base_url + "/execute/stream", json={"command": "echo hi"}, timeout=10)
        assert streamed.status_code == 429 and "detail" in streamed.json(), streamed.text
        assert len(requests.get(srv.base_url + "/v1/processes", timeout=10).json()["processes"]) == 2
        assert requests.delete(f"{srv.base_url}/v1/processes/{ids[0]}", timeout=10).status_code == 204

        def runs() -> bool:
            resp = requests.post(srv.base_url + "/execute", json={"command": "echo hi"}, timeout=10)
            return resp.status_code == 200 and resp.json()["stdout"] == "hi\n"

        assert wait_until(runs, 5.0, 0.05), "/execute still refused after a process ended"
    finally:
        kill_matching(f"sleep {duration}")


@pytest.mark.deadline(90)
def test_a_spawn_out_of_descriptors_is_503_with_retry_after_and_registers_nothing(start_limited):
    """Flags that promise more than the descriptor limit holds (sandboxd warns at start): the spawn that finds no
    descriptor left answers 503 with Retry-After and a message naming the cause; no id is handed out, nothing is
    listed, a metric counts it; every front answers the same, and all works again once processes end."""
    srv = start_limited(128, "--max-processes", "500", "--max-connections", "8")
    assert srv.wait_for_log(r"may need \d+ descriptors, more than the limit of 128"), srv.log_tail()
    duration = unique_sleep(300)
    session = requests.Session()  # one kept-alive connection: no accept is needed while descriptors are out
    try:
        started, refused = _start_until_refused(srv, session, duration, 200)
        assert started and refused, f"{len(started)} started, {len(refused)} refused"
        for resp in refused:
            _assert_refusal(resp, "POST /v1/processes without descriptors")
            assert resp.status_code == 503 and "EMFILE" in resp.json()["message"], resp.text
        listed = session.get(srv.base_url + "/v1/processes", timeout=10).json()["processes"]
        assert len(listed) == len(started), "a start that failed was listed"
        metrics = session.get(srv.base_url + "/metrics", timeout=10).text
        failures = [line for line in metrics.splitlines() if line.startswith('sandboxd_spawn_failures_total{reason="EMFILE"}')]
        assert failures and float(failures[0].split()[-1]) >= len(refused), failures
        legacy = session.post(srv.base_url + "/execute", json={"command": "echo hi"}, timeout=10)
        _assert_refusal(legacy, "/execute without descriptors")
        assert legacy.status_code == 503 and "detail" in legacy.json(), legacy.text
        streamed = session.post(srv.base_url + "/execute/stream", json={"command": "echo hi"}, timeout=10)
        assert streamed.status_code == 503 and streamed.headers.get("Retry-After") == "1", streamed.text
        for process in started[:10]:
            assert session.delete(f"{srv.base_url}/v1/processes/{process['id']}", timeout=10).status_code == 204

        def runs() -> bool:
            resp = session.post(srv.base_url + "/execute", json={"command": "echo hi"}, timeout=10)
            return resp.status_code == 200 and resp.json()["stdout"] == "hi\n"

        assert wait_until(runs, 5.0, 0.05), "/execute still fails after processes ended"
    finally:
        session.close()
        kill_matching(f"sleep {duration}")


# What the combined abuse may cost the server at most: about 20 MiB idle, the 16 MiB of NUL's answer (32 MiB once
# escaped), `yes` under /execute (16 MiB kept, 24 MiB escaped), and a little per stream and connection.
COMBINED_RSS_BUDGET_KIB = 128 * 1024


@pytest.mark.deadline(150)
def test_under_all_the_abuse_at_once_get_root_answers_within_50_ms_and_memory_stays_bounded(start_limited):
    """Under a descriptor limit of 1024: the process table nearly full, 100 idle connections, output held open after
    the shell's exit on every front, a `yes` flood and 16 MiB of NUL through /execute, all at once. `GET /` on a
    fresh connection answers within 50 ms throughout, and the server's peak RSS stays within its budget."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 400 and hard >= 400:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    srv = start_limited(1024)
    duration = unique_sleep(300)
    marker = f"abuse-{os.urandom(4).hex()}"
    session = requests.Session()
    idle: list[socket.socket] = []
    clients: list[subprocess.Popen] = []
    try:
        for _ in range(140):
            resp = session.post(srv.base_url + "/v1/processes", json={"command": ["sleep", duration]}, timeout=10)
            assert resp.status_code == 201, resp.text
        for _ in range(100):
            idle.append(socket.create_connection((srv.host, srv.port), timeout=5))
        held = f"setsid yes {marker} & sleep 0.2; exit 0"
        for path, command in [("/execute/stream", f"sh -c '{held}'"), ("/execute/stream", f"sh -c 'yes {marker} & exit 0'"),
                              ("/execute", f"sh -c '{held}'"), ("/execute", "head -c 16777216 /dev/zero"),
                              ("/execute", f"timeout 3 yes {marker}")]:
            clients.append(subprocess.Popen(
                ["curl", "-sS", "-N", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "60", "-X", "POST",
                 "-H", "Content-Type: application/json", "--data", json.dumps({"command": command}),
                 srv.base_url + path], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        for body in [{"command": held, "shell": True}, {"command": held, "shell": True, "pty": {"cols": 80, "rows": 24}}]:
            resp = session.post(srv.base_url + "/v1/processes", json=body, timeout=10)
            assert resp.status_code == 201, resp.text
        latencies = []
        started = time.monotonic()
        while time.monotonic() - started < 4.0:
            latencies.append(get_root_latency(srv))
            time.sleep(0.02)
        statuses = [client.communicate(timeout=60)[0] for client in clients]
        assert statuses == ["200"] * len(clients), statuses
        peak = int(next(line.split()[1] for line in pathlib.Path(f"/proc/{srv.pid}/status").read_text().splitlines()
                        if line.startswith("VmHWM:")))
        writers = wait_until(lambda: not live_matching(f"yes {marker}"), 5.0)
    finally:
        for client in clients:
            if client.poll() is None:
                client.kill()
                client.wait()
        for sock in idle:
            sock.close()
        session.close()
        kill_matching(f"sleep {duration}", f"yes {marker}")
    slow = [round(latency * 1000, 1) for latency in latencies if latency >= 0.050]
    record_figures("combined_abuse", {"probes": len(latencies), "get_root_max_ms": round(max(latencies) * 1000, 1),
                                      "peak_vmhwm_kib": peak})
    assert writers, "a yes outlived its command"
    assert peak < COMBINED_RSS_BUDGET_KIB, f"server peak RSS {peak} KiB"
    assert not slow, f"GET / took {slow} ms (of {len(latencies)} probes) under the abuse"
