"""One Kafka client connection, sans-IO: requests in -> bytes out, bytes in -> responses out.

    conn = ClientConnection("millstream-uplink")
    corr, frame = conn.api_versions_request()       # send frame
    for corr, response in conn.receive_data(data):  # every complete response in the bytes
        ...
    conn.set_versions(negotiate(...))               # then conn.request(api_key, message)

Correlation ids pair responses with requests; a response with an id that was never sent (or
out of order: Kafka answers a connection's requests in the order they were sent) is a protocol
error and the adapter must drop the connection. The ApiVersions response header is always v0,
and a broker that does not speak the requested ApiVersions version answers with error 35 in the
v0 body layout: both are handled here.
"""

from __future__ import annotations

import struct
from collections import deque
from typing import Any

from appliance.errors import ProtocolError
from appliance.kafka.protocol import codec
from appliance.kafka.protocol import messages as m
from appliance.uplink.client.versions import API_VERSIONS, CLIENT_VERSIONS, pick

_SIZE = struct.Struct(">i")
_ERR_AFTER_CORR = struct.Struct(">ih")
UNSUPPORTED_VERSION = 35


class ClientConnection:
    def __init__(self, client_id: str, *, max_frame: int = 100 << 20) -> None:
        self.client_id = client_id
        self.max_frame = max_frame
        self.versions: dict[int, int] = {}
        self._next_corr = 1
        self._pending: deque[tuple[int, int, int]] = deque()  # (corr, api_key, version) in send order
        self._buf = bytearray()

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def set_versions(self, versions: dict[int, int]) -> None:
        self.versions = dict(versions)

    def api_versions_request(self, version: int | None = None) -> tuple[int, bytes]:
        v = CLIENT_VERSIONS[API_VERSIONS][1] if version is None else version
        req = m.ApiVersionsRequest(client_software_name="millstream-uplink", client_software_version="1")
        return self._encode(API_VERSIONS, v, req)

    def request(self, api_key: int, message: Any, version: int | None = None) -> tuple[int, bytes]:
        """Encode a request at the negotiated version (or the one given); return (corr, frame)."""
        return self._encode(api_key, pick(self.versions, api_key) if version is None else version, message)

    def _encode(self, api_key: int, version: int, message: Any) -> tuple[int, bytes]:
        corr = self._next_corr
        self._next_corr = (corr + 1) & 0x7FFFFFFF or 1
        frame = codec.encode_request(api_key, version, corr, message, self.client_id)
        self._pending.append((corr, api_key, version))
        return corr, frame

    def receive_data(self, data: bytes) -> list[tuple[int, Any]]:
        """Feed received bytes; return [(correlation id, decoded response)] for complete frames."""
        self._buf += data
        out: list[tuple[int, Any]] = []
        buf = self._buf
        pos = 0
        while len(buf) - pos >= 4:
            (size,) = _SIZE.unpack_from(buf, pos)
            if size < 4 or size > self.max_frame:
                raise ProtocolError(f"response frame length {size} is out of range")
            if len(buf) - pos - 4 < size:
                break
            frame = bytes(buf[pos + 4 : pos + 4 + size])
            pos += 4 + size
            out.append(self._decode(frame))
        if pos:
            del buf[:pos]
        return out

    def _decode(self, frame: bytes) -> tuple[int, Any]:
        if not self._pending:
            raise ProtocolError("a response arrived with no request outstanding")
        corr, api_key, version = self._pending.popleft()
        (got,) = _SIZE.unpack_from(frame, 0)
        if got != corr:
            raise ProtocolError(f"response correlation id {got}, expected {corr}")
        if api_key == API_VERSIONS and version > 0 and len(frame) >= 6:
            _, err = _ERR_AFTER_CORR.unpack_from(frame, 0)
            if err == UNSUPPORTED_VERSION:
                version = 0  # the broker answered in the v0 layout with its full list
        _, response = codec.decode_response(api_key, version, frame)
        return corr, response


def api_rows(response: m.ApiVersionsResponse) -> list[tuple[int, int, int]]:
    return [(k.api_key, k.min_version, k.max_version) for k in response.api_keys]


__all__ = ["ClientConnection", "api_rows"]
