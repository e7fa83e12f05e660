"""The file endpoints under attack from inside the sandbox: symlink chains, a directory swapped for a symlink while
requests run, listings of links that point out, and upload names that climb out of the root.

Each test starts its own server on a root `<tmp>/root` next to `<tmp>/outside`, a sibling directory holding canary
files that no request may read, list, change or delete. Every wait is bounded; nothing sleeps to synchronise.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field

import pytest
import requests

from conftest import Api

ACCESS_DENIED = {"message": "Access denied"}
# Distinctive size and modification time, to recognise the canary in a listing even under another name.
CANARY_SIZE = 12_345
CANARY_MTIME = 1_234_567_890


@dataclass
class Jail:
    api: Api
    root: pathlib.Path
    outside: pathlib.Path
    canary: bytes
    before: dict[str, bytes | int | None] = field(default_factory=dict)

    def snapshot(self) -> dict[str, bytes | int | None]:
        """Every path under <tmp> that is not inside the root: a file's contents, a directory's modification time
        (which anything created and removed again in it would change), None for a link."""
        found: dict[str, bytes | int | None] = {}
        base = self.root.parent
        for directory, dirs, files in os.walk(base):
            rel_dir = os.path.relpath(directory, base)
            if rel_dir == "root" or rel_dir.startswith("root" + os.sep):
                continue
            for name in dirs + files:
                path = os.path.join(directory, name)
                rel = os.path.relpath(path, base)
                if rel == "root":
                    continue
                if os.path.islink(path):
                    found[rel] = None
                elif os.path.isdir(path):
                    found[rel] = os.stat(path).st_mtime_ns
                else:
                    found[rel] = pathlib.Path(path).read_bytes()
        return found

    def assert_outside_untouched(self) -> None:
        after = self.snapshot()
        changed = sorted(key for key in set(after) | set(self.before) if after.get(key) != self.before.get(key))
        assert not changed, f"outside the root changed: {changed}"
        assert os.stat(self.outside / "canary.txt").st_mtime == CANARY_MTIME


@pytest.fixture
def jail(start_server, make_api, tmp_path) -> Jail:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    canary = (b"CANARY-" + uuid.uuid4().hex.encode()) * (CANARY_SIZE // 39 + 1)
    canary = canary[:CANARY_SIZE]
    for name in ("canary.txt", "f.txt", "victim.txt", "sub/keep.txt"):
        (outside / name).write_bytes(canary)
        os.utime(outside / name, (CANARY_MTIME, CANARY_MTIME))
    root.mkdir()
    srv = start_server(root=root)
    jail = Jail(make_api(srv), root, outside, canary)
    jail.before = jail.snapshot()
    return jail


def v1(path: str) -> str:
    return "/v1/files/" + urllib.parse.quote(path)


def assert_v1_error(resp, status: int, code: str) -> None:
    assert resp.status_code == status, f"{resp.status_code} {resp.text}"
    assert resp.json()["code"] == code, resp.text


# ==========================================================================
# Symlink chains: more than 40 links is ELOOP, never a path


def make_chain(root: pathlib.Path, kind: str, links: int) -> str:
    """A chain of `links` symlinks that all lead back to the root; returns the path prefix that walks it."""
    if kind == "dot":
        for n in range(1, links + 1):
            os.symlink(".", root / f"dot{n}")
        return "/".join(f"dot{n}" for n in range(1, links + 1)) + "/"
    os.symlink(".", root / "prev1")
    for n in range(2, links + 1):
        os.symlink(f"prev{n - 1}", root / f"prev{n}")
    return f"prev{links}/"


@pytest.mark.parametrize("kind", ["dot", "previous"])
def test_symlink_chains_are_too_many_links(jail, kind):
    """40 links, then one more to the outside: the 41st is ELOOP (400), not the rest of the path taken unchecked.

    The resolver used to give up after 40 links and return the path resolved so far with the rest appended unread,
    so `<chain>/out/canary.txt` became `root/out/canary.txt` and was opened by path, through the link to the outside.
    """
    api, root = jail.api, jail.root
    os.symlink(jail.outside, root / "out")
    (root / "d").mkdir()
    (root / "d" / "f.txt").write_bytes(b"inside")
    chain = make_chain(root, kind, 40)

    for path in ("out/canary.txt", "out"):
        resp = api.raw("GET", "/download/" + urllib.parse.quote(chain + path))
        assert resp.status == 400 and "symbolic links" in resp.json()["message"], resp
    resp = api.raw("GET", "/list/" + urllib.parse.quote(chain + "out"))
    assert resp.status == 400 and "symbolic links" in resp.json()["message"], resp
    resp = api.raw("GET", "/exists/" + urllib.parse.quote(chain + "out/canary.txt"))
    assert resp.status == 400 and "symbolic links" in resp.json()["message"], resp
    resp = api.upload(chain + "out/new.txt", b"escaped", expect_status=None)
    assert resp.status_code == 400 and "symbolic links" in resp.json()["message"], resp.text

    assert_v1_error(api.get(v1(chain + "out/canary.txt")), 400, "INVALID_ARGUMENT")
    assert_v1_error(api.get(v1(chain + "out")), 400, "INVALID_ARGUMENT")
    assert_v1_error(api.request("PUT", v1(chain + "out/new.txt"), data=b"escaped"), 400, "INVALID_ARGUMENT")
    assert_v1_error(api.request("DELETE", v1(chain + "out/victim.txt")), 400, "INVALID_ARGUMENT")
    assert_v1_error(api.request("DELETE", v1(chain + "out/sub"), params={"recursive": "true"}), 400,
                    "INVALID_ARGUMENT")
    resp = api.post("/v1/processes", json={"command": ["sh", "-c", "cat canary.txt"], "cwd": chain + "out"})
    assert_v1_error(resp, 400, "INVALID_ARGUMENT")
    assert "symbolic links" in resp.json()["message"]

    # One link fewer: the chain resolves, and the link out is refused as leading outside.
    shorter = chain.split("/", 1)[1] if kind == "dot" else "prev39/"
    resp = api.raw("GET", "/download/" + urllib.parse.quote(shorter + "out/canary.txt"))
    assert resp.status == 403 and resp.json() == ACCESS_DENIED, resp
    assert api.get(v1(shorter + "d/f.txt")).content == b"inside"
    jail.assert_outside_untouched()


def test_symlink_loops_are_too_many_links(jail):
    api, root = jail.api, jail.root
    os.symlink("loop", root / "loop")
    os.symlink("pong", root / "ping")
    os.symlink("ping", root / "pong")
    for path in ("loop", "ping/x", "loop/../f.txt"):
        resp = api.raw("GET", "/download/" + path)
        assert resp.status == 400 and "symbolic links" in resp.json()["message"], resp
        resp = api.raw("GET", v1(path))
        assert resp.status == 400 and resp.json()["code"] == "INVALID_ARGUMENT", resp


# ==========================================================================
# Listings: a link is described by its target only when that is inside the root


def test_listings_do_not_describe_what_lies_outside(jail):
    api, root = jail.api, jail.root
    (root / "f.txt").write_bytes(b"inside")
    os.symlink(jail.outside / "canary.txt", root / "peek")
    os.symlink("../outside/canary.txt", root / "peek-relative")
    os.symlink(jail.outside, root / "peek-dir")
    os.symlink("nowhere", root / "dangling")
    os.symlink("loop", root / "loop")
    os.symlink("f.txt", root / "inner")

    legacy = api.get("/list/").json()
    listing = api.get("/v1/files/").json()["entries"]
    for entries in (legacy, listing):
        assert sorted(e["name"] for e in entries) == ["f.txt", "inner"], entries
        for entry in entries:
            assert entry["size"] != CANARY_SIZE, entry
        assert next(e for e in entries if e["name"] == "inner")["size"] == len(b"inside")
    assert all(int(e["mod_time"]) != CANARY_MTIME for e in legacy), legacy
    jail.assert_outside_untouched()


# ==========================================================================
# Upload names: confinement is checked before the "names a file" rule


@pytest.mark.parametrize("filename", ["..", "a/../..", "./..", "../", "/..", "a/../../x"])
def test_upload_name_leading_out_of_the_root_is_access_denied(jail, filename):
    resp = jail.api.upload(filename, b"x", expect_status=None)
    assert resp.status_code == 403 and resp.json() == ACCESS_DENIED, f"{filename}: {resp.status_code} {resp.text}"
    assert os.listdir(jail.root) == []
    jail.assert_outside_untouched()


@pytest.mark.parametrize("filename", [".", "a/..", "./", "a/b/../.."])
def test_upload_name_resolving_to_the_root_is_400(jail, filename):
    resp = jail.api.upload(filename, b"x", expect_status=None)
    assert resp.status_code == 400, f"{filename}: {resp.status_code} {resp.text}"
    assert "must name a file" in resp.json()["message"]
    assert os.listdir(jail.root) == []


# ==========================================================================
# A write refused for its path is refused before anything is created


def test_put_too_deep_is_400_and_creates_nothing(jail):
    """Each name is valid, but the file would lie deeper than PATH_MAX: refused before any directory is made."""
    deep = "/".join(["d" * 200] * 25) + "/f.txt"
    resp = jail.api.request("PUT", v1(deep), data=b"x")
    assert_v1_error(resp, 400, "INVALID_ARGUMENT")
    assert str(jail.root) not in resp.text
    resp = jail.api.upload(deep, b"x", expect_status=None)
    assert resp.status_code == 400, resp.text
    assert os.listdir(jail.root) == []


def test_put_through_a_file_is_400_and_creates_nothing(jail):
    (jail.root / "file").write_bytes(b"x")
    assert_v1_error(jail.api.request("PUT", v1("file/below/f.txt"), data=b"x"), 400, "INVALID_ARGUMENT")
    assert os.listdir(jail.root) == ["file"]


# ==========================================================================
# The race: a directory swapped for a symlink to the outside while requests go through it

RACE_SECONDS = 4.0

# Exchanges `d` (a directory) and `alt` (a symlink to the outside) atomically, as fast as it can, for argv[1]
# seconds; prints the number of exchanges.
SWAPPER = r"""
import ctypes, sys, time
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, RENAME_EXCHANGE = -100, 2
end = time.monotonic() + float(sys.argv[1])
swaps = 0
while time.monotonic() < end:
    for _ in range(500):
        if libc.renameat2(AT_FDCWD, b"d", AT_FDCWD, b"alt", RENAME_EXCHANGE) != 0:
            raise OSError(ctypes.get_errno(), "renameat2")
    swaps += 500
print(swaps)
"""


class Race:
    """Request loops run while the swapper runs; every answer is checked as it comes."""

    def __init__(self, jail: Jail) -> None:
        self.jail = jail
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.failures: list[str] = []
        self.counts: dict[str, int] = {}

    def record(self, label: str, resp_status: int, allowed: set[int], leaked: bool, detail: str = "") -> None:
        with self.lock:
            self.counts[f"{label} {resp_status}"] = self.counts.get(f"{label} {resp_status}", 0) + 1
            if resp_status not in allowed:
                self.failures.append(f"{label}: status {resp_status} {detail[:200]}")
            if leaked:
                self.failures.append(f"{label}: outside content or names in the answer: {detail[:200]}")

    def loop(self, body) -> None:
        session = requests.Session()
        i = 0
        try:
            while not self.stop.is_set():
                body(session, i)
                i += 1
        except Exception as error:  # noqa: BLE001 - reported as a test failure below
            with self.lock:
                self.failures.append(f"{body.__name__}: {error!r}")

    def url(self, path: str) -> str:
        return self.jail.api.url(path)

    def leaks(self, content: bytes) -> bool:
        return self.jail.canary[:40] in content

    def writer(self, session: requests.Session, i: int) -> None:
        resp = session.post(self.url("/upload"), files={"file": (f"d/up-{i}.txt", b"uploaded")}, timeout=30)
        self.record("legacy upload", resp.status_code, {200, 403}, False, resp.text)
        resp = session.put(self.url(v1(f"d/put-{i}.txt")), data=b"put", timeout=30)
        self.record("v1 PUT", resp.status_code, {204, 403}, False, resp.text)
        resp = session.put(self.url(v1(f"d/new-{i}/deeper/f.txt")), data=b"put", timeout=30)
        self.record("v1 PUT with parents", resp.status_code, {204, 403}, False, resp.text)

    def reader(self, session: requests.Session, i: int) -> None:
        for path in ("/download/d/f.txt", v1("d/f.txt")):
            resp = session.get(self.url(path), timeout=30)
            wrong = resp.status_code == 200 and resp.content != b"inside"
            self.record(f"GET {path}", resp.status_code, {200, 403}, wrong or self.leaks(resp.content),
                        repr(resp.content[:100]))
        # canary.txt exists only outside: any 200 would be the outside file.
        for path in ("/download/d/canary.txt", v1("d/canary.txt")):
            resp = session.get(self.url(path), timeout=30)
            self.record(f"GET {path}", resp.status_code, {403, 404}, self.leaks(resp.content), resp.text)
        resp = session.get(self.url("/exists/d/canary.txt"), timeout=30)
        exists = resp.status_code == 200 and resp.json()["exists"]
        self.record("GET /exists", resp.status_code, {200, 403}, exists, resp.text)
        for path, entries in (("/list/d", lambda body: body), (v1("d"), lambda body: body["entries"])):
            resp = session.get(self.url(path), timeout=30)
            names = {entry["name"] for entry in entries(resp.json())} if resp.status_code == 200 else set()
            self.record(f"GET {path}", resp.status_code, {200, 403}, bool(names & {"canary.txt", "victim.txt"}),
                        resp.text)

    def deleter(self, session: requests.Session, i: int) -> None:
        resp = session.delete(self.url(v1("d/victim.txt")), timeout=30)
        self.record("v1 DELETE", resp.status_code, {403, 404}, False, resp.text)
        resp = session.put(self.url(v1("d/sub/x.txt")), data=b"x", timeout=30)
        self.record("v1 PUT sub", resp.status_code, {204, 403}, False, resp.text)
        resp = session.delete(self.url(v1("d/sub")), params={"recursive": "true"}, timeout=30)
        self.record("v1 DELETE recursive", resp.status_code, {204, 403, 404}, False, resp.text)

    def processes(self, session: requests.Session, i: int) -> None:
        # Exit status 0 would mean the command ran in the outside directory (only it has canary.txt).
        resp = session.post(self.url("/v1/processes"), json={"command": ["test", "-e", "canary.txt"], "cwd": "d"},
                            timeout=30)
        self.record("v1 process cwd", resp.status_code, {201, 403}, False, resp.text)
        if resp.status_code == 201:
            pid = resp.json()["id"]
            done = session.get(self.url(f"/v1/processes/{pid}/wait"), params={"timeout": "20"}, timeout=30).json()
            self.record("v1 process cwd exit", 200, {200}, done["exit_code"] != 1, str(done))


def test_swapping_a_directory_for_a_symlink_never_reaches_outside(jail):
    """Resolution and use are one operation on descriptors: a swap between them is never followed.

    `d` is exchanged with `alt`, a symlink to the outside, in a tight loop (renameat2 RENAME_EXCHANGE) while
    uploads, writes, reads, listings, existence checks, deletes and process starts go through `d`. Afterwards the
    outside is exactly as before, and no answer carried its content or its names.
    """
    root = jail.root
    (root / "d").mkdir()
    (root / "d" / "f.txt").write_bytes(b"inside")
    os.symlink(jail.outside, root / "alt")
    race = Race(jail)
    workers = [threading.Thread(target=race.loop, args=(body,), daemon=True)
               for body in (race.writer, race.reader, race.deleter, race.processes)]
    started = time.monotonic()
    swapper = subprocess.Popen([sys.executable, "-c", SWAPPER, str(RACE_SECONDS)], cwd=root,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for worker in workers:
        worker.start()
    try:
        out, err = swapper.communicate(timeout=RACE_SECONDS + 30)
    finally:
        race.stop.set()
        if swapper.poll() is None:
            swapper.kill()
            swapper.wait(timeout=10)
        for worker in workers:
            worker.join(timeout=60)
    elapsed = time.monotonic() - started
    assert swapper.returncode == 0, err.decode()
    assert not any(worker.is_alive() for worker in workers), "a request loop did not finish"
    swaps = int(out.decode())
    assert not race.failures, "\n".join(race.failures[:20])
    statuses = {key.rsplit(" ", 1)[1] for key in race.counts}
    # Both states were seen: requests that went through the directory and requests refused at the link.
    assert "403" in statuses and ({"200", "204"} & statuses), race.counts
    assert swaps > 10_000, swaps
    jail.assert_outside_untouched()
    print(f"race: {swaps} swaps, {sum(race.counts.values())} requests in {elapsed:.1f} s: {race.counts}")
