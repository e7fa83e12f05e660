"""Directory watches over the wire, on both fronts: gRPC watcher.v1.FileWatcherService/WatchDir and its HTTP twin,
GET /v1/watch (Server-Sent Events), over the same core.

The gRPC messages come from watcher_pb2.py, generated from Protos/watcher/v1/watcher.proto with
`protoc --proto_path=Protos/watcher/v1 --python_out=Tests/e2e watcher.proto` (scripts/generate-protos.sh does it).

A watch is in place once its answer's head has arrived (the server sends it only after the watch started): gRPC's
initial metadata, HTTP's status line and headers. Every wait has a deadline; events are read by a thread into a
queue, and a test waits for the event it expects.
"""

from __future__ import annotations

import http.client
import json
import os
import pathlib
import queue
import re
import shutil
import signal
import socket
import threading
import time
import urllib.parse
import uuid

import grpc
import pytest
import requests
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

import watcher_pb2
from conftest import Server, launch, sandboxd_binary, stop, wait_until

GRPC_LISTEN_RE = r"gRPC listening on \S*:(\d+)"
EVENT_DEADLINE = 10.0
FRONTS = ("grpc", "http")
KINDS = {
    watcher_pb2.FILE_EVENT_TYPE_CREATE: "create",
    watcher_pb2.FILE_EVENT_TYPE_WRITE: "write",
    watcher_pb2.FILE_EVENT_TYPE_REMOVE: "remove",
    watcher_pb2.FILE_EVENT_TYPE_RENAME: "rename",
    watcher_pb2.FILE_EVENT_TYPE_CHMOD: "chmod",
    watcher_pb2.FILE_EVENT_TYPE_ERROR: "error",
}
END = ("end",)


def grpc_port(server: Server) -> int:
    match = server.wait_for_log(GRPC_LISTEN_RE, 10.0)
    assert match, f"no gRPC listening line\n{server.log_tail()}"
    return int(match.group(1))


class Refused(Exception):
    """A watch the server refused: the gRPC status name or the HTTP status, and the message."""

    def __init__(self, code: str | int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class Watch:
    """One open watch. Its events, as (kind, path, old_path, error) tuples, arrive through a reader thread; END
    follows the last one, with the stream's outcome in `outcome`."""

    def __init__(self) -> None:
        self.events: queue.Queue = queue.Queue()
        self.seen: list[tuple] = []
        self.outcome: object = None

    def _reader(self, produce) -> None:
        threading.Thread(target=self._run, args=(produce,), daemon=True).start()

    def _run(self, produce) -> None:
        try:
            for event in produce():
                self.events.put(event)
        except Exception as error:  # the stream broke or was cancelled: the outcome says which
            self.outcome = error
        self.events.put(END)

    def next(self, deadline: float = EVENT_DEADLINE) -> tuple:
        try:
            event = self.events.get(timeout=deadline)
        except queue.Empty:
            raise AssertionError(f"no event within {deadline}s; seen so far: {self.seen}") from None
        self.seen.append(event)
        return event

    def until(self, wanted: tuple, deadline: float = EVENT_DEADLINE) -> list[tuple]:
        """The events up to and including `wanted` (a prefix of an event tuple), in order."""
        end = time.monotonic() + deadline
        start = len(self.seen)
        while True:
            event = self.next(max(0.0, end - time.monotonic()))
            if event == END:
                raise AssertionError(f"the stream ended before {wanted}: {self.seen[start:]} ({self.outcome!r})")
            if event[: len(wanted)] == wanted:
                return self.seen[start:]

    def rest(self, deadline: float = EVENT_DEADLINE) -> list[tuple]:
        """Every event until the stream ends (END not included)."""
        end = time.monotonic() + deadline
        out = []
        while (event := self.next(max(0.0, end - time.monotonic()))) != END:
            out.append(event)
        return out

    def close(self) -> None:
        raise NotImplementedError


class GrpcWatch(Watch):
    def __init__(self, server: Server, path: str, recursive: bool = False,
                 metadata: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port(server)}")
        rpc = self.channel.unary_stream(
            "/watcher.v1.FileWatcherService/WatchDir",
            request_serializer=watcher_pb2.WatchDirRequest.SerializeToString,
            response_deserializer=watcher_pb2.FileEvent.FromString)
        self.call = rpc(watcher_pb2.WatchDirRequest(path=path, recursive=recursive), timeout=120, metadata=metadata)
        # Waits for the response's headers, or the status of a refusal.
        self.call.initial_metadata()
        if self.call.done() and self.call.code() != grpc.StatusCode.OK:
            code, details = self.call.code(), self.call.details()
            self.channel.close()
            raise Refused(code.name, details)
        self._reader(self._messages)

    def _messages(self):
        for message in self.call:
            yield (KINDS[message.type], message.path, message.old_path, message.error)
        self.outcome = self.call.code().name

    def close(self) -> None:
        self.call.cancel()
        self.channel.close()


class HttpWatch(Watch):
    def __init__(self, server: Server, path: str, recursive: bool = False) -> None:
        super().__init__()
        query = urllib.parse.urlencode({"path": path, "recursive": "true" if recursive else "false"})
        self.conn = http.client.HTTPConnection(server.host, server.port, timeout=120)
        self.conn.request("GET", "/v1/watch?" + query)
        self.response = self.conn.getresponse()
        if self.response.status != 200:
            body = json.loads(self.response.read())
            self.conn.close()
            raise Refused(self.response.status, body["message"])
        assert self.response.getheader("Content-Type", "").startswith("text/event-stream")
        self.sock = self.conn.sock
        self._reader(self._frames)

    def _frames(self):
        kind, data = None, []
        while line := self.response.readline():
            text = line.decode().rstrip("\n")
            if text.startswith("event: "):
                kind = text[len("event: "):]
            elif text.startswith("data: "):
                data.append(text[len("data: "):])
            elif not text and kind:
                body = json.loads("\n".join(data))
                yield (kind, body.get("path", ""), body.get("old_path", ""), body.get("message", ""))
                kind, data = None, []
        self.outcome = "OK"

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()


def open_watch(front: str, server: Server, path: str, recursive: bool = False) -> Watch:
    return GrpcWatch(server, path, recursive) if front == "grpc" else HttpWatch(server, path, recursive)


@pytest.fixture(scope="module")
def watch_server(tmp_path_factory: pytest.TempPathFactory):
    binary = sandboxd_binary()
    if not binary.is_file():
        pytest.skip(f"needs the sandboxd binary ({binary})")
    srv = launch(binary, tmp_path_factory.mktemp("watch-root"), ("--grpc-port", "0"))
    yield srv
    stop(srv)


@pytest.fixture
def watched(watch_server: Server) -> pathlib.Path:
    """A fresh directory under the root, relative path `.name`."""
    directory = watch_server.root / f"w-{uuid.uuid4().hex[:8]}"
    directory.mkdir()
    return directory


@pytest.fixture
def watches():
    opened: list[Watch] = []
    yield opened
    for watch in opened:
        watch.close()


def inotify_instances(pid: int) -> int:
    count = 0
    for fd in pathlib.Path(f"/proc/{pid}/fd").iterdir():
        try:
            if os.readlink(fd) == "anon_inode:inotify":
                count += 1
        except OSError:
            pass  # closed meanwhile
    return count


# --------------------------------------------------------------------------
# events


@pytest.mark.parametrize("front", FRONTS)
def test_create_write_chmod_remove_with_paths_relative_to_the_root(front, watch_server, watched, watches):
    name = watched.name
    watch = open_watch(front, watch_server, "/" + name)
    watches.append(watch)
    target = watched / "a.txt"
    with open(target, "w") as f:
        for _ in range(20):
            f.write("x")
            f.flush()
    # One create, then at most one write per window: never a write before the create.
    events = watch.until(("write", f"{name}/a.txt"))
    assert events[0] == ("create", f"{name}/a.txt", "", "")
    os.chmod(target, 0o600)
    assert watch.until(("chmod",))[-1] == ("chmod", f"{name}/a.txt", "", "")
    target.unlink()
    assert watch.until(("remove",))[-1] == ("remove", f"{name}/a.txt", "", "")


@pytest.mark.parametrize("front", FRONTS)
def test_a_burst_of_writes_is_merged(front, watch_server, watched, watches):
    watch = open_watch(front, watch_server, watched.name)
    watches.append(watch)
    target = watched / "burst"
    target.write_bytes(b"")
    with open(target, "ab") as f:
        for _ in range(200):
            f.write(b"x")
            f.flush()
    (watched / "marker").write_bytes(b"")
    events = watch.until(("create", f"{watched.name}/marker"))
    burst = [event for event in events if event[1] == f"{watched.name}/burst"]
    assert burst[0][0] == "create"
    # 200 writes within a few milliseconds: one window, or two if the window ended in the middle.
    assert 1 <= len([e for e in burst if e[0] == "write"]) <= 2, events


@pytest.mark.parametrize("front", FRONTS)
def test_renames_inside_carry_both_paths_moves_out_are_removals_and_moves_in_creations(
        front, watch_server, watched, watches):
    name = watched.name
    outside = watch_server.root / f"outside-{uuid.uuid4().hex[:8]}"
    outside.mkdir()
    (watched / "old").write_text("x")
    (outside / "incoming").write_text("y")
    watch = open_watch(front, watch_server, name)
    watches.append(watch)
    os.rename(watched / "old", watched / "new")
    assert watch.until(("rename",))[-1] == ("rename", f"{name}/new", f"{name}/old", "")
    os.rename(watched / "new", outside / "gone")
    assert watch.until(("remove",))[-1] == ("remove", f"{name}/new", "", "")
    os.rename(outside / "incoming", watched / "arrived")
    assert watch.until(("create",))[-1] == ("create", f"{name}/arrived", "", "")


@pytest.mark.parametrize("front", FRONTS)
def test_recursive_watches_directories_created_during_the_watch(front, watch_server, watched, watches):
    name = watched.name
    watch = open_watch(front, watch_server, name, recursive=True)
    watches.append(watch)
    (watched / "sub").mkdir()
    watch.until(("create", f"{name}/sub"))
    (watched / "sub" / "deep.txt").write_text("z")
    assert ("create", f"{name}/sub/deep.txt", "", "") in watch.until(("create", f"{name}/sub/deep.txt"))
    # Renamed inside the watch: its contents are reported under the new path.
    os.rename(watched / "sub", watched / "moved")
    assert watch.until(("rename",))[-1] == ("rename", f"{name}/moved", f"{name}/sub", "")
    (watched / "moved" / "after").write_text("z")
    watch.until(("create", f"{name}/moved/after"))
    # Removed: its watch goes; the parent reports the removals.
    shutil.rmtree(watched / "moved")
    watch.until(("remove", f"{name}/moved"))


@pytest.mark.parametrize("front", FRONTS)
def test_a_tree_moved_in_is_reported_and_watched(front, watch_server, watched, watches):
    name = watched.name
    staging = watch_server.root / f"staging-{uuid.uuid4().hex[:8]}"
    (staging / "t" / "a" / "b").mkdir(parents=True)
    (staging / "t" / "a" / "b" / "file").write_text("1")
    (staging / "t" / "top").write_text("2")
    watch = open_watch(front, watch_server, name, recursive=True)
    watches.append(watch)
    os.rename(staging / "t", watched / "t")
    expected = {f"{name}/t", f"{name}/t/top", f"{name}/t/a", f"{name}/t/a/b", f"{name}/t/a/b/file"}
    created: set[str] = set()
    deadline = time.monotonic() + EVENT_DEADLINE
    while created != expected:
        event = watch.next(max(0.0, deadline - time.monotonic()))
        assert event[0] == "create" and event[1] in expected, (event, watch.seen)
        created.add(event[1])
    (watched / "t" / "a" / "b" / "later").write_text("3")
    watch.until(("create", f"{name}/t/a/b/later"))


@pytest.mark.parametrize("front", FRONTS)
def test_without_recursive_only_the_directory_itself_is_watched(front, watch_server, watched, watches):
    name = watched.name
    (watched / "sub").mkdir()
    watch = open_watch(front, watch_server, name)
    watches.append(watch)
    (watched / "sub" / "unseen").write_text("x")
    (watched / "marker").write_text("x")
    events = watch.until(("create", f"{name}/marker"))
    assert not [e for e in events if "unseen" in e[1]], events


@pytest.mark.parametrize("front", FRONTS)
def test_symlinks_are_never_followed(front, watch_server, watched, watches):
    name = watched.name
    target = watch_server.root / f"target-{uuid.uuid4().hex[:8]}"
    target.mkdir()
    (watched / "link").symlink_to(target)
    watch = open_watch(front, watch_server, name, recursive=True)
    watches.append(watch)
    (target / "behind-the-link").write_text("x")
    (watched / "marker").write_text("x")
    events = watch.until(("create", f"{name}/marker"))
    assert not [e for e in events if "behind-the-link" in e[1]], events


@pytest.mark.parametrize("front", FRONTS)
def test_a_symlink_to_a_directory_is_watched_at_its_real_path(front, watch_server, watched, watches):
    (watched / "real").mkdir()
    link = watch_server.root / f"link-{uuid.uuid4().hex[:8]}"
    link.symlink_to(watched / "real")
    watch = open_watch(front, watch_server, link.name)
    watches.append(watch)
    (watched / "real" / "f").write_text("x")
    assert watch.until(("create",))[-1] == ("create", f"{watched.name}/real/f", "", "")


# --------------------------------------------------------------------------
# how a watch ends


@pytest.mark.parametrize("front", FRONTS)
@pytest.mark.parametrize("how", ["removed", "moved"])
def test_the_watched_directory_going_away_ends_the_stream_with_one_error(front, how, watch_server, watched, watches):
    (watched / "inside").write_text("x")
    watch = open_watch(front, watch_server, watched.name)
    watches.append(watch)
    pid = watch_server.pid
    if how == "removed":
        shutil.rmtree(watched)
    else:
        os.rename(watched, watch_server.root / f"elsewhere-{uuid.uuid4().hex[:8]}")
    events = watch.rest()
    assert events[-1][0] == "error" and f"the watched directory was {how}" in events[-1][3], events
    assert [e for e in events if e[0] == "error"] == [events[-1]]
    if how == "removed":
        assert ("remove", f"{watched.name}/inside", "", "") in events
    assert watch.outcome == "OK"
    assert wait_until(lambda: inotify_instances(pid) == 0, 5.0), inotify_instances(pid)


@pytest.mark.parametrize("front", FRONTS)
def test_a_burst_larger_than_the_queue_ends_the_stream_with_an_overflow_error(front, start_server):
    srv = start_server("--grpc-port", "0", "--watch-queue-bytes", "4096")
    (srv.root / "busy").mkdir()
    watch = open_watch(front, srv, "busy")
    try:
        for index in range(300):
            (srv.root / "busy" / f"file-{index:04d}").write_bytes(b"")
        events = watch.rest()
        assert events[-1][0] == "error" and "events were lost" in events[-1][3] and "--watch-queue-bytes" in events[-1][3]
        # What the queue held comes first, and it is bounded: far fewer than the 300 creations.
        assert all(e[0] == "create" for e in events[:-1]) and len(events) < 100, len(events)
        assert watch.outcome == "OK"
        assert wait_until(lambda: inotify_instances(srv.pid) == 0, 5.0)
    finally:
        watch.close()


def test_a_client_that_does_not_read_gets_its_watch_ended_not_the_server_grown(start_server):
    """An HTTP client that stops reading: once the socket buffers are full the events wait in the watch's queue, which
    overflows; the watch ends (its inotify instance closed) however long the client stays connected."""
    srv = start_server("--watch-queue-bytes", "65536")
    (srv.root / "busy").mkdir()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # small, so that the server's sends stall soon
    sock.settimeout(10)
    try:
        sock.connect((srv.host, srv.port))
        sock.sendall(b"GET /v1/watch?path=busy HTTP/1.1\r\nHost: x\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        assert head.startswith(b"HTTP/1.1 200"), head
        assert inotify_instances(srv.pid) == 1
        batch = iter(range(10**6))

        def ended() -> bool:
            # Each poll adds a window's worth of events (a few KiB of frames), never read by the client.
            for _ in range(100):
                (srv.root / "busy" / f"f{next(batch)}").write_bytes(b"")
            return inotify_instances(srv.pid) == 0

        assert wait_until(ended, 60.0, 0.3), "the watch of a client that does not read is still open"
        assert requests.get(srv.base_url + "/", timeout=10).status_code == 200
    finally:
        sock.close()


@pytest.mark.parametrize("front", FRONTS)
def test_a_cancelled_watch_frees_its_inotify_instance_at_once(front, watch_server, watched):
    pid = watch_server.pid
    # Watches of earlier tests are gone (an HTTP client's departure is noticed within a second).
    assert wait_until(lambda: inotify_instances(pid) == 0, 5.0), inotify_instances(pid)
    watch = open_watch(front, watch_server, watched.name, recursive=True)
    assert inotify_instances(pid) == 1
    watch.close()
    assert wait_until(lambda: inotify_instances(pid) == 0, 2.0), inotify_instances(pid)


def make_tree(top: pathlib.Path, directories: int) -> list[pathlib.Path]:
    """`top` and `directories - 1` directories below it, some of them nested, and a file in each; the last made is
    the deepest."""
    top.mkdir()
    made = [top]
    while len(made) < directories:
        child = made[len(made) // 3] / f"d{len(made)}"
        child.mkdir()
        made.append(child)
    for directory in made:
        (directory / "f").write_bytes(b"")
    return made


@pytest.mark.parametrize("front", FRONTS)
@pytest.mark.parametrize("how", ["moved-in", "created"])
def test_a_tree_growing_past_max_watch_directories_ends_the_stream_with_one_error(front, how, start_server):
    """A recursive watch covers at most --max-watch-directories directories (here from its environment variable):
    past it, the watch ends with one error naming the limit and its inotify instance (every watch of it) is freed,
    rather than taking the user's inotify watches and the I/O loop's time for as long as the tree grows."""
    srv = start_server("--grpc-port", "0", env={"SANDBOX_MAX_WATCH_DIRECTORIES": "20"})
    (srv.root / "w").mkdir()
    watch = open_watch(front, srv, "w", recursive=True)
    try:
        # Under the cap (w and 4 more): watched as before.
        deepest = make_tree(srv.root / "small", 4)[-1].relative_to(srv.root)
        os.rename(srv.root / "small", srv.root / "w" / "small")
        watch.until(("create", f"w/{deepest}/f"))
        if how == "moved-in":
            make_tree(srv.root / "big", 30)
            os.rename(srv.root / "big", srv.root / "w" / "big")
        else:
            # One at a time, as a command making a tree does: the 16th is the 21st directory of the watch.
            for index in range(30):
                if inotify_instances(srv.pid) == 0:
                    break
                (srv.root / "w" / f"n{index}").mkdir()
        events = watch.rest()
        assert events[-1] == ("error", "", "", "too many directories to watch: more than 20 (--max-watch-directories)")
        assert all(e[0] == "create" for e in events[:-1]), events
        assert watch.outcome == "OK"
        assert wait_until(lambda: inotify_instances(srv.pid) == 0, 5.0), inotify_instances(srv.pid)
        # The server serves a new watch (of a tree under the cap) at once.
        again = open_watch(front, srv, "w/small", recursive=True)
        (srv.root / "w" / deepest / "later").write_bytes(b"")
        again.until(("create", f"w/{deepest}/later"))
        again.close()
    finally:
        watch.close()


@pytest.mark.parametrize("front", FRONTS)
def test_a_recursive_watch_of_a_tree_past_max_watch_directories_is_refused(front, start_server):
    srv = start_server("--grpc-port", "0", "--max-watch-directories", "20")
    deepest = make_tree(srv.root / "at-cap", 20)[-1].relative_to(srv.root)
    make_tree(srv.root / "past-cap", 21)
    with pytest.raises(Refused) as refused:
        open_watch(front, srv, "past-cap", recursive=True)
    assert refused.value.code == ("RESOURCE_EXHAUSTED" if front == "grpc" else 429), refused.value
    assert "more than 20 directories" in refused.value.message
    assert "--max-watch-directories" in refused.value.message
    assert inotify_instances(srv.pid) == 0
    # Without recursive, only the directory itself is watched; at the cap, the whole tree is.
    open_watch(front, srv, "past-cap").close()
    watch = open_watch(front, srv, "at-cap", recursive=True)
    try:
        (srv.root / deepest / "later").write_bytes(b"")
        watch.until(("create", f"{deepest}/later"))
    finally:
        watch.close()
    assert wait_until(lambda: inotify_instances(srv.pid) == 0, 5.0), inotify_instances(srv.pid)


def test_shutdown_ends_every_watch_with_an_error_and_does_not_wait_for_them(start_server):
    srv = start_server("--grpc-port", "0")
    (srv.root / "d").mkdir()
    watches = [GrpcWatch(srv, "d"), HttpWatch(srv, "d")]
    started = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    try:
        for watch in watches:
            events = watch.rest()
            assert events == [("error", "", "", "sandboxd is shutting down")], events
            assert watch.outcome == "OK"
    finally:
        for watch in watches:
            watch.close()
    srv.proc.wait(timeout=10)
    # Well under --shutdown-timeout (10 s): an open watch is not a request to wait for.
    assert srv.proc.returncode == 0 and time.monotonic() - started < 5, time.monotonic() - started


# --------------------------------------------------------------------------
# refusals


REFUSALS = [
    ("/../..", "PERMISSION_DENIED", 403),
    ("escape-link", "PERMISSION_DENIED", 403),
    ("no-such-directory", "NOT_FOUND", 404),
    ("a-file", "INVALID_ARGUMENT", 400),
]


@pytest.mark.parametrize("front", FRONTS)
@pytest.mark.parametrize("path,code,status", REFUSALS)
def test_refusals_follow_the_go_daemon(front, path, code, status, watch_server):
    root = watch_server.root
    if not (root / "escape-link").is_symlink():
        (root / "escape-link").symlink_to("/etc")
    (root / "a-file").write_text("x")
    with pytest.raises(Refused) as refused:
        open_watch(front, watch_server, path)
    assert refused.value.code == (code if front == "grpc" else status), refused.value
    if code == "INVALID_ARGUMENT":
        assert "is not a directory" in refused.value.message
    # Where a link out of the root leads is not revealed.
    assert "/etc" not in refused.value.message


def test_http_recursive_must_be_a_boolean(watch_server):
    conn = http.client.HTTPConnection(watch_server.host, watch_server.port, timeout=10)
    conn.request("GET", "/v1/watch?path=&recursive=maybe")
    response = conn.getresponse()
    assert response.status == 400
    assert json.loads(response.read())["code"] == "INVALID_ARGUMENT"
    conn.close()


@pytest.mark.parametrize("front", FRONTS)
def test_watches_past_the_cap_are_refused_until_one_ends(front, start_server):
    srv = start_server("--grpc-port", "0", "--max-watches", "2")
    (srv.root / "d").mkdir()
    first, second = GrpcWatch(srv, "d"), HttpWatch(srv, "d")
    try:
        with pytest.raises(Refused) as refused:
            open_watch(front, srv, "d")
        assert refused.value.code == ("RESOURCE_EXHAUSTED" if front == "grpc" else 429)
        assert "2 are open" in refused.value.message and "--max-watches" in refused.value.message
        first.close()

        def opens() -> Watch | None:
            try:
                return open_watch(front, srv, "d")
            except Refused:
                return None

        again = wait_until(opens, 5.0)
        assert again, "still refused after a watch ended"
        again.close()
    finally:
        first.close()
        second.close()


def test_the_token_guards_watches_on_both_fronts(start_server):
    srv = start_server("--grpc-port", "0", "--token", "s3cret")
    (srv.root / "d").mkdir()
    with pytest.raises(Refused) as refused:
        GrpcWatch(srv, "d")
    assert refused.value.code == "UNAUTHENTICATED"
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=10)
    conn.request("GET", "/v1/watch?path=d")
    assert conn.getresponse().status == 401
    conn.close()
    watch = GrpcWatch(srv, "d", metadata=(("authorization", "Bearer s3cret"),))
    try:
        (srv.root / "d" / "f").write_text("x")
        watch.until(("create", "d/f"))
    finally:
        watch.close()


# --------------------------------------------------------------------------
# reflection


def test_reflection_lists_and_describes_the_watcher_service(watch_server):
    channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port(watch_server)}")
    try:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        answers = list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                                 timeout=5))
        names = {s.name for s in answers[0].list_services_response.service}
        assert "watcher.v1.FileWatcherService" in names and "process.v1.ProcessService" in names
        request = reflection_pb2.ServerReflectionRequest(file_containing_symbol="watcher.v1.FileWatcherService")
        answers = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
        files = [descriptor_pb2.FileDescriptorProto.FromString(b)
                 for b in answers[0].file_descriptor_response.file_descriptor_proto]
        described = files[0]
        assert described.package == "watcher.v1"
        method = described.service[0].method[0]
        assert (method.name, method.input_type, method.output_type, method.server_streaming) == (
            "WatchDir", ".watcher.v1.WatchDirRequest", ".watcher.v1.FileEvent", True)
        # The wire contract: field numbers and enum values.
        messages = {m.name: {f.name: f.number for f in m.field} for m in described.message_type}
        assert messages == {"WatchDirRequest": {"path": 1, "recursive": 2},
                            "FileEvent": {"type": 1, "path": 2, "old_path": 3, "error": 4}}
        values = {v.name: v.number for v in described.enum_type[0].value}
        assert values == {"FILE_EVENT_TYPE_UNSPECIFIED": 0, "FILE_EVENT_TYPE_CREATE": 1, "FILE_EVENT_TYPE_WRITE": 2,
                          "FILE_EVENT_TYPE_REMOVE": 3, "FILE_EVENT_TYPE_RENAME": 4, "FILE_EVENT_TYPE_CHMOD": 5,
                          "FILE_EVENT_TYPE_ERROR": 6}
    finally:
        channel.close()


def test_a_client_with_only_reflection_calls_watch_dir(watch_server, watched):
    """What grpcurl does: the messages built from the descriptors the server serves by reflection (no generated
    code), a WatchDir call made with them, and a file created under the watch arriving as a CREATE event."""
    from google.protobuf.descriptor_pool import DescriptorPool
    from google.protobuf.message_factory import GetMessageClass
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port(watch_server)}")
    try:
        pool = DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
        method = pool.FindServiceByName("watcher.v1.FileWatcherService").FindMethodByName("WatchDir")
        request_class = GetMessageClass(method.input_type)
        event_class = GetMessageClass(method.output_type)
        call = channel.unary_stream("/watcher.v1.FileWatcherService/WatchDir",
                                    request_serializer=request_class.SerializeToString,
                                    response_deserializer=event_class.FromString)(
            request_class(path=watched.name), timeout=20)
        call.initial_metadata()  # sent once the watch is set up
        (watched / "seen.txt").write_bytes(b"x")
        event = next(call)
        create = pool.FindEnumTypeByName("watcher.v1.FileEventType").values_by_name["FILE_EVENT_TYPE_CREATE"].number
        assert (event.type, event.path) == (create, f"{watched.name}/seen.txt")
        call.cancel()
    finally:
        channel.close()
