"""Issue 4, part 7: soak.

20,000 mixed requests (execute `true`/`echo`, stream, small upload, download, list, exists, bad JSON, 404, health)
from 4 client processes against a fresh server. Before and after (each after a bounded settle): open descriptors
equal, RSS within 10 MiB, no child process. The figures are printed and written to a JSON file under /tmp.
"""

from __future__ import annotations

import multiprocessing
import os
import time
import traceback
from collections import Counter

import pytest
import requests

from conftest import wait_until

from .support import children, open_fds, record_figures, status_kib

TOTAL = 20_000
WORKERS = 4
SOAK_DEADLINE = 100.0  # seconds for the 20,000 requests
FD_SETTLE = 10.0
RSS_MARGIN_KIB = 10 * 1024
KINDS = ["execute-true", "execute-echo", "stream", "upload", "download", "list", "exists", "bad-json", "not-found",
         "health"]


def _one(session: requests.Session, base: str, worker: int, i: int) -> tuple[str, str | None]:
    """Request i of a worker; returns (kind, problem or None)."""
    kind = KINDS[i % len(KINDS)]
    folder = f"soak/w{worker}"
    name = f"{folder}/f{i % 16}.txt"
    payload = f"worker {worker} request {i}\n".encode()
    t = 20
    if kind == "execute-true":
        r = session.post(base + "/execute", json={"command": "true"}, timeout=t)
        ok = r.status_code == 200 and r.json()["exit_code"] == 0
    elif kind == "execute-echo":
        r = session.post(base + "/execute", json={"command": f"echo soak-{worker}-{i}"}, timeout=t)
        ok = r.status_code == 200 and r.json()["stdout"] == f"soak-{worker}-{i}\n"
    elif kind == "stream":
        r = session.post(base + "/execute/stream", json={"command": f"echo s{i}"}, timeout=t)
        ok = r.status_code == 200 and f"data: s{i}\n" in r.text and r.text.rstrip().endswith("}") \
            and "event: done" in r.text
    elif kind == "upload":
        r = session.post(base + "/upload", files={"file": (f"{folder}/up.txt", payload)}, timeout=t)
        ok = r.status_code == 200
        if ok:  # keep a file at `name` for the download below
            r = session.put(base + f"/v1/files/{name}", data=payload, timeout=t)
            ok = r.status_code in (200, 201, 204)
    elif kind == "download":
        r = session.get(base + f"/download/{folder}/up.txt", timeout=t)
        ok = r.status_code == 200 and r.content.startswith(f"worker {worker} request".encode())
    elif kind == "list":
        r = session.get(base + f"/list/{folder}", timeout=t)
        ok = r.status_code == 200 and isinstance(r.json(), list)
    elif kind == "exists":
        r = session.get(base + f"/exists/{folder}/up.txt", timeout=t)
        ok = r.status_code == 200 and r.json()["exists"] is True
    elif kind == "bad-json":
        r = session.post(base + "/execute", data=b"{not json", headers={"Content-Type": "application/json"},
                         timeout=t)
        ok = r.status_code == 422
    elif kind == "not-found":
        r = session.get(base + f"/nope/{i}", timeout=t)
        ok = r.status_code == 404
    else:
        r = session.get(base + "/", timeout=t)
        ok = r.status_code == 200
    return kind, None if ok else f"{kind} #{i}: {r.status_code} {r.text[:200]!r}"


def _worker(base: str, worker: int, count: int, deadline: float, results) -> None:
    done = Counter()
    problems: list[str] = []
    try:
        with requests.Session() as session:
            # The first file for the downloads.
            session.post(base + "/upload", files={"file": (f"soak/w{worker}/up.txt", b"worker %d request -\n" % worker)},
                         timeout=20)
            for i in range(count):
                if time.monotonic() > deadline:
                    problems.append(f"deadline passed after {i} requests")
                    break
                try:
                    kind, problem = _one(session, base, worker, i)
                except Exception as error:  # a reset or a timeout is a finding, not a crash of the soak
                    kind, problem = KINDS[i % len(KINDS)], f"#{i}: {error!r}"
                    session.close()
                    session = requests.Session()
                done[kind] += 1
                if problem:
                    problems.append(problem)
    except Exception:
        problems.append(traceback.format_exc())
    results.put((worker, dict(done), problems))


def _run(base: str, total: int, deadline: float) -> tuple[dict, list[str]]:
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(base, w, total // WORKERS, deadline, results)) for w in range(WORKERS)]
    for p in procs:
        p.start()
    done: Counter = Counter()
    problems: list[str] = []
    for _ in procs:
        worker, counts, worker_problems = results.get(timeout=max(1.0, deadline - time.monotonic() + 30))
        done.update(counts)
        problems += [f"w{worker} {p}" for p in worker_problems]
    for p in procs:
        p.join(10)
        if p.is_alive():
            p.kill()
    return dict(done), problems


def _snapshot(pid: int) -> dict:
    return {"fds": len(open_fds(pid)), "vmrss_kib": status_kib(pid, "VmRSS"), "vmhwm_kib": status_kib(pid, "VmHWM"),
            "threads": sum(1 for _ in os.scandir(f"/proc/{pid}/task"))}


@pytest.mark.deadline(170)
def test_soak_20000_mixed_requests(start_server):
    srv = start_server()
    # Warm up (lazily created threads, caches, allocator arenas), then settle before the baseline.
    _, warm_problems = _run(srv.base_url, 400, time.monotonic() + 60)
    assert not warm_problems, warm_problems[:10]
    assert wait_until(lambda: not children(srv.pid), 5.0), "children left after the warm-up"
    before_fd_targets = sorted(open_fds(srv.pid))
    before = _snapshot(srv.pid)

    started = time.monotonic()
    done, problems = _run(srv.base_url, TOTAL, started + SOAK_DEADLINE)
    elapsed = time.monotonic() - started
    during = _snapshot(srv.pid)

    no_children = wait_until(lambda: not children(srv.pid), 10.0, 0.1)
    fds_back = wait_until(lambda: len(open_fds(srv.pid)) == before["fds"], FD_SETTLE, 0.1)
    after = _snapshot(srv.pid)
    figures = {"requests": sum(done.values()), "by_kind": done, "seconds": round(elapsed, 1),
               "requests_per_second": round(sum(done.values()) / elapsed), "problems": len(problems),
               "before": before, "after": after, "right_after_load": during,
               "rss_delta_kib": after["vmrss_kib"] - before["vmrss_kib"]}
    record_figures("soak", figures)

    assert sum(done.values()) == TOTAL, f"only {sum(done.values())} of {TOTAL} requests in {SOAK_DEADLINE}s: {done}"
    assert not problems, f"{len(problems)} wrong answers; first: {problems[:10]}"
    assert no_children, f"children left after the soak: {children(srv.pid)}"
    if not fds_back:
        now = sorted(open_fds(srv.pid))
        extra = list((Counter(now) - Counter(before_fd_targets)).elements())
        raise AssertionError(f"open fds {before['fds']} before, {len(now)} {FD_SETTLE}s after the soak; "
                             f"extra: {extra[:20]}")
    assert after["vmrss_kib"] - before["vmrss_kib"] < RSS_MARGIN_KIB, \
        f"RSS grew by {(after['vmrss_kib'] - before['vmrss_kib']) / 1024:.1f} MiB over the soak"
    assert requests.get(srv.base_url + "/", timeout=5).status_code == 200
