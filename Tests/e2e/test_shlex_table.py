"""Keeps the ShellWords fixture honest: the checked-in table must be what the running Python's shlex.split
produces, so it cannot drift from the generator or from Python.

Regenerate with: python3 Tests/tools/gen_shlex_table.py
"""

import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tools"))

import gen_shlex_table  # noqa: E402


def test_checked_in_table_matches_running_python():
    expected = gen_shlex_table.render(gen_shlex_table.build_cases())
    actual = gen_shlex_table.FIXTURE.read_text(encoding="utf-8")
    assert actual == expected, "shlex_cases.json is stale; run python3 Tests/tools/gen_shlex_table.py"


def test_table_is_large_and_covers_both_outcomes():
    cases = json.loads(gen_shlex_table.FIXTURE.read_text(encoding="utf-8"))
    assert len(gen_shlex_table.HAND_WRITTEN) >= 150
    assert len(cases) >= 450
    errors = {case["error"] for case in cases if "error" in case}
    assert errors == {"No closing quotation", "No escaped character"}
    assert any("" in case.get("argv", []) for case in cases), "no case yields an empty word"

