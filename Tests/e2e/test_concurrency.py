"""Concurrency proof: waiting requests suspend their connection instead of holding a thread.

200 concurrent `sleep 3` executes must all finish in under 10 s while `GET /` keeps answering, and the server's
thread count (/proc/<pid>/status) stays under 32 throughout.
"""
import concurrent.futures
import threading
import time

import requests

from conftest import Server


def _threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    raise AssertionError("no Threads line")


def test_200_concurrent_sleeps_suspend_instead_of_blocking(start_server) -> None:
    server: Server = start_server()
    url = server.base_url
    peak_threads = _threads(server.pid)
    health_latencies: list[float] = []
    health_failures: list[str] = []
    done = threading.Event()

    def watch() -> None:
        nonlocal peak_threads
        with requests.Session() as session:
            while not done.is_set():
                peak_threads = max(peak_threads, _threads(server.pid))
                started = time.monotonic()
                try:
                    response = session.get(url + "/", timeout=2)
                    if response.status_code != 200:
                        health_failures.append(f"status {response.status_code}")
                except requests.RequestException as error:
                    health_failures.append(repr(error))
                health_latencies.append(time.monotonic() - started)
                done.wait(0.05)

    def execute(_: int) -> dict:
        response = requests.post(url + "/execute", json={"command": "sleep 3"}, timeout=20)
        response.raise_for_status()
        return response.json()

    watcher = threading.Thread(target=watch)
    watcher.start()
    started = time.monotonic()
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=200) as pool:
            results = list(pool.map(execute, range(200)))
    finally:
        elapsed = time.monotonic() - started
        done.set()
        watcher.join(timeout=5)

    assert [r["exit_code"] for r in results] == [0] * 200
    assert elapsed < 10, f"200 concurrent sleep 3 took {elapsed:.1f}s"
    assert not health_failures, health_failures[:5]
    assert len(health_latencies) >= 10, "GET / was not exercised while the sleeps ran"
    assert max(health_latencies) < 1.0, f"GET / took up to {max(health_latencies):.3f}s during the sleeps"
    assert peak_threads < 32, f"server used {peak_threads} threads"
