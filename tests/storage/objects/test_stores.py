"""The object-store port's contract, for every implementation (local dir, memory, S3 over HTTP)."""

from __future__ import annotations

import pytest
import trio
from minio import Minio

from appliance.errors import ConfigError
from appliance.storage.objects import (
    FaultyObjectStore,
    LocalObjectStore,
    MemoryObjectStore,
    ObjectNotFoundError,
    ObjectStoreError,
    open_object_store,
)
from appliance.storage.objects.port import Body
from appliance.storage.objects.s3 import S3ObjectStore, parse_s3_url
from tests.storage.objects.moto_server import ACCESS_KEY, SECRET_KEY


@pytest.fixture(params=["local", "memory", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalObjectStore(tmp_path / "objects")
    if request.param == "memory":
        return MemoryObjectStore()
    moto = request.getfixturevalue("moto")
    return S3ObjectStore(moto.url())


async def test_put_get_ranges_list_delete(store):
    await store.put("data/a.obj", b"0123456789")
    await store.put("data/b.obj", b"bb")
    await store.put("manifest/1", b"m")
    assert await store.get("data/a.obj") == b"0123456789"
    assert await store.get("data/a.obj", 2, 3) == b"234"
    assert await store.get("data/a.obj", 7) == b"789"
    listed = await store.list("data/")
    assert [(o.key, o.size) for o in listed] == [("data/a.obj", 10), ("data/b.obj", 2)]
    assert [o.key for o in await store.list("")] == ["data/a.obj", "data/b.obj", "manifest/1"]
    await store.put("data/a.obj", b"replaced")
    assert await store.get("data/a.obj") == b"replaced"
    await store.delete("data/a.obj")
    await store.delete("data/a.obj")  # missing is fine
    with pytest.raises(ObjectNotFoundError):
        await store.get("data/a.obj")
    assert [o.key for o in await store.list("data/")] == ["data/b.obj"]


async def test_a_body_of_buffers_is_stored_as_one_object(store):
    # uploads hand over the record batches as they sit in memory (objects.port.Body)
    parts = [b"batch-one|", bytearray(b"batch-two|"), memoryview(b"xxindexxx")[2:7], b"footer"]
    await store.put("data/parts.obj", Body(parts))
    assert await store.get("data/parts.obj") == b"batch-one|batch-two|index" + b"footer"
    assert await store.get("data/parts.obj", 10, 10) == b"batch-two|"
    assert await store.put_if_absent("manifest/parts", Body([b"a", b"b"])) is True
    assert [(o.key, o.size) for o in await store.list("")] == [("data/parts.obj", 31), ("manifest/parts", 2)]


async def test_put_if_absent_creates_once(store):
    assert await store.put_if_absent("manifest/00000001", b"first") is True
    assert await store.put_if_absent("manifest/00000001", b"second") is False
    assert await store.get("manifest/00000001") == b"first"


async def test_concurrent_put_if_absent_has_one_winner(store):
    wins = []

    async def claim(i: int) -> None:
        if await store.put_if_absent("manifest/race", b"writer-%d" % i):
            wins.append(i)

    async with trio.open_nursery() as n:
        for i in range(8):
            n.start_soon(claim, i)
    assert len(wins) == 1
    assert await store.get("manifest/race") == b"writer-%d" % wins[0]


async def test_if_none_match_reaches_the_server(moto):
    """The condition is a real request header: the server refuses the second create. The
    client's public metadata= route would have sent x-amz-meta-if-none-match instead, which
    the server ignores (shown here, so the test fails if the two routes ever behave alike)."""
    url = moto.url()
    store = S3ObjectStore(url)
    assert await store.put_if_absent("k", b"one")
    assert not await store.put_if_absent("k", b"two")
    p = parse_s3_url(url)
    raw = Minio(str(p["host"]), ACCESS_KEY, SECRET_KEY, secure=False, region="us-east-1")
    import io

    raw.put_object(str(p["bucket"]), str(p["prefix"]) + "k", io.BytesIO(b"three"), 5, metadata={"If-None-Match": "*"})
    assert await store.get("k") == b"three"  # metadata= did not make the write conditional
    stat = raw.stat_object(str(p["bucket"]), str(p["prefix"]) + "k")
    assert any(h.lower() == "x-amz-meta-if-none-match" for h in stat.metadata)


async def test_s3_unreachable_is_a_store_error():
    from tests.harness import free_port

    store = S3ObjectStore(f"s3://bucket1/p?endpoint=http://127.0.0.1:{free_port()}", access_key="a", secret_key="b",
                          timeout=2)
    with pytest.raises(ObjectStoreError):
        await store.put("x", b"y")


def test_urls():
    p = parse_s3_url("s3://plant-a/site/line1?endpoint=https://minio.local:9000&region=eu-west-1&ca_file=/etc/ca.pem")
    assert p == {"bucket": "plant-a", "prefix": "site/line1/", "host": "minio.local:9000", "secure": True,
                 "region": "eu-west-1", "ca_file": "/etc/ca.pem", "timeout": 30.0}
    assert parse_s3_url("s3://b?endpoint=http://h:1")["prefix"] == ""
    assert parse_s3_url("s3://b?endpoint=http://h:1&timeout=2.5")["timeout"] == 2.5
    for bad in ("0", "-1", "nan", "soon", "99999"):
        with pytest.raises(ConfigError, match="timeout"):
            parse_s3_url(f"s3://b?endpoint=http://h:1&timeout={bad}")
    with pytest.raises(ConfigError):
        parse_s3_url("s3://b?endpoint=http://h:1&colour=red")
    with pytest.raises(ConfigError):
        open_object_store("ftp://x/y")


async def test_local_store_leaves_no_temporary_files(tmp_path):
    store = LocalObjectStore(tmp_path / "o")
    await store.put("a/b/c", b"x")
    await store.put_if_absent("a/b/c", b"y")
    (tmp_path / "o" / "a" / "b" / ".tmp-deadbeef").write_bytes(b"crashed write")
    assert [o.key for o in await store.list("a/")] == ["a/b/c"]
    LocalObjectStore(tmp_path / "o")  # reopening sweeps crashed writes
    assert sorted(p.name for p in (tmp_path / "o" / "a" / "b").iterdir()) == ["c"]


async def test_faulty_store_fails_then_recovers():
    store = FaultyObjectStore(MemoryObjectStore())
    store.fail_next(2, {"put"})
    for _ in range(2):
        with pytest.raises(ObjectStoreError):
            await store.put("k", b"v")
    await store.put("k", b"v")
    store.outage = True
    with pytest.raises(ObjectStoreError):
        await store.get("k")
    store.outage = False
    assert await store.get("k") == b"v"
    assert store.failures == 3


async def test_s3_over_tls_with_a_private_ca(tmp_path):
    from appliance.security.pki import Pki
    from tests.storage.objects.moto_server import MotoServer

    issued = Pki(tmp_path / "site").ensure_server_cert(["localhost", "127.0.0.1"])
    server = MotoServer(cert=issued.cert_path, key=issued.key_path).start()
    try:
        url = server.url()
        assert url.startswith("s3://") and "endpoint=https://" in url
        store = S3ObjectStore(f"{url}&ca_file={issued.ca_path}", access_key=ACCESS_KEY, secret_key=SECRET_KEY)
        assert await store.put_if_absent("k", b"over tls")
        assert await store.get("k") == b"over tls"
        untrusting = S3ObjectStore(url, access_key=ACCESS_KEY, secret_key=SECRET_KEY, timeout=5)  # public CAs only: the handshake must fail
        with pytest.raises(ObjectStoreError, match="(?i)certificate|ssl"):
            await untrusting.get("k")
    finally:
        server.stop()
