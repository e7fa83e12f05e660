"""End-to-end tests of the sandboxd-v1 files API (issue 5, part 1) against the real binary.

`GET`/`HEAD`/`PUT`/`DELETE /v1/files/{path}`, `GET /v1/health` and `GET /v1/metadata`, with the JSON shapes, status
codes and `{"code", "message"}` errors of agent-sandbox's Go sandboxd daemon. Every request has a client timeout and
every wait polls against a deadline.
"""

from __future__ import annotations

import datetime
import email.utils
import hashlib
import io
import os
import random
import socket
import stat
import struct
import urllib.parse
import uuid
from typing import Iterator

import pytest
import requests

from conftest import _SERVER_CONFIG_ENV, ENV_MARKER, wait_until

MiB = 1024 * 1024
ERROR_CODES = {"PERMISSION_DENIED", "NOT_FOUND", "INVALID_ARGUMENT", "CONFLICT", "FAILED_PRECONDITION",
               "OUT_OF_RANGE", "INTERNAL", "UNAVAILABLE", "RESOURCE_EXHAUSTED"}
SENSITIVE = ("TOKEN", "SECRET", "PASSWORD", "CREDENTIAL", "KEY")


def v1(*parts: str) -> str:
    """The URL path of a sandbox-relative path, each segment percent-encoded."""
    return "/v1/files/" + "/".join(urllib.parse.quote(p, safe="") for p in parts)


def assert_error(resp, status: int, code: str, root=None) -> dict:
    """The v1 error shape: exactly {"code", "message"}, JSON, with the code's status; no host path inside."""
    assert resp.status_code == status, f"{resp.status_code} {resp.text}"
    assert resp.headers["Content-Type"] == "application/json"
    body = resp.json()
    assert set(body) == {"code", "message"}, body
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    if root is not None:
        assert str(root) not in body["message"], body
    return body


def put(api, path: str, data=b"", expect: int = 204, **kwargs) -> requests.Response:
    resp = api.request("PUT", path, data=data, **kwargs)
    assert resp.status_code == expect, f"PUT {path}: {resp.status_code} {resp.text}"
    if expect == 204:
        assert resp.content == b""
    return resp


def without_date(headers) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items() if k.lower() not in ("date", "x-request-id")}


def vm_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def leftovers(directory) -> list[str]:
    return sorted(os.listdir(directory))


# ==========================================================================
# GET: files


def test_get_file_bytes_and_headers(api, workdir, root):
    content = bytes(range(256)) * 40
    put(api, v1(workdir.rel, "data.bin"), content)
    resp = api.get(v1(workdir.rel, "data.bin"))
    assert resp.status_code == 200
    assert resp.content == content
    assert resp.headers["Content-Type"] == "application/octet-stream"
    assert resp.headers["Content-Length"] == str(len(content))
    assert resp.headers["Accept-Ranges"] == "bytes"
    mtime = int(os.stat(root / workdir.rel / "data.bin").st_mtime)
    modified = email.utils.parsedate_to_datetime(resp.headers["Last-Modified"])
    assert modified == datetime.datetime.fromtimestamp(mtime, datetime.timezone.utc)
    assert resp.headers["Last-Modified"].endswith(" GMT")
    etag = resp.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"') and len(etag) > 2


def test_etag_changes_when_the_file_does(api, workdir):
    path = v1(workdir.rel, "f.txt")
    put(api, path, b"one")
    first = api.get(path).headers["ETag"]
    assert api.get(path).headers["ETag"] == first, "the ETag of an unchanged file is stable"
    put(api, path, b"two")
    assert api.get(path).headers["ETag"] != first


def test_get_missing_is_404(api, workdir):
    assert_error(api.get(v1(workdir.rel, "absent.txt")), 404, "NOT_FOUND")
    put(api, v1(workdir.rel, "file.txt"), b"x")
    assert_error(api.get(v1(workdir.rel, "file.txt", "below")), 404, "NOT_FOUND")


def test_get_special_file_is_refused_without_hanging(api, workdir, root):
    os.mkfifo(root / workdir.rel / "fifo")
    os.mknod(root / workdir.rel / "socket", stat.S_IFSOCK | 0o600)
    for name in ["fifo", "socket"]:
        assert_error(api.get(v1(workdir.rel, name), timeout=10), 400, "INVALID_ARGUMENT", root)
    listed = {e["name"]: e["type"] for e in api.get(v1(workdir.rel)).json()["entries"]}
    assert listed == {"fifo": "file", "socket": "file"}


# ==========================================================================
# GET: directories


def test_directory_listing_shape(api, workdir, root):
    base = root / workdir.rel
    (base / "b.txt").write_bytes(b"bb")
    os.chmod(base / "b.txt", 0o600)
    (base / "adir").mkdir()
    os.chmod(base / "adir", 0o750)
    (base / "C.txt").write_bytes(b"c")
    resp = api.get(v1(workdir.rel))
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/json"
    listing = resp.json()
    assert list(listing) == ["path", "entries"]
    assert listing["path"] == "/" + workdir.rel
    entries = listing["entries"]
    assert [e["name"] for e in entries] == ["C.txt", "adir", "b.txt"], "sorted by name, bytewise"
    for entry in entries:
        assert list(entry) == ["name", "size", "type", "modified_at", "mode"]
        parsed = datetime.datetime.fromisoformat(entry["modified_at"].replace("Z", "+00:00"))
        assert entry["modified_at"].endswith("Z") and parsed.tzinfo is not None
        info = os.stat(base / entry["name"])
        assert int(parsed.timestamp()) == int(info.st_mtime)
        assert entry["size"] == info.st_size
        assert entry["mode"] == f"{stat.S_IMODE(info.st_mode):04o}"
    by_name = {e["name"]: e for e in entries}
    assert by_name["b.txt"] | {"modified_at": None} == {
        "name": "b.txt", "size": 2, "type": "file", "modified_at": None, "mode": "0600"}
    assert by_name["adir"]["type"] == "directory"
    assert by_name["adir"]["mode"] == "0750"


def test_directory_with_trailing_slash(api, workdir):
    put(api, v1(workdir.rel, "f.txt"), b"x")
    listing = api.get(v1(workdir.rel) + "/").json()
    assert listing["path"] == f"/{workdir.rel}/"
    assert [e["name"] for e in listing["entries"]] == ["f.txt"]


def test_empty_directory_lists_empty_entries(api, workdir):
    resp = api.get(v1(workdir.rel))
    assert resp.status_code == 200
    assert resp.json() == {"path": "/" + workdir.rel, "entries": []}
    assert b'"entries":[]' in resp.content


def test_root_listing(api, workdir):
    listing = api.get("/v1/files/").json()
    assert listing["path"] == "/"
    entry = next(e for e in listing["entries"] if e["name"] == workdir.rel)
    assert entry["type"] == "directory"


def test_listing_describes_links_by_target_and_hides_escaping_ones(api, workdir, root, tmp_path):
    base = root / workdir.rel
    (base / "real").mkdir()
    (base / "real" / "five.txt").write_bytes(b"12345")
    (tmp_path / "outside.txt").write_bytes(b"secret")
    os.symlink("real/five.txt", base / "to-file")
    os.symlink("real", base / "to-dir")
    os.symlink("nowhere", base / "dangling")
    os.symlink(tmp_path, base / "escaping-dir")
    os.symlink(tmp_path / "outside.txt", base / "escaping-file")
    entries = {e["name"]: e for e in api.get(v1(workdir.rel)).json()["entries"]}
    assert sorted(entries) == ["real", "to-dir", "to-file"]
    assert (entries["to-file"]["type"], entries["to-file"]["size"]) == ("file", 5)
    assert entries["to-dir"]["type"] == "directory"


# ==========================================================================
# Range and conditional requests


@pytest.fixture
def ten_k(api, workdir) -> tuple[str, bytes]:
    content = bytes(random.Random(7).randbytes(10_000))
    path = v1(workdir.rel, "ten-k.bin")
    put(api, path, content)
    return path, content


@pytest.mark.parametrize("header, start, end", [
    ("bytes=0-0", 0, 0),
    ("bytes=0-99", 0, 99),
    ("bytes=5000-", 5000, 9999),
    ("bytes=-100", 9900, 9999),
    ("bytes=-20000", 0, 9999),
    ("bytes=9990-20000", 9990, 9999),
    ("bytes=9999-9999", 9999, 9999),
])
def test_single_range_is_206(api, ten_k, header, start, end):
    path, content = ten_k
    resp = api.get(path, headers={"Range": header})
    assert resp.status_code == 206, resp.text
    assert resp.headers["Content-Range"] == f"bytes {start}-{end}/{len(content)}"
    assert resp.headers["Content-Length"] == str(end - start + 1)
    assert resp.headers["Content-Type"] == "application/octet-stream"
    assert resp.content == content[start:end + 1]


@pytest.mark.parametrize("header", ["bytes=10000-", "bytes=20000-30000", "bytes=-0"])
def test_unsatisfiable_range_is_416(api, ten_k, header):
    path, content = ten_k
    resp = api.get(path, headers={"Range": header})
    assert_error(resp, 416, "OUT_OF_RANGE")
    assert resp.headers["Content-Range"] == f"bytes */{len(content)}"


@pytest.mark.parametrize("header", ["bytes=0-1,5-9", "bytes=a-b", "bytes=9-2", "lines=0-1", "bytes"])
def test_multiple_or_malformed_ranges_give_the_whole_file(api, ten_k, header):
    path, content = ten_k
    resp = api.get(path, headers={"Range": header})
    assert resp.status_code == 200
    assert resp.content == content
    assert "Content-Range" not in resp.headers


def test_range_of_empty_file_is_416(api, workdir):
    put(api, v1(workdir.rel, "empty"), b"")
    resp = api.get(v1(workdir.rel, "empty"), headers={"Range": "bytes=0-"})
    assert_error(resp, 416, "OUT_OF_RANGE")
    assert resp.headers["Content-Range"] == "bytes */0"


def test_if_none_match_and_if_modified_since_give_304(api, ten_k):
    path, _ = ten_k
    full = api.get(path)
    etag, modified = full.headers["ETag"], full.headers["Last-Modified"]
    for headers in ({"If-None-Match": etag}, {"If-None-Match": f'"other", {etag}'}, {"If-None-Match": "*"},
                    {"If-None-Match": "W/" + etag}, {"If-Modified-Since": modified}):
        resp = api.get(path, headers=headers)
        assert resp.status_code == 304, headers
        assert resp.content == b""
        assert resp.headers["ETag"] == etag
        assert resp.headers["Last-Modified"] == modified
    assert api.get(path, headers={"If-None-Match": '"other"'}).status_code == 200
    assert api.get(path, headers={"If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"}).status_code == 200
    # If-None-Match takes precedence over If-Modified-Since.
    assert api.get(path, headers={"If-None-Match": '"other"', "If-Modified-Since": modified}).status_code == 200


def test_if_match_failure_is_412(api, ten_k):
    path, content = ten_k
    etag = api.get(path).headers["ETag"]
    assert api.get(path, headers={"If-Match": etag}).content == content
    assert_error(api.get(path, headers={"If-Match": '"stale"'}), 412, "FAILED_PRECONDITION")
    assert_error(api.get(path, headers={"If-Unmodified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"}),
                 412, "FAILED_PRECONDITION")


def test_if_range(api, ten_k):
    path, content = ten_k
    full = api.get(path)
    current = api.get(path, headers={"Range": "bytes=0-9", "If-Range": full.headers["ETag"]})
    assert (current.status_code, current.content) == (206, content[:10])
    by_date = api.get(path, headers={"Range": "bytes=0-9", "If-Range": full.headers["Last-Modified"]})
    assert by_date.status_code == 206
    stale = api.get(path, headers={"Range": "bytes=0-9", "If-Range": '"stale"'})
    assert (stale.status_code, stale.content) == (200, content)


# ==========================================================================
# HEAD


def _head_and_get(api, path: str, headers: dict[str, str] | None = None):
    head = api.request("HEAD", path, headers=headers)
    get = api.get(path, headers=headers)
    return head, get


@pytest.mark.parametrize("what", ["file", "directory", "missing", "range", "not-modified", "escape"])
def test_head_headers_equal_get(api, workdir, what):
    put(api, v1(workdir.rel, "f.bin"), b"0123456789" * 100)
    path, headers = {
        "file": (v1(workdir.rel, "f.bin"), None),
        "directory": (v1(workdir.rel), None),
        "missing": (v1(workdir.rel, "absent"), None),
        "range": (v1(workdir.rel, "f.bin"), {"Range": "bytes=10-19"}),
        "not-modified": (v1(workdir.rel, "f.bin"), {"If-None-Match": "*"}),
        "escape": ("/v1/files/..%2F..%2Fetc%2Fpasswd", None),
    }[what]
    head, get = _head_and_get(api, path, headers)
    assert head.status_code == get.status_code
    assert without_date(head.headers) == without_date(get.headers)
    assert head.content == b""


def test_head_sends_no_body_bytes(server, api, workdir):
    put(api, v1(workdir.rel, "f.bin"), b"x" * 5000)
    sock = socket.create_connection((server.host, server.port), timeout=10)
    try:
        sock.sendall(f"HEAD {v1(workdir.rel, 'f.bin')} HTTP/1.1\r\nHost: e2e\r\nConnection: close\r\n\r\n".encode())
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    finally:
        sock.close()
    head, _, rest = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"Content-Length: 5000" in head
    assert rest == b""


def test_head_is_an_existence_probe(api, workdir):
    put(api, v1(workdir.rel, "present.txt"), b"here")
    assert api.request("HEAD", v1(workdir.rel, "present.txt")).status_code == 200
    assert api.request("HEAD", v1(workdir.rel, "absent.txt")).status_code == 404


# ==========================================================================
# PUT


def test_put_raw_creates_parents(api, workdir, root):
    put(api, v1(workdir.rel, "a", "b", "c.bin"), b"payload")
    assert (root / workdir.rel / "a" / "b" / "c.bin").read_bytes() == b"payload"


def test_put_every_byte_value(api, workdir):
    content = bytes(range(256)) * 257
    put(api, v1(workdir.rel, "bytes.bin"), content)
    assert api.get(v1(workdir.rel, "bytes.bin")).content == content


def test_put_overwrites(api, workdir, root):
    path = v1(workdir.rel, "f.txt")
    put(api, path, b"old content, longer")
    put(api, path, b"new")
    assert (root / workdir.rel / "f.txt").read_bytes() == b"new"
    assert leftovers(root / workdir.rel) == ["f.txt"], "no temporary file is left behind"


def test_put_empty_body(api, workdir, root):
    put(api, v1(workdir.rel, "empty.txt"), b"")
    assert (root / workdir.rel / "empty.txt").read_bytes() == b""


@pytest.mark.parametrize("ctype", [None, "application/octet-stream", "application/x-www-form-urlencoded",
                                   "text/plain; charset=utf-8", "multipart/mixed; boundary=x", "application/json"])
def test_put_non_multipart_bodies_are_stored_verbatim(api, workdir, root, ctype):
    body = b"a=1&b=2\r\n--x\r\n{\"k\": 1}"
    headers = {"Content-Type": ctype} if ctype else {}
    put(api, v1(workdir.rel, "raw.txt"), body, headers=headers)
    assert (root / workdir.rel / "raw.txt").read_bytes() == body


def test_put_chunked_body(api, workdir, root):
    pieces = [os.urandom(random.randrange(1, 70_000)) for _ in range(20)]
    put(api, v1(workdir.rel, "chunked.bin"), iter(pieces))
    assert (root / workdir.rel / "chunked.bin").read_bytes() == b"".join(pieces)


def test_put_multipart_file_part(api, workdir, root):
    content = os.urandom(100_000)
    resp = api.request("PUT", v1(workdir.rel, "target.bin"), files={"file": ("ignored-name.bin", content)},
                       data={"other": "field"})
    assert resp.status_code == 204, resp.text
    assert (root / workdir.rel / "target.bin").read_bytes() == content
    assert leftovers(root / workdir.rel) == ["target.bin"], "the part's filename does not choose the destination"


def test_put_multipart_chunked(api, workdir, root):
    boundary = uuid.uuid4().hex
    pieces = [f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x\"\r\n\r\n".encode(),
              b"hello ", b"multipart", f"\r\n--{boundary}--\r\n".encode()]
    put(api, v1(workdir.rel, "m.txt"), iter(pieces),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert (root / workdir.rel / "m.txt").read_bytes() == b"hello multipart"


def test_put_multipart_without_file_part_is_400(api, workdir, root):
    resp = api.request("PUT", v1(workdir.rel, "f.txt"), files={"notfile": ("x", b"x")})
    assert_error(resp, 400, "INVALID_ARGUMENT")
    assert leftovers(root / workdir.rel) == []


def test_put_multipart_without_boundary_is_400(api, workdir, root):
    resp = api.request("PUT", v1(workdir.rel, "f.txt"), data=b"garbage",
                       headers={"Content-Type": "multipart/form-data"})
    assert_error(resp, 400, "INVALID_ARGUMENT")
    assert leftovers(root / workdir.rel) == []


@pytest.mark.parametrize("mode", ["0755", "0600", "0777", "0640", "0444"])
def test_put_mode_is_applied_exactly(api, workdir, root, mode):
    put(api, v1(workdir.rel, "m") + f"?mode={mode}", b"#!/bin/sh\n")
    assert f"{stat.S_IMODE(os.stat(root / workdir.rel / 'm').st_mode):04o}" == mode
    listed = api.get(v1(workdir.rel)).json()["entries"][0]
    assert listed["mode"] == mode


def test_put_default_mode_is_0644_even_over_an_executable(api, workdir, root):
    path = v1(workdir.rel, "script.sh")
    put(api, path + "?mode=0755", b"x")
    put(api, path, b"y")
    assert stat.S_IMODE(os.stat(root / workdir.rel / "script.sh").st_mode) == 0o644
    put(api, path + "?mode=", b"z")
    assert stat.S_IMODE(os.stat(root / workdir.rel / "script.sh").st_mode) == 0o644


@pytest.mark.parametrize("mode", ["0999", "777", "abcd", "01777", "0x1ff", "+644", "0644 ", "07555"])
def test_put_invalid_mode_is_400(api, workdir, root, mode):
    resp = api.request("PUT", v1(workdir.rel, "f.txt"), params={"mode": mode}, data=b"x")
    body = assert_error(resp, 400, "INVALID_ARGUMENT")
    assert "^0[0-7]{3}$" in body["message"]
    assert leftovers(root / workdir.rel) == []


def test_put_onto_directory_or_through_file_is_400(api, workdir, root):
    (root / workdir.rel / "dir").mkdir()
    put(api, v1(workdir.rel, "file"), b"x")
    assert_error(api.request("PUT", v1(workdir.rel, "dir"), data=b"x"), 400, "INVALID_ARGUMENT", root)
    assert_error(api.request("PUT", v1(workdir.rel, "file", "below"), data=b"x"), 400, "INVALID_ARGUMENT", root)
    assert_error(api.request("PUT", "/v1/files/", data=b"x"), 400, "INVALID_ARGUMENT", root)
    assert (root / workdir.rel / "file").read_bytes() == b"x"


def test_put_with_encoded_slashes_as_the_sdk_sends(api, workdir, root):
    resp = api.raw("PUT", f"/v1/files/{workdir.rel}%2Fdir%2Fsub%2Ffile.txt", body=b"nested")
    assert resp.status == 204
    assert (root / workdir.rel / "dir" / "sub" / "file.txt").read_bytes() == b"nested"


def test_put_through_inner_symlink_writes_its_target(api, workdir, root):
    base = root / workdir.rel
    (base / "real").mkdir()
    os.symlink("real", base / "alias")
    put(api, v1(workdir.rel, "alias", "f.txt"), b"via link")
    assert (base / "real" / "f.txt").read_bytes() == b"via link"


# ==========================================================================
# DELETE


def test_delete_file(api, workdir, root):
    put(api, v1(workdir.rel, "f.txt"), b"x")
    resp = api.request("DELETE", v1(workdir.rel, "f.txt"))
    assert resp.status_code == 204 and resp.content == b""
    assert leftovers(root / workdir.rel) == []
    assert_error(api.request("DELETE", v1(workdir.rel, "f.txt")), 404, "NOT_FOUND")


def test_delete_empty_directory(api, workdir, root):
    (root / workdir.rel / "empty").mkdir()
    assert api.request("DELETE", v1(workdir.rel, "empty")).status_code == 204
    assert leftovers(root / workdir.rel) == []


def test_delete_non_empty_directory_needs_recursive(api, workdir, root):
    put(api, v1(workdir.rel, "d", "e", "f.txt"), b"x")
    assert_error(api.request("DELETE", v1(workdir.rel, "d")), 409, "CONFLICT")
    assert_error(api.request("DELETE", v1(workdir.rel, "d") + "?recursive=false"), 409, "CONFLICT")
    assert (root / workdir.rel / "d" / "e" / "f.txt").exists()
    assert api.request("DELETE", v1(workdir.rel, "d") + "?recursive=true").status_code == 204
    assert leftovers(root / workdir.rel) == []


@pytest.mark.parametrize("value", ["1", "t", "T", "TRUE", "True"])
def test_delete_recursive_accepts_go_booleans(api, workdir, value):
    put(api, v1(workdir.rel, "d", "f.txt"), b"x")
    assert api.request("DELETE", v1(workdir.rel, "d"), params={"recursive": value}).status_code == 204


@pytest.mark.parametrize("value", ["banana", "yes", "2"])
def test_delete_recursive_must_be_boolean(api, workdir, root, value):
    put(api, v1(workdir.rel, "f.txt"), b"x")
    assert_error(api.request("DELETE", v1(workdir.rel, "f.txt"), params={"recursive": value}),
                 400, "INVALID_ARGUMENT")
    assert (root / workdir.rel / "f.txt").exists()


def test_delete_recursive_does_not_follow_links_out(api, workdir, root, tmp_path):
    (tmp_path / "keep.txt").write_bytes(b"outside")
    put(api, v1(workdir.rel, "d", "f.txt"), b"x")
    os.symlink(tmp_path, root / workdir.rel / "d" / "out-dir")
    os.symlink(tmp_path / "keep.txt", root / workdir.rel / "d" / "out-file")
    assert api.request("DELETE", v1(workdir.rel, "d"), params={"recursive": "true"}).status_code == 204
    assert leftovers(root / workdir.rel) == []
    assert (tmp_path / "keep.txt").read_bytes() == b"outside"


def test_the_root_cannot_be_deleted(start_server, make_api):
    srv = start_server()
    client = make_api(srv)
    put(client, "/v1/files/d/f.txt", b"x")
    put(client, "/v1/files/top.txt", b"x")
    for path in ["/v1/files/", "/v1/files/.", "/v1/files/d/..", "/v1/files/%2F"]:
        assert_error(client.raw("DELETE", path), 409, "CONFLICT")
    assert sorted(os.listdir(srv.root)) == ["d", "top.txt"]
    # As the Go daemon does: recursive=true empties the root and keeps it.
    assert client.request("DELETE", "/v1/files/", params={"recursive": "true"}).status_code == 204
    assert srv.root.is_dir()
    assert os.listdir(srv.root) == []
    assert client.get("/v1/files/").json() == {"path": "/", "entries": []}


# ==========================================================================
# Paths: percent-decoding and confinement


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE"])
@pytest.mark.parametrize("escape", ["..%2F..%2F..%2Fetc%2Fpasswd", "%2E%2E/%2E%2E/%2E%2E/etc/passwd",
                                    "a/..%2F..%2F..%2F..%2Fetc%2Fpasswd", "..%2Fsibling-{tag}.txt"])
def test_traversal_is_403(api, root, method, escape):
    tag = uuid.uuid4().hex
    path = "/v1/files/" + escape.format(tag=tag)
    resp = api.raw(method, path, body=b"x" if method == "PUT" else None)
    assert resp.status == 403, f"{method} {path}: {resp.status} {resp.content!r}"
    if method != "HEAD":
        assert_error(resp, 403, "PERMISSION_DENIED", root)
    assert not (root.parent / f"sibling-{tag}.txt").exists()


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE"])
def test_symlink_out_of_root_is_403(api, workdir, root, tmp_path, method):
    (tmp_path / "secret.txt").write_bytes(b"secret")
    os.symlink(tmp_path, root / workdir.rel / "out")
    os.symlink(tmp_path / "secret.txt", root / workdir.rel / "secret-link")
    for path in [v1(workdir.rel, "out", "secret.txt"), v1(workdir.rel, "out"), v1(workdir.rel, "secret-link"),
                 v1(workdir.rel, "out", "new.txt")]:
        resp = api.request(method, path, data=b"x" if method == "PUT" else None)
        assert resp.status_code == 403, f"{method} {path}: {resp.status_code} {resp.text}"
        if method != "HEAD":
            assert_error(resp, 403, "PERMISSION_DENIED", root)
            assert str(tmp_path) not in resp.text
    assert sorted(os.listdir(tmp_path)) == ["secret.txt"]
    assert (tmp_path / "secret.txt").read_bytes() == b"secret"


def test_absolute_paths_stay_inside_root(api, workdir, root):
    resp = api.raw("GET", "/v1/files//etc/passwd")
    assert_error(resp, 404, "NOT_FOUND", root)
    put(api, v1(workdir.rel, "inside.txt"), b"in")
    assert api.raw("GET", f"/v1/files//{workdir.rel}/inside.txt").content == b"in"


def test_percent_decoded_exactly_once(api, workdir, root):
    (root / workdir.rel / "a%41").write_bytes(b"literal")
    assert api.raw("GET", f"/v1/files/{workdir.rel}/a%2541").content == b"literal"
    assert api.raw("GET", f"/v1/files/{workdir.rel}/a%41").status == 404
    put(api, f"/v1/files/{workdir.rel}/b%2542", b"put")
    assert (root / workdir.rel / "b%42").read_bytes() == b"put"
    assert api.raw("DELETE", f"/v1/files/{workdir.rel}/b%2542").status == 204


@pytest.mark.parametrize("name", ["with space.txt", "ünïcödé-文件.txt", "q?mark#hash.txt", "plus+sign.txt", "semi;colon"])
def test_unusual_names_round_trip(api, workdir, root, name):
    put(api, v1(workdir.rel, name), name.encode())
    assert (root / workdir.rel / name).read_bytes() == name.encode()
    assert api.get(v1(workdir.rel, name)).content == name.encode()
    assert [e["name"] for e in api.get(v1(workdir.rel)).json()["entries"]] == [name]
    assert api.request("DELETE", v1(workdir.rel, name)).status_code == 204


def test_nul_byte_in_path_is_400(api, workdir):
    for method in ["GET", "PUT", "DELETE"]:
        assert api.raw(method, f"/v1/files/{workdir.rel}/a%00b", body=b"x" if method == "PUT" else None).status == 400


def test_other_methods_are_405(api, workdir):
    resp = api.post(v1(workdir.rel, "f.txt"), data=b"x")
    assert resp.status_code == 405
    assert set(resp.headers["Allow"].replace(" ", "").split(",")) == {"GET", "HEAD", "PUT", "DELETE"}


# ==========================================================================
# Atomicity


def _cut_put(server, path: str, declared: int, send: int, chunked: bool = False,
             prefix: bytes = b"", headers: str = "") -> None:
    """Start a PUT that announces `declared` bytes, send `send` of them, then vanish (RST)."""
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(prefix) + declared}"
    sock = socket.create_connection((server.host, server.port), timeout=20)
    try:
        sock.sendall(f"PUT {path} HTTP/1.1\r\nHost: e2e\r\n{framing}\r\n{headers}\r\n".encode())
        block = b"y" * MiB
        if chunked:
            block = f"{len(block):x}\r\n".encode() + block + b"\r\n"
        if prefix:
            sock.sendall(f"{len(prefix):x}\r\n".encode() + prefix + b"\r\n" if chunked else prefix)
        for _ in range(send // MiB):
            sock.sendall(block)
    finally:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


def _multipart_prefix(boundary: str) -> bytes:
    return (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"cut.bin\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()


@pytest.mark.parametrize("kind", ["content-length", "chunked", "multipart"])
def test_cut_put_leaves_nothing(server, workdir, root, kind):
    path = v1(workdir.rel, "cut.bin")
    if kind == "multipart":
        boundary = uuid.uuid4().hex
        _cut_put(server, path, 64 * MiB, 24 * MiB, prefix=_multipart_prefix(boundary),
                 headers=f"Content-Type: multipart/form-data; boundary={boundary}\r\n")
    else:
        _cut_put(server, path, 64 * MiB, 24 * MiB, chunked=kind == "chunked")
    directory = root / workdir.rel
    empty = wait_until(lambda: not os.listdir(directory), 10.0, 0.1)
    assert empty, f"left behind: {os.listdir(directory)}"


@pytest.mark.parametrize("kind", ["content-length", "chunked"])
def test_cut_put_keeps_the_previous_file(server, api, workdir, root, kind):
    put(api, v1(workdir.rel, "keep.txt"), b"previous")
    _cut_put(server, v1(workdir.rel, "keep.txt"), 64 * MiB, 24 * MiB, chunked=kind == "chunked")
    directory = root / workdir.rel
    only = wait_until(lambda: os.listdir(directory) == ["keep.txt"], 10.0, 0.1)
    assert only, f"left behind: {os.listdir(directory)}"
    assert (directory / "keep.txt").read_bytes() == b"previous"
    assert api.get(v1(workdir.rel, "keep.txt")).content == b"previous"


def test_readers_see_the_old_file_until_the_put_completes(server, api, workdir):
    path = v1(workdir.rel, "swap.txt")
    put(api, path, b"old")
    new = b"n" * (8 * MiB)
    sock = socket.create_connection((server.host, server.port), timeout=20)
    try:
        sock.sendall(f"PUT {path} HTTP/1.1\r\nHost: e2e\r\nContent-Length: {len(new)}\r\n\r\n".encode())
        sock.sendall(new[: len(new) // 2])
        assert api.get(path).content == b"old"
        sock.sendall(new[len(new) // 2:])
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = sock.recv(4096)
            assert chunk, f"connection closed: {reply!r}"
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 204")
    finally:
        sock.close()
    assert api.get(path).content == new


# ==========================================================================
# Large bodies are streamed


class RandomBody:
    """`size` pseudo-random bytes yielded in 1 MiB pieces with a known length (so requests sends Content-Length)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.digest = hashlib.sha256()

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[bytes]:
        rng = random.Random(539)
        left = self.size
        while left:
            piece = rng.randbytes(min(left, MiB))
            self.digest.update(piece)
            left -= len(piece)
            yield piece


@pytest.mark.deadline(300)
def test_put_200mb_is_streamed_to_disk(start_server, make_api):
    srv = start_server()
    client = make_api(srv)
    size = 200 * MiB
    rss_before, peak_before = vm_kib(srv.pid, "VmRSS"), vm_kib(srv.pid, "VmHWM")
    body = RandomBody(size)
    resp = client.request("PUT", "/v1/files/big.bin", data=body, timeout=240)
    assert resp.status_code == 204, resp.text
    rss_grown = vm_kib(srv.pid, "VmRSS") - rss_before
    peak_grown = vm_kib(srv.pid, "VmHWM") - peak_before
    assert peak_grown < 32 * 1024, f"peak RSS grew by {peak_grown // 1024} MiB receiving a 200 MiB body"
    assert rss_grown < 32 * 1024, f"RSS grew by {rss_grown // 1024} MiB receiving a 200 MiB body"
    assert os.path.getsize(srv.root / "big.bin") == size
    digest = hashlib.sha256()
    with client.get("/v1/files/big.bin", stream=True, timeout=240) as download:
        assert download.status_code == 200
        assert download.headers["Content-Length"] == str(size)
        for chunk in download.iter_content(MiB):
            digest.update(chunk)
    assert digest.hexdigest() == body.digest.hexdigest()
    peak_grown = vm_kib(srv.pid, "VmHWM") - peak_before
    assert peak_grown < 32 * 1024, f"peak RSS grew by {peak_grown // 1024} MiB moving a 200 MiB file"


# ==========================================================================
# Health and metadata


def test_health(api):
    resp = api.get("/v1/health")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/json"
    body = resp.json()
    assert body["status"] == "ok"
    assert isinstance(body["uptime_seconds"], int) and body["uptime_seconds"] >= 0
    assert set(body) == {"status", "uptime_seconds"}


def test_health_and_metadata_are_get_only(api):
    for path in ["/v1/health", "/v1/metadata"]:
        resp = api.post(path, data=b"")
        assert resp.status_code == 405
        assert "GET" in resp.headers["Allow"]


def _served(env: dict[str, str], prefix: str) -> dict[str, str]:
    """What /v1/metadata must serve from the environment launch() gives the server."""
    full = {k: v for k, v in os.environ.items() if k not in _SERVER_CONFIG_ENV}
    full[ENV_MARKER[0]] = ENV_MARKER[1]
    full.update(env)
    markers = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "CRED", "KEY", "AUTH", "BEARER", "PRIVATE", "CERT")
    return {k: v for k, v in full.items() if k.startswith(prefix) and not any(m in k.upper() for m in markers)}


def test_metadata_serves_prefixed_variables_but_no_credentials(start_server, make_api):
    env = {
        "SANDBOX_ID": "sbx-123", "SANDBOX_WORKSPACE": "/workspace", "SANDBOX_EMPTY": "",
        "SANDBOX_API_TOKEN": "s1", "SANDBOX_SSH_KEY": "s2", "SANDBOX_DB_PASSWORD": "s3", "SANDBOX_CLIENT_SECRET": "s4",
        "SANDBOX_AWS_CREDENTIALS": "s5", "SANDBOX_api_key": "s6", "SANDBOX_Secret_Sauce": "s7",
        "SANDBOX_Credential": "s8", "SANDBOX_keyring": "s9", "OTHER_VALUE": "no", "sandbox_lower": "no",
    }
    client = make_api(start_server(env=env))
    # SANDBOX_API_TOKEN also turns on bearer auth.
    resp = client.get("/v1/metadata", headers={"Authorization": "Bearer s1"})
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/json"
    body = resp.json()
    assert list(body) == ["env"]
    served = body["env"]
    assert served["SANDBOX_ID"] == "sbx-123"
    assert served["SANDBOX_WORKSPACE"] == "/workspace"
    assert served["SANDBOX_EMPTY"] == ""
    for name in served:
        assert name.startswith("SANDBOX_")
        assert not any(marker in name.upper() for marker in SENSITIVE), name
    assert not any(value.startswith("s") and value[1:].isdigit() for value in served.values())
    assert served == _served(env, "SANDBOX_")


def test_metadata_prefix_flag_and_env(start_server, make_api):
    env = {"APP_NAME": "demo", "APP_KEY": "secret", "SANDBOX_ID": "sbx", "SANDBOX_METADATA_PREFIX": "APP_"}
    by_env = make_api(start_server(env=env)).get("/v1/metadata").json()["env"]
    assert by_env == _served(env, "APP_") == {"APP_NAME": "demo"}
    env = {"APP_NAME": "demo", "OTHER_NAME": "other", "SANDBOX_METADATA_PREFIX": "APP_"}
    for flag in ["--metadata-prefix", "--metadata-env-prefix"]:
        by_flag = make_api(start_server(flag, "OTHER_", env=env)).get("/v1/metadata").json()["env"]
        assert by_flag == {"OTHER_NAME": "other"}, "the flag wins over the environment"


# ==========================================================================
# The published SDK's sandboxd file client, pointed at sandboxd


def test_sdk_filesystem_over_v1(server, workdir, root, monkeypatch):
    pytest.importorskip("k8s_agent_sandbox")
    from k8s_agent_sandbox.connector import SandboxConnector
    from k8s_agent_sandbox.files.filesystem import Filesystem
    from k8s_agent_sandbox.models import SandboxDirectConnectionConfig

    connector = SandboxConnector(sandbox_id="e2e", namespace="default",
                                 connection_config=SandboxDirectConnectionConfig(api_url=server.base_url),
                                 k8s_helper=None)
    # A direct connection speaks the legacy API; the sandboxd configs need a cluster. The file client only asks
    # this question to choose the v1 REST paths.
    monkeypatch.setattr(connector, "is_sandboxd", lambda: True)
    files = Filesystem(connector, tracer=None, trace_service_name="sandbox-e2e")
    try:
        files.write(f"{workdir.rel}/sub/hello.txt", b"hello v1")
        assert (root / workdir.rel / "sub" / "hello.txt").read_bytes() == b"hello v1"
        files.write(f"{workdir.rel}/sub/stream.bin", io.BytesIO(b"s" * 300_000))
        assert files.read(f"{workdir.rel}/sub/hello.txt") == b"hello v1"
        sink = io.BytesIO()
        assert files.read_to(f"{workdir.rel}/sub/stream.bin", sink) == 300_000
        assert sink.getvalue() == b"s" * 300_000
        entries = {e.name: e for e in files.list(f"{workdir.rel}/sub")}
        assert sorted(entries) == ["hello.txt", "stream.bin"]
        assert (entries["hello.txt"].size, entries["hello.txt"].type) == (8, "file")
        assert [e.type for e in files.list(workdir.rel)] == ["directory"]
        assert files.exists(f"{workdir.rel}/sub/hello.txt") is True
        assert files.exists(f"{workdir.rel}/sub/absent.txt") is False
        files.delete(f"{workdir.rel}/sub/hello.txt")
        assert files.exists(f"{workdir.rel}/sub/hello.txt") is False
        with pytest.raises(Exception):
            files.delete(f"{workdir.rel}/sub")
        files.delete(f"{workdir.rel}/sub", recursive=True)
        assert os.listdir(root / workdir.rel) == []
    finally:
        connector.close()
