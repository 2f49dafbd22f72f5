"""The --object-store flag, URL checks, timestamps served from objects, and status counters."""

from __future__ import annotations

import pytest

from appliance.cli import _overrides, build_parser
from appliance.config import load_settings
from appliance.errors import ConfigError
from appliance.storage.objects import MemoryObjectStore, check_object_store_url
from tests.storage.conftest import NOW
from tests.storage.objects.helpers import produce, running_tier


def test_object_store_flag_reaches_the_settings():
    args = build_parser().parse_args(["run", "--object-store", "s3://plant/a?endpoint=http://127.0.0.1:9000"])
    settings = load_settings(None, _overrides(args))
    assert settings.storage.object_store == "s3://plant/a?endpoint=http://127.0.0.1:9000"
    assert load_settings(None, {}).storage.object_store is None  # default: <data-dir>/objects


def test_url_checks(monkeypatch):
    monkeypatch.delenv("MILLSTREAM_S3_ACCESS_KEY", raising=False)
    monkeypatch.delenv("MILLSTREAM_S3_SECRET_KEY", raising=False)
    with pytest.raises(ConfigError, match="credentials missing"):
        check_object_store_url("s3://b/p?endpoint=http://h:1")
    check_object_store_url("s3://b/p?endpoint=http://h:1", access_key="a", secret_key="s")
    with pytest.raises(ConfigError, match="unsupported"):
        check_object_store_url("gs://b/p")
    check_object_store_url("file:///var/lib/millstream/objects")


async def test_offset_for_timestamp_from_objects_and_status(tmp_path):
    store = MemoryObjectStore()
    async with running_tier(tmp_path / "d", store) as st:
        a = await st.logs.create_stream("a-0")
        for k in range(100):
            await produce(st, a, 1, ts=NOW + 1000 * k, tag=b"%d" % k)
        await st.tier.upload_all()
        assert st.wal.first_indexed(a) > 5  # trimmed: offset 5 is in objects only
        assert await st.logs.offset_for_timestamp(a, NOW + 1000 * 5) == (5, NOW + 5000)
        assert await st.logs.offset_for_timestamp(a, NOW + 1000 * 5 - 1) == (5, NOW + 5000)
        assert await st.logs.offset_for_timestamp(a, NOW + 1000 * 200) is None
        assert await st.logs.offset_for_timestamp(a, -2) == (0, -1)
        s = st.status()
        assert s.objects >= 1 and s.object_bytes > 100_000 and s.uploads >= 1
        assert s.requests["put"] >= 3 and s.object_store == "memory://" and not s.fenced
        assert s.unuploaded_bytes == 0 and s.upload_lag_s == 0
