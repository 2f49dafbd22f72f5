"""Certificates from `pki issue` and the server context from tls.py work with the OpenSSL-based
clients Millstream serves: librdkafka (confluent-kafka), mosquitto clients and Node.js."""

from __future__ import annotations

import shutil

import pytest
import trio

from appliance.security.pki import Identity
from appliance.security.tls import ClientAuth, ServerContextSource, peer_identity, refusal_reason


async def serve_one(src: ServerContextSource, run_client) -> dict:
    """Accept one TLS connection, record the peer identity and its first bytes, then close."""
    seen: dict = {}
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]

    async def server() -> None:
        tcp = await listener.accept()
        s = trio.SSLStream(tcp, src.context(), server_side=True)
        try:
            await s.do_handshake()
            seen["identity"] = peer_identity(s)
            seen["first_bytes"] = await s.receive_some(64)
        except trio.BrokenResourceError as e:
            seen["reason"] = refusal_reason(e)
        await tcp.aclose()

    with trio.fail_after(30):
        async with trio.open_nursery() as n:
            n.start_soon(server)
            seen["client"] = await run_client(port)
    await listener.aclose()
    return seen


@pytest.fixture
def src(pki, server_cert) -> ServerContextSource:
    return ServerContextSource.for_pki_dir(pki.dir, server_cert.cert_path, server_cert.key_path, ClientAuth.REQUIRED)


async def test_librdkafka_client_certificate(pki, src):
    confluent_kafka = pytest.importorskip("confluent_kafka")
    from confluent_kafka.admin import AdminClient
    dev = pki.issue("plant-apps", "mes-1")

    def probe(port: int) -> None:
        admin = AdminClient({
            "bootstrap.servers": f"127.0.0.1:{port}", "security.protocol": "SSL",
            "ssl.ca.location": str(dev.ca_path), "ssl.certificate.location": str(dev.cert_path),
            "ssl.key.location": str(dev.key_path), "socket.timeout.ms": 3000,
            "reconnect.backoff.max.ms": 10000, "reconnect.backoff.ms": 5000})
        try:
            admin.list_topics(timeout=1.5)
        except confluent_kafka.KafkaException:
            pass  # there is no broker behind this TLS endpoint

    seen = await serve_one(src, lambda port: trio.to_thread.run_sync(probe, port))
    assert seen["identity"] == Identity("plant-apps", "mes-1", dev.record.serial)
    assert seen["first_bytes"][4:6] == b"\x00\x12"  # an ApiVersions request came through the TLS layer


@pytest.mark.skipif(shutil.which("mosquitto_sub") is None, reason="needs mosquitto-clients")
async def test_mosquitto_sub_client_certificate(pki, src):
    dev = pki.issue("cell-line3", "press-7")

    async def run(port: int):
        return await trio.run_process(
            ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "--cafile", str(dev.ca_path),
             "--cert", str(dev.cert_path), "--key", str(dev.key_path), "-t", "x", "-C", "1", "-W", "5",
             "-i", "press-7"], capture_stdout=True, capture_stderr=True, check=False)

    seen = await serve_one(src, run)
    assert seen["identity"] == Identity("cell-line3", "press-7", dev.record.serial), seen["client"].stderr
    assert seen["first_bytes"][0] == 0x10  # MQTT CONNECT


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node")
async def test_node_tls_client_certificate(pki, src):
    dev = pki.issue("it", "dashboard")
    js = """
const tls = require('tls'), fs = require('fs');
const [port, ca, cert, key] = process.argv.slice(1);
const s = tls.connect({host: '127.0.0.1', port: +port, servername: 'localhost', ca: fs.readFileSync(ca),
                       cert: fs.readFileSync(cert), key: fs.readFileSync(key)}, () => s.write('node-hello'));
s.on('error', e => { console.error(e.code || e.message); process.exit(1); });
s.on('close', () => process.exit(0));
"""

    async def run(port: int):
        return await trio.run_process(
            ["node", "-e", js, str(port), str(dev.ca_path), str(dev.cert_path), str(dev.key_path)],
            capture_stdout=True, capture_stderr=True, check=False)

    seen = await serve_one(src, run)
    assert seen["identity"] == Identity("it", "dashboard", dev.record.serial), seen["client"].stderr
    assert seen["first_bytes"] == b"node-hello"
    assert seen["client"].returncode == 0
