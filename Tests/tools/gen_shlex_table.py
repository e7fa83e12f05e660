#!/usr/bin/env python3
"""Builds the table of shlex.split cases that ShellWordsTests checks ShellWords.split against.

Run from anywhere: python3 Tests/tools/gen_shlex_table.py
It writes Tests/SandboxServiceTests/Fixtures/shlex_cases.json, one case per line:
{"input": ..., "argv": [...]} or {"input": ..., "error": "No closing quotation"}.
Tests/e2e/test_shlex_table.py checks that the checked-in file is what this produces.
"""

import json
import pathlib
import shlex

FIXTURE = (
    pathlib.Path(__file__).resolve().parent.parent / "SandboxServiceTests" / "Fixtures" / "shlex_cases.json"
)

# The characters that matter to shlex, plus one non-ASCII letter; random strings over them hit every
# state transition many times.
RANDOM_ALPHABET = ["a", "b", "'", '"', "\\", " ", "\t", "\n", "#", "$", "\u00e9"]
RANDOM_COUNT = 400
RANDOM_MAX_LENGTH = 12

HAND_WRITTEN = [
    # Empty and whitespace only.
    "",
    " ",
    "   ",
    "\t",
    "\n",
    "\r",
    "\r\n",
    " \t\r\n ",
    "\n\n\n",
    # Plain words and separators.
    "a",
    "echo",
    "echo hello",
    "echo hello world",
    "  leading",
    "trailing  ",
    "  both  ",
    "a  b",
    "a\tb",
    "a\nb",
    "a\rb",
    "a\r\nb",
    "a \t\r\n b",
    "ls -la /app",
    "python3 -c print(1)",
    "--flag=value",
    "-",
    "--",
    # Whitespace that shlex does not treat as whitespace.
    "a\x0bb",
    "a\x0cb",
    "a\u00a0b",
    "a\u2003b",
    "a\u2028b",
    "a\x85b",
    "a\x00b",
    "\x00",
    # Single quotes.
    "'hello world'",
    "echo 'hello world'",
    "''",
    "'' ''",
    "a '' b",
    "a''b",
    "'a'b",
    "a'b'",
    "'a''b'",
    "'a' 'b'",
    "' '",
    "'  spaced  '",
    "'\t'",
    "'\n'",
    "'a\nb'",
    "'\\'",
    "'\\\\'",
    "'a\\nb'",
    "'\"'",
    "'\"a\"'",
    "'$HOME'",
    "'#'",
    "'it'\\''s'",
    "'a'\"b\"'c'",
    # Double quotes.
    '"hello world"',
    'echo "hello world"',
    '""',
    '"" ""',
    'a "" b',
    'a""b',
    '"a"b',
    'a"b"',
    '"a""b"',
    '" "',
    '"\t"',
    '"a\nb"',
    '"\'"',
    '"it\'s"',
    "\"'a'\"",
    '"$HOME"',
    '"#"',
    '"a#b"',
    # Backslashes inside double quotes: only " and \ are escaped.
    '"\\""',
    '"a\\"b"',
    '"\\\\"',
    '"a\\\\b"',
    '"\\a"',
    '"\\n"',
    '"\\$"',
    '"\\\'"',
    '"\\ "',
    '"\\\n"',
    '"\\\\\\""',
    '"\\\\\\\\"',
    '"\\#"',
    '"\\\u00e9"',
    # Backslashes outside quotes: escape anything.
    "\\a",
    "a\\b",
    "\\\\",
    "\\ ",
    "a\\ b",
    "\\'",
    '\\"',
    "\\'a\\'",
    "\\#",
    "\\$HOME",
    "\\\t",
    "\\\n",
    "a\\\nb",
    "a \\\n b",
    "\\\r\n",
    "\\\\\\\\",
    "\\ \\ ",
    "\\\u00e9",
    "\\\x00",
    # Trailing backslashes.
    "\\",
    "a\\",
    "a \\",
    "\\\\\\",
    '"a\\',
    '"\\',
    "'a\\",
    "a'\\'",
    # Unterminated quotes.
    "'",
    '"',
    "'abc",
    '"abc',
    "a 'b",
    'a "b',
    "'a' 'b",
    '"a" "b',
    "'\"",
    "\"'",
    "'''",
    '"""',
    '"\\"',
    '"a\\"',
    "echo 'hello",
    'echo "hello',
    "it's",
    # Shell syntax is not interpreted.
    "#",
    "# comment",
    "a # comment",
    "a#b",
    "echo $HOME",
    "echo ${HOME}",
    "$(whoami)",
    "`whoami`",
    "a;b",
    "a ; b",
    "a|b",
    "a | b",
    "a && b",
    "a || b",
    "a > out.txt",
    "a 2>&1",
    "a < in",
    "a &",
    "*.txt",
    "ls *",
    "a?b",
    "[abc]",
    "{a,b}",
    "~",
    "~/x",
    "(a)",
    "a=b c",
    "!",
    "%",
    # Realistic commands.
    "sh -c 'echo hello; echo world'",
    "sh -c \"echo \\\"quoted\\\"\"",
    "python3 -c 'import sys; print(sys.argv)' one two",
    "python3 -c \"print('hi')\"",
    "grep -r \"foo bar\" .",
    "find . -name '*.py' -print",
    "awk '{print $1}' file",
    "curl -H 'Content-Type: application/json' -d '{\"a\": 1}' http://x",
    "git commit -m \"fix: don't crash\"",
    "echo \"a\\tb\"",
    "printf '%s\\n' a b",
    "cat 'my file.txt'",
    "cat my\\ file.txt",
    "env A=1 B='two words' cmd",
    # Unicode.
    "\u00e9",
    "caf\u00e9",
    "cafe\u0301",
    "'cafe\u0301'",
    "\"cafe\u0301\"",
    "'\u0301'",
    "a \u0301b",
    "\"\u0301\"",
    "\\\u0301",
    "\u65e5\u672c\u8a9e \u4e2d\u6587",
    "echo '\u3053\u3093\u306b\u3061\u306f'",
    "\U0001f600",
    "\U0001f600 \U0001f601",
    "'\U0001f468\u200d\U0001f469\u200d\U0001f467'",
    "\u05e9\u05dc\u05d5\u05dd",
    "\ufeff",
    "a\ufeffb",
    "\uffff",
    # Many words and long tokens.
    "a b c d e f g h i j",
    "x" * 200,
    "'" + "y" * 200 + "'",
    " ".join(["w"] * 50),
    "\\" * 10,
    "\\" * 11,
    "'" * 10,
    "'" * 11,
    '"' * 10,
    '"' * 11,
]


def random_inputs():
    """RANDOM_COUNT strings from a fixed linear congruential generator, so the inputs do not depend on the
    Python version's `random` module."""
    state = 20240601
    inputs = []

    def next_int(bound):
        nonlocal state
        state = (state * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        return (state >> 33) % bound

    for _ in range(RANDOM_COUNT):
        length = next_int(RANDOM_MAX_LENGTH + 1)
        inputs.append("".join(RANDOM_ALPHABET[next_int(len(RANDOM_ALPHABET))] for _ in range(length)))
    return inputs


def build_cases():
    """Every input once, in order, with what the running Python's shlex.split makes of it."""
    cases = []
    seen = set()
    for text in HAND_WRITTEN + random_inputs():
        if text in seen:
            continue
        seen.add(text)
        try:
            cases.append({"input": text, "argv": shlex.split(text)})
        except ValueError as error:
            cases.append({"input": text, "error": str(error)})
    return cases


def render(cases):
    """One case per line so a change in the table shows up as a readable diff."""
    lines = [json.dumps(case, ensure_ascii=False) for case in cases]
    return "[\n" + ",\n".join(lines) + "\n]\n"


def main():
    cases = build_cases()
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(render(cases), encoding="utf-8")
    print(f"wrote {len(cases)} cases to {FIXTURE}")


if __name__ == "__main__":
    main()
