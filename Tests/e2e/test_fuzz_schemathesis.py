"""Schema-driven fuzzing: schemathesis against sandboxd's own OpenAPI document (GET /openapi.json).

The test starts its own sandboxd on 127.0.0.1 with a fresh temporary root and `--max-timeout 2` (the fuzzer's
commands are random strings run with cwd = that root, and none may run for long), seeds the root with a few
files, and runs the schemathesis CLI twice:

1. Every operation of the document: the examples, coverage and fuzzing phases, at most MAX_EXAMPLES generated
   cases per operation in the fuzzing phase, a fixed seed, one worker (so the server sees the same sequence of
   requests each run). Schemathesis picks up the process ids that POST /v1/processes answers and reuses them;
   each of those processes is killed right after its 201 unless its own `timeout` ends it within 2 s (see
   schemathesis_hooks.py: a REPL or a `cat` with stdin open would otherwise hold waits and event streams until
   the request timeout).
2. The operations on one process (`/v1/processes/{id}...`) again, each pinned to a live process of its own
   (`sh -c 'echo ready; exec cat'` with stdin open, on a pty), so that writing stdin, signalling, resizing,
   closing stdin and reading live events are fuzzed too, not only their 404 and 409s. The processes for events
   and wait end by a 3 s timeout, so that those requests end too.

Checks, and why these: not_a_server_error (no 5xx), status_code_conformance, content_type_conformance,
response_schema_conformance (this includes every Server-Sent Event of /execute/stream and of a process's events,
each validated against the document's event schema, JSON payloads included), response_headers_conformance,
unsupported_method (an undocumented method is a 405 with `Allow`), missing_required_header, and
`sse_stream_framing` from schemathesis_hooks.py for what a per-event schema cannot say (framing, `done`/`exit`
last and once, increasing ids). Left out, deliberately:
- positive_data_acceptance: it wants a 2xx for every schema-valid request, but many valid requests fail on the
  state of the sandbox (a PUT below a file is a 400, a DELETE of a non-empty directory a 409, a Last-Event-ID past
  the newest event a 400); the document lists those statuses instead.
- negative_data_rejection: sandboxd is lenient where the reference is (`timeout` is read before
  `timeout_seconds`, which is then ignored; an empty query value is an absent one), so some schema-invalid
  requests are served.
- allow_header_conformance: it fails on a known server bug (OPTIONS, PUT or PATCH on a `/v1/processes/{id}/...`
  path answers `Allow: GET, POST, DELETE, HEAD`, the methods of all the process routes, instead of the
  endpoint's); the 405s of the methods the process routes do take name the endpoint's exact methods.
- the stateful phase, use_after_free and ensure_resource_availability (link-driven; the document has no links).
GET /openapi.json itself is not fuzzed (schemathesis leaves out the document it loaded); test_openapi.py checks it.
GET /v1/watch is not fuzzed either: a watch of a directory that exists never ends by itself (test_watch.py tests it).

Background processes the fuzzer starts are ended by sandboxd's shutdown: the test stops the server (SIGTERM,
exit 0 expected) and checks that none of its descendants is left.

Budget: about 45 s on 2 cores with the defaults (100 examples per operation); SANDBOXD_FUZZ_EXAMPLES and
SANDBOXD_FUZZ_SEED override them.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time

import pytest
import requests

from conftest import descendants, stop, wait_until

HERE = pathlib.Path(__file__).resolve().parent
MAX_EXAMPLES = int(os.environ.get("SANDBOXD_FUZZ_EXAMPLES", "100"))
SEED = int(os.environ.get("SANDBOXD_FUZZ_SEED", "20261128"))
REQUEST_TIMEOUT = 15  # seconds; commands are capped at 2 s, live process streams end within 3 s
RUN_DEADLINE = 150  # seconds one schemathesis run may take before it is killed and the test fails
CHECKS = ",".join([
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    "unsupported_method",
    "missing_required_header",
    "sse_stream_framing",
])
# The operations on one process and their operationId in the document.
PROCESS_OPERATIONS = [
    "getProcess",
    "deleteProcess",
    "processEvents",
    "waitProcess",
    "writeStdin",
    "closeStdin",
    "signalProcess",
    "resizeProcess",
]


def seed_root(root: pathlib.Path) -> None:
    """Things for the document's example paths (`data`, `data/input.csv`) and a few more to find."""
    (root / "data" / "sub").mkdir(parents=True)
    (root / "data" / "input.csv").write_text("a,b\n1,2\n")
    (root / "data" / "sub" / "deep.txt").write_bytes(bytes(range(256)) * 64)
    (root / "data" / "empty").write_bytes(b"")
    (root / "outside").symlink_to("/")  # a link out of the root: 403


def run_schemathesis(base_url: str, workdir: pathlib.Path, *extra: str, config: pathlib.Path | None = None,
                     bound_processes: bool = False) -> tuple[int, str, float]:
    """Runs the schemathesis CLI; returns its exit code, its output and the seconds it took."""
    cmd = [sys.executable, "-m", "schemathesis.cli"]
    if config is not None:
        cmd += ["--config-file", str(config)]
    cmd += [
        "run", f"{base_url}/openapi.json",
        "--checks", CHECKS,
        "--phases", "examples,coverage,fuzzing",
        "--max-examples", str(MAX_EXAMPLES),
        "--seed", str(SEED),
        "--workers", "1",
        "--request-timeout", str(REQUEST_TIMEOUT),
        "--generation-database", "none",
        "--no-color",
        *extra,
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": str(HERE / "schemathesis_hooks.py"),
           "SANDBOXD_FUZZ_BOUND_PROCESSES": "1" if bound_processes else "0"}
    started = time.monotonic()
    try:
        done = subprocess.run(cmd, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=RUN_DEADLINE)
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or b"").decode("utf-8", "replace")
        pytest.fail(f"schemathesis did not finish within {RUN_DEADLINE}s\n{output[-6000:]}")
    return done.returncode, done.stdout.decode("utf-8", "replace"), time.monotonic() - started


def summary(output: str) -> str:
    """The lines of the CLI's report that say what ran."""
    keep = ("Operations:", "passed", "failed", "generated", "Seed:", "errored", "skipped")
    return "\n".join(line for line in output.splitlines() if any(word in line for word in keep))


def start_live_process(base_url: str, operation: str) -> str:
    """A process that echoes its stdin on a pty. The one for reading events or waiting ends by its timeout soon, so
    those requests return; the others live until the fuzzer ends them (a signal, a DELETE, a Ctrl-C or Ctrl-D byte
    on the pty) or the server's shutdown does."""
    resp = requests.post(f"{base_url}/v1/processes", timeout=10, json={
        "command": ["sh", "-c", "echo ready; exec cat"],
        "stdin": True,
        "pty": {"cols": 80, "rows": 24},
        "timeout": 3 if operation in ("processEvents", "waitProcess") else 120,
    })
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


@pytest.mark.deadline(360)
def test_schemathesis_finds_nothing(start_server, tmp_path: pathlib.Path) -> None:
    pytest.importorskip("schemathesis")
    server = start_server("--max-timeout", "2")
    assert server.host == "127.0.0.1", "the fuzzer only ever targets loopback"
    assert server.root is not None
    seed_root(server.root)
    reports = []

    # GET /v1/watch of a directory is a stream that ends only when the directory goes away: test_watch.py drives it.
    code, output, seconds = run_schemathesis(server.base_url, tmp_path, "--exclude-path", "/v1/watch",
                                             bound_processes=True)
    reports.append(f"--- every operation ({seconds:.0f} s) ---\n{summary(output)}")
    assert code == 0, f"schemathesis found problems (exit {code}):\n{output[-12000:]}\n--- server log ---\n" \
                      f"{server.log_tail(40)}"
    assert server.proc.poll() is None, f"sandboxd died during the fuzz:\n{server.log_tail()}"

    # Each process operation gets a live process of its own, so one that kills or forgets it (a signal, DELETE)
    # leaves the others theirs.
    config = tmp_path / "schemathesis.toml"
    with config.open("w") as f:
        for operation in PROCESS_OPERATIONS:
            live = start_live_process(server.base_url, operation)
            f.write(f'[[operations]]\ninclude-operation-id = "{operation}"\nparameters = {{ "path.id" = "{live}" }}\n\n')
    code, output, seconds = run_schemathesis(
        server.base_url, tmp_path, "--include-path-regex", r"^/v1/processes/\{id\}", config=config)
    reports.append(f"--- live processes ({seconds:.0f} s) ---\n{summary(output)}")
    assert code == 0, f"schemathesis found problems (exit {code}):\n{output[-12000:]}\n--- server log ---\n" \
                      f"{server.log_tail(40)}"
    assert "8 selected" in output, output[-3000:]

    assert requests.get(f"{server.base_url}/", timeout=10).status_code == 200
    # Whatever the fuzzer left running (background processes, commands of cut streams) ends with the server.
    left = set(descendants(server.pid))
    stop(server)
    survivors = _survivors(left)
    assert not survivors, f"processes outlived sandboxd's shutdown: {survivors}"
    print("\n".join(reports))


def _alive(pid: int) -> bool:
    """True while pid is a process that is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _survivors(pids: set[int]) -> list[int]:
    """The pids still alive, after a bounded wait for them to go."""
    wait_until(lambda: not any(_alive(pid) for pid in pids), 5.0)
    return [pid for pid in pids if _alive(pid)]
