"""1 GiB through /upload and /download: streamed both ways, so the server's memory does not grow with the size.

Peak RSS (VmHWM) is read from /proc while the transfer runs; growth must stay far below the size moved.
"""
import hashlib
import os

import requests

from conftest import Server

GIB = 1 << 30
CHUNK = 1 << 20
MAX_GROWTH = 32 << 20  # bytes: buffers, not the file


def _peak_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def _reset_peak(pid: int) -> None:
    # Writing 5 to clear_refs resets VmHWM to the current RSS (Linux 4.0+).
    with open(f"/proc/{pid}/clear_refs", "w") as refs:
        refs.write("5")


def _pattern(index: int) -> bytes:
    return hashlib.sha256(index.to_bytes(8, "little")).digest() * (CHUNK // 32)


def test_one_gib_upload_and_download_stream(start_server) -> None:
    server: Server = start_server()
    pid = server.pid
    _reset_peak(pid)
    baseline = _peak_rss(pid)
    boundary = "sandboxd-large-upload-boundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    sent = hashlib.sha256()

    def body():
        yield head
        for index in range(GIB // CHUNK):
            chunk = _pattern(index)
            sent.update(chunk)
            yield chunk
        yield tail

    response = requests.post(
        server.base_url + "/upload", data=body(), timeout=300,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert response.status_code == 200, response.text
    upload_growth = _peak_rss(pid) - baseline
    assert os.path.getsize(server.root / "big.bin") == GIB
    assert upload_growth < MAX_GROWTH, f"upload of 1 GiB grew the server by {upload_growth >> 20} MiB"

    _reset_peak(pid)
    baseline = _peak_rss(pid)
    received = hashlib.sha256()
    total = 0
    with requests.get(server.base_url + "/download/big.bin", stream=True, timeout=300) as download:
        assert download.status_code == 200
        for chunk in download.iter_content(CHUNK):
            received.update(chunk)
            total += len(chunk)
    download_growth = _peak_rss(pid) - baseline
    assert total == GIB
    assert received.hexdigest() == sent.hexdigest()
    assert download_growth < MAX_GROWTH, f"download of 1 GiB grew the server by {download_growth >> 20} MiB"
    print(f"1 GiB: upload RSS growth {upload_growth >> 10} KiB, download RSS growth {download_growth >> 10} KiB")
    os.remove(server.root / "big.bin")
