"""An S3/MinIO object store through the `minio` client.

URL: `s3://BUCKET/PREFIX?endpoint=http://HOST:PORT[&region=R][&secure=true|false][&ca_file=PATH][&timeout=S]`
(https endpoints use TLS; `ca_file` names a PEM bundle for a private CA; `timeout`, default 30,
is how many seconds a request may wait for the server before it counts as failed; a store that
accepts connections and then never answers is noticed after about twice that, one retry included). Credentials come from
MILLSTREAM_S3_ACCESS_KEY / MILLSTREAM_S3_SECRET_KEY, else from the config.

The minio client blocks, so every call runs in a worker thread (bounded by a limiter).

Conditional create: `put_if_absent` must send a real `If-None-Match: *` request header. The
public `put_object(metadata=...)` turns unknown headers into `x-amz-meta-*` user metadata (the
server would then ignore the condition), so we call the client's `_put_object`, which sends
the headers it is given verbatim; tests prove against a real S3-speaking server that the second
create of a key is refused (412 PreconditionFailed).
"""

from __future__ import annotations

import math
import os
from functools import partial
from urllib.parse import parse_qs, urlsplit

import certifi
import trio
import urllib3
from minio import Minio
from minio.error import S3Error

from appliance.errors import ConfigError
from appliance.logs import get_logger
from appliance.storage.objects.port import ObjectInfo, ObjectNotFoundError, ObjectStoreError, Value

log = get_logger("objects")

ACCESS_KEY_ENV = "MILLSTREAM_S3_ACCESS_KEY"
SECRET_KEY_ENV = "MILLSTREAM_S3_SECRET_KEY"
_NOT_FOUND = {"NoSuchKey", "NoSuchObject"}
_EXISTS = {"PreconditionFailed"}
DEFAULT_TIMEOUT = 30.0


def parse_s3_url(url: str) -> dict[str, object]:
    """The parts of an s3:// URL; ConfigError when it is malformed."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ConfigError("object_store", "storage.object_store", f"expected s3://BUCKET/PREFIX?endpoint=..., got {url!r}")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = set(query) - {"endpoint", "region", "secure", "ca_file", "timeout"}
    if unknown:
        raise ConfigError("object_store", "storage.object_store", f"unknown URL parameters {sorted(unknown)}")
    endpoint = query.get("endpoint", "https://s3.amazonaws.com")
    ep = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    if ep.scheme not in ("http", "https") or not ep.netloc:
        raise ConfigError("object_store", "storage.object_store", f"bad endpoint {endpoint!r}")
    secure = ep.scheme == "https"
    if "secure" in query:
        secure = query["secure"].lower() in ("1", "true", "yes")
    prefix = parts.path.strip("/")
    raw_timeout = query.get("timeout")
    try:
        timeout = DEFAULT_TIMEOUT if raw_timeout is None else float(raw_timeout)
    except ValueError:
        timeout = math.nan
    if not 0 < timeout <= 3600:
        raise ConfigError("object_store", "storage.object_store", f"timeout must be 0-3600 seconds, got {raw_timeout!r}")
    return {
        "bucket": parts.netloc,
        "prefix": f"{prefix}/" if prefix else "",
        "host": ep.netloc,
        "secure": secure,
        "region": query.get("region"),
        "ca_file": query.get("ca_file"),
        "timeout": timeout,
    }


class S3ObjectStore:
    def __init__(self, url: str, *, access_key: str | None = None, secret_key: str | None = None,
                 threads: int = 16, timeout: float | None = None, create_bucket: bool = True) -> None:
        p = parse_s3_url(url)
        timeout = float(p["timeout"]) if timeout is None else timeout  # type: ignore[arg-type]
        self.bucket = str(p["bucket"])
        self.prefix = str(p["prefix"])
        self.url = url
        access_key = os.environ.get(ACCESS_KEY_ENV) or access_key
        secret_key = os.environ.get(SECRET_KEY_ENV) or secret_key
        if not access_key or not secret_key:
            raise ConfigError("object_store", "storage.s3_access_key",
                              f"S3 credentials missing: set {ACCESS_KEY_ENV}/{SECRET_KEY_ENV} or the config")
        ca = p["ca_file"] or certifi.where()
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=min(5.0, timeout), read=timeout),
            maxsize=threads,
            cert_reqs="CERT_REQUIRED",
            ca_certs=str(ca),
            # One quick retry for a dropped keep-alive connection; the tier retries with back-off.
            retries=urllib3.Retry(total=1, backoff_factor=0.1, status_forcelist=[]),
        )
        self._client = Minio(str(p["host"]), access_key=access_key, secret_key=secret_key,
                             secure=bool(p["secure"]), region=p["region"] or "us-east-1", http_client=http)
        self._limiter = trio.CapacityLimiter(threads)
        self._create_bucket = create_bucket
        self._bucket_checked = False

    def _k(self, key: str) -> str:
        return self.prefix + key

    async def _call(self, fn, op: str, key: str):  # type: ignore[no-untyped-def]
        if not self._bucket_checked:
            await self._ensure_bucket()
        try:
            return await trio.to_thread.run_sync(fn, limiter=self._limiter)
        except S3Error as e:
            if e.code in _NOT_FOUND:
                raise ObjectNotFoundError(f"no object {key!r}") from None
            raise ObjectStoreError(f"S3 {op} {key!r} failed: {e.code}: {e.message}") from e
        except ObjectStoreError:
            raise
        except Exception as e:  # urllib3/socket errors: the store is unreachable
            raise ObjectStoreError(f"S3 {op} {key!r} failed: {type(e).__name__}: {e}") from e

    async def _ensure_bucket(self) -> None:
        client, bucket = self._client, self.bucket

        def work() -> None:
            if not client.bucket_exists(bucket):
                if not self._create_bucket:
                    raise ObjectStoreError(f"bucket {bucket!r} does not exist")
                client.make_bucket(bucket)
                log.info("bucket_created", bucket=bucket)

        try:
            await trio.to_thread.run_sync(work, limiter=self._limiter)
        except S3Error as e:
            if e.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise ObjectStoreError(f"S3 bucket check failed: {e.code}: {e.message}") from e
        except ObjectStoreError:
            raise
        except Exception as e:
            raise ObjectStoreError(f"S3 bucket check failed: {type(e).__name__}: {e}") from e
        self._bucket_checked = True

    async def put(self, key: str, data: Value) -> None:
        await self._call(partial(self._client._put_object, self.bucket, self._k(key), bytes(data), {}), "put", key)

    async def put_if_absent(self, key: str, data: Value) -> bool:
        fn = partial(self._client._put_object, self.bucket, self._k(key), bytes(data), {"If-None-Match": "*"})
        try:
            await self._call(fn, "put_if_absent", key)
        except ObjectStoreError as e:
            cause = e.__cause__
            if isinstance(cause, S3Error) and cause.code in _EXISTS:
                return False
            raise
        return True

    async def get(self, key: str, start: int = 0, length: int | None = None) -> bytes:
        client, bucket, name = self._client, self.bucket, self._k(key)
        if length == 0:
            return b""

        def work() -> bytes:
            resp = client.get_object(bucket, name, offset=start, length=length or 0)
            try:
                return resp.data
            finally:
                resp.close()
                resp.release_conn()

        try:
            return await self._call(work, "get", key)
        except ObjectStoreError as e:
            cause = e.__cause__
            if isinstance(cause, S3Error) and cause.code == "InvalidRange":
                return b""  # the range starts past the object's end: a short read, as from a file
            raise

    async def list(self, prefix: str) -> list[ObjectInfo]:
        client, bucket, strip = self._client, self.bucket, len(self.prefix)

        def work() -> list[ObjectInfo]:
            found = client.list_objects(bucket, prefix=self._k(prefix), recursive=True)
            return sorted((ObjectInfo(o.object_name[strip:], o.size or 0) for o in found), key=lambda o: o.key)

        return await self._call(work, "list", prefix)

    async def delete(self, key: str) -> None:
        await self._call(partial(self._client.remove_object, self.bucket, self._k(key)), "delete", key)

    async def aclose(self) -> None:
        self._client._http.clear()


__all__ = ["ACCESS_KEY_ENV", "SECRET_KEY_ENV", "S3ObjectStore", "parse_s3_url"]
