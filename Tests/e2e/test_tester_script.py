"""Runs Tests/e2e/tester.py (the reference-style client) against the live server, twice in a row."""
import pathlib
import subprocess
import sys

from conftest import Server

TESTER = pathlib.Path(__file__).with_name("tester.py")


def test_tester_passes_twice(server: Server) -> None:
    for run in (1, 2):
        result = subprocess.run(
            [sys.executable, str(TESTER), server.host, str(server.port)],
            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        )
        assert result.returncode == 0, f"run {run}:\n{result.stdout}\n{result.stderr}"
