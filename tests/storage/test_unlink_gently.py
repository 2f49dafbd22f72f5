"""Deleting a large file a step at a time (WAL segments after upload): the file goes, errors are os.unlink's."""

from __future__ import annotations

import os

import pytest

from appliance.storage.segments import unlink_gently


def test_a_large_file_goes_in_steps(tmp_path):
    path = tmp_path / "seg"
    path.write_bytes(os.urandom(5 << 20))
    other = tmp_path / "other"
    other.write_bytes(b"kept")
    unlink_gently(path, step=1 << 20, pause=0)
    assert not path.exists() and other.read_bytes() == b"kept"


def test_a_missing_file_raises_like_unlink(tmp_path):
    with pytest.raises(FileNotFoundError):
        unlink_gently(tmp_path / "nope")
