"""The admin API behind mTLS: the client certificate needs the `admin` operation."""

from __future__ import annotations

import json
import socket
import ssl
import urllib.error
import urllib.request

from tests.security.segmented import RULES, Segmented, pki_issue

CONFIG = """
[security]
rules = "{rules}"

[[listeners]]
name = "admin"
protocol = "admin"
bind = "127.0.0.1:0"
security = "mtls"

[storage]
fsync = false
"""


def _get(port: int, cert, path: str = "/api/v1/status") -> int:
    ctx = ssl.create_default_context(cafile=str(cert.ca_path))
    ctx.load_cert_chain(str(cert.cert_path), str(cert.key_path))
    try:
        with urllib.request.urlopen(f"https://localhost:{port}{path}", context=ctx, timeout=10) as r:
            json.loads(r.read())
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_admin_over_mtls_needs_the_admin_operation(tmp_path):
    node = Segmented(tmp_path / "data", config=CONFIG, rules=RULES).start()
    try:
        port = node.ports["admin"]
        ops = pki_issue(node.data_dir, "ops", "alice")
        apps = pki_issue(node.data_dir, "plant-apps", "mes-1")
        assert _get(port, ops) == 200
        assert _get(port, ops, "/api/v1/security") == 200
        assert _get(port, apps) == 403  # a valid certificate, but no conduit gives plant-apps admin
        # no certificate at all: refused at the handshake, with the reason logged
        ctx = ssl.create_default_context(cafile=str(ops.ca_path))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            local = raw.getsockname()[1]
            try:
                with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                    s.sendall(b"GET /api/v1/status HTTP/1.1\r\nhost: x\r\n\r\n")
                    assert s.recv(100) == b""
            except (ssl.SSLError, ConnectionError):
                pass
        assert "reason=no_certificate" in node.wait_log(f"peer=127.0.0.1:{local} reason=")
    finally:
        node.stop()
