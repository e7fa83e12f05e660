"""Fixtures of the reliability suite; the servers and helpers come from the e2e suite's conftest.

Run it with the rest (``pytest Tests/e2e``) or alone (``pytest Tests/e2e/reliability``). In the second case
pytest's conftest search stops at this directory, so the parent conftest's fixtures and hooks are re-exported
from here; when pytest already loaded the parent, nothing is re-exported (the hooks must not run twice).
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tempfile
from typing import Iterator

import pytest

_E2E = pathlib.Path(__file__).resolve().parents[1]


def _parent_conftest_loaded() -> bool:
    module = sys.modules.get("conftest")
    return module is not None and pathlib.Path(module.__file__).resolve() == _E2E / "conftest.py"


if not _parent_conftest_loaded():
    if str(_E2E) not in sys.path:
        sys.path.insert(0, str(_E2E))
    from conftest import *  # noqa: F401,F403  (fixtures: server, start_server, api, ...; hooks: deadline)
    from conftest import pytest_configure, pytest_runtest_call  # noqa: F401  (hooks, re-exported explicitly)


@pytest.fixture
def tmpfs_root() -> Iterator[pathlib.Path]:
    """A 2 MiB tmpfs to use as a server root (a disk that fills up); skips when mounting is not permitted.

    Request it before ``start_server`` so the servers on it are stopped before it is unmounted.
    """
    mountpoint = pathlib.Path(tempfile.mkdtemp(prefix="sandboxd-tmpfs-"))
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mountpoint)],
                             capture_output=True, text=True, timeout=20)
    if mounted.returncode != 0:
        os.rmdir(mountpoint)
        pytest.skip(f"cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True, timeout=20)
        os.rmdir(mountpoint)
