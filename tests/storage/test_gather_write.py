"""The WAL's gather write puts every part on disk in order, also across short writes."""

from __future__ import annotations

import os

from appliance.storage import segments


def test_parts_land_back_to_back_at_the_position(tmp_path):
    parts = [b"head", b"", os.urandom(70_000), b"x" * 3, memoryview(b"tail-bytes")[5:]]
    fd = os.open(tmp_path / "seg", os.O_RDWR | os.O_CREAT)
    try:
        os.pwrite(fd, b"?" * 10, 0)
        n = segments.pwritev_all(fd, parts, 10)
        expected = b"".join(bytes(p) for p in parts)
        assert n == len(expected)
        assert os.pread(fd, 10 + n + 1, 0) == b"?" * 10 + expected
    finally:
        os.close(fd)


def test_short_writes_and_more_parts_than_one_call_takes(tmp_path, monkeypatch):
    real = os.pwritev
    calls = []

    def short(fd, buffers, offset):  # fault injection: the kernel writes at most 1000 bytes a call
        calls.append(len(buffers))
        data = b"".join(bytes(b) for b in buffers)[:1000]
        return real(fd, [data], offset)

    monkeypatch.setattr(os, "pwritev", short)
    parts = [bytes([i % 256]) * (i % 7 + 300) for i in range(2500)]  # more than IOV_MAX parts
    fd = os.open(tmp_path / "seg", os.O_RDWR | os.O_CREAT)
    try:
        n = segments.pwritev_all(fd, parts, 0)
        expected = b"".join(parts)
        assert n == len(expected)
        assert os.pread(fd, n, 0) == expected
    finally:
        os.close(fd)
    assert max(calls) <= 1024 and len(calls) > 1
