"""Object stores behind one small port (see `port.py`), and `open_object_store(url)`.

URLs: `file:///abs/dir` (local directory; the default is `<data-dir>/objects`),
`s3://bucket/prefix?endpoint=http://host:port[&region=..][&secure=..][&ca_file=..][&timeout=..]`,
`memory://` (tests only: gone when the process ends).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from appliance.errors import ConfigError
from appliance.storage.objects.faulty import FaultyObjectStore
from appliance.storage.objects.local import LocalObjectStore
from appliance.storage.objects.memory import MemoryObjectStore
from appliance.storage.objects.metered import MeteredObjectStore
from appliance.storage.objects.port import ObjectInfo, ObjectNotFoundError, ObjectStore, ObjectStoreError


def check_object_store_url(url: str, *, access_key: str | None = None, secret_key: str | None = None) -> None:
    """Raise ConfigError now (before anything starts) for a malformed URL or missing S3 credentials."""
    scheme = urlsplit(url).scheme
    if scheme == "s3":
        import os

        from appliance.storage.objects.s3 import ACCESS_KEY_ENV, SECRET_KEY_ENV, parse_s3_url

        parse_s3_url(url)
        if not (os.environ.get(ACCESS_KEY_ENV) or access_key) or not (os.environ.get(SECRET_KEY_ENV) or secret_key):
            raise ConfigError("object_store", "storage.s3_access_key",
                              f"S3 credentials missing: set {ACCESS_KEY_ENV}/{SECRET_KEY_ENV} or the config")
    elif scheme == "file":
        if not unquote(urlsplit(url).path):
            raise ConfigError("object_store", "storage.object_store", f"file URL without a path: {url!r}")
    elif scheme != "memory":
        raise ConfigError("object_store", "storage.object_store",
                          f"unsupported object store URL {url!r} (file:///dir or s3://bucket/prefix?endpoint=...)")


def open_object_store(url: str, *, fsync: bool = True, access_key: str | None = None,
                      secret_key: str | None = None) -> ObjectStore:
    scheme = urlsplit(url).scheme
    if scheme == "file":
        path = unquote(urlsplit(url).path)
        if not path:
            raise ConfigError("object_store", "storage.object_store", f"file URL without a path: {url!r}")
        return LocalObjectStore(Path(path), fsync=fsync)
    if scheme == "s3":
        from appliance.storage.objects.s3 import S3ObjectStore

        return S3ObjectStore(url, access_key=access_key, secret_key=secret_key)
    if scheme == "memory":
        return MemoryObjectStore()
    raise ConfigError("object_store", "storage.object_store",
                      f"unsupported object store URL {url!r} (file:///dir or s3://bucket/prefix?endpoint=...)")


__all__ = [
    "FaultyObjectStore",
    "LocalObjectStore",
    "MemoryObjectStore",
    "MeteredObjectStore",
    "ObjectInfo",
    "ObjectNotFoundError",
    "ObjectStore",
    "ObjectStoreError",
    "check_object_store_url",
    "open_object_store",
]
