"""Real TLS handshakes over loopback with the contexts from appliance.security.tls."""

from __future__ import annotations

import shutil
import ssl
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import trio

from appliance.security.pki import Identity, IssuedCert, Pki
from appliance.security.tls import (
    ClientAuth,
    ServerContextSource,
    client_context,
    peer_identity,
    refusal_alert,
    refusal_reason,
)


def source(pki: Pki, server: IssuedCert, auth: ClientAuth = ClientAuth.REQUIRED) -> ServerContextSource:
    return ServerContextSource.for_pki_dir(pki.dir, server.cert_path, server.key_path, auth)


def ctx_for(pki: Pki, cert: IssuedCert | None) -> ssl.SSLContext:
    if cert is None:
        return client_context(pki.ca_cert_path)
    return client_context(pki.ca_cert_path, cert.cert_path, cert.key_path)


async def attempt(src: ServerContextSource, client_ctx: ssl.SSLContext) -> dict:
    """One connection: the server's outcome (identity or refusal reason) and what the client saw."""
    out: dict = {}
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]

    async def server() -> None:
        tcp = await listener.accept()
        s = trio.SSLStream(tcp, src.context(), server_side=True)
        try:
            await s.do_handshake()
            out["identity"] = peer_identity(s)
            await s.send_all(b"welcome")
        except trio.BrokenResourceError as e:
            out["reason"] = refusal_reason(e)
            alert = refusal_alert(s)
            if alert:
                with trio.move_on_after(1):
                    await tcp.send_all(alert)
        finally:
            await tcp.aclose()

    async def client() -> None:
        tcp = await trio.open_tcp_stream("127.0.0.1", port)
        c = trio.SSLStream(tcp, client_ctx, server_hostname="localhost")
        try:
            await c.do_handshake()
            out["client_got"] = await c.receive_some(100)
        except trio.BrokenResourceError as e:
            out["client_error"] = refusal_reason(e)
        finally:
            await tcp.aclose()

    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            n.start_soon(server)
            n.start_soon(client)
    await listener.aclose()
    return out


async def test_client_cert_from_site_ca_is_accepted_and_identity_extracted(pki, server_cert):
    dev = pki.issue("cell-line3", "press-7")
    out = await attempt(source(pki, server_cert), ctx_for(pki, dev))
    assert out["identity"] == Identity("cell-line3", "press-7", dev.record.serial)
    assert out["client_got"] == b"welcome"


async def test_no_client_certificate_is_refused(pki, server_cert):
    out = await attempt(source(pki, server_cert), ctx_for(pki, None))
    assert out["reason"] == "no_certificate"
    assert "client_got" not in out


async def test_optional_client_auth_accepts_anonymous_clients(pki, server_cert):
    out = await attempt(source(pki, server_cert, ClientAuth.OPTIONAL), ctx_for(pki, None))
    assert out["identity"] is None
    assert out["client_got"] == b"welcome"


async def test_certificate_from_a_foreign_ca_is_refused(pki, server_cert, tmp_path: Path):
    other = Pki(tmp_path / "other-site")
    other.init(site="acme")  # same site name: only the key tells the CAs apart
    stranger = other.issue("cell-line3", "press-7")
    client = client_context(pki.ca_cert_path, stranger.cert_path, stranger.key_path)
    out = await attempt(source(pki, server_cert), client)
    assert out["reason"] == "unknown_ca"
    assert out["client_error"] == "peer_refused:unknown_ca"
    assert "client_got" not in out


async def test_expired_certificate_is_refused(pki, server_cert):
    now = datetime.now(timezone.utc)
    old = pki.issue("cell-line3", "press-7", not_before=now - timedelta(days=30), not_after=now - timedelta(days=1))
    out = await attempt(source(pki, server_cert), ctx_for(pki, old))
    assert out["reason"] == "expired"


async def test_server_certificate_cannot_be_used_as_client_certificate(pki, server_cert):
    out = await attempt(source(pki, server_cert), ctx_for(pki, server_cert))
    assert out["reason"] == "wrong_purpose"


async def test_revocation_applies_to_the_next_handshake_without_rebuilding(pki, server_cert):
    dev = pki.issue("cell-line3", "press-7")
    other = pki.issue("cell-line3", "press-8")
    src = source(pki, server_cert)  # built once, as a running listener would
    first = await attempt(src, ctx_for(pki, dev))
    assert first["identity"].id == "press-7"
    pki.revoke(dev.record.serial, reason="key_compromise")
    second = await attempt(src, ctx_for(pki, dev))
    assert second["reason"] == "revoked"
    assert second["client_error"] == "peer_refused:certificate_revoked"  # TLS 1.3: on the first read
    assert src.reloads == 1
    still_fine = await attempt(src, ctx_for(pki, other))
    assert still_fine["identity"].id == "press-8"
    # A second revocation in the same second still takes effect (a fresh context, not a merged store).
    pki.revoke(id="press-8")
    assert (await attempt(src, ctx_for(pki, other)))["reason"] == "revoked"


async def test_plaintext_bytes_on_a_tls_port_are_refused(pki, server_cert):
    src = source(pki, server_cert)
    out: dict = {}
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]

    async def server() -> None:
        tcp = await listener.accept()
        s = trio.SSLStream(tcp, src.context(), server_side=True)
        try:
            await s.do_handshake()
        except trio.BrokenResourceError as e:
            out["reason"] = refusal_reason(e)
        await tcp.aclose()

    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            n.start_soon(server)
            raw = await trio.open_tcp_stream("127.0.0.1", port)
            # A Kafka ApiVersions request header in the clear.
            await raw.send_all(b"\x00\x00\x00\x15\x00\x12\x00\x03\x00\x00\x00\x01\x00\x0bkafka-plain")
            await raw.aclose()
    await listener.aclose()
    assert out["reason"] == "not_tls"


async def test_corrupt_crl_keeps_the_old_context(pki, server_cert):
    dev = pki.issue("cell-line3", "press-7")
    src = source(pki, server_cert)
    good = pki.crl_path.read_bytes()
    pki.crl_path.write_bytes(good[: len(good) // 2])
    assert (await attempt(src, ctx_for(pki, dev)))["identity"].id == "press-7"
    assert src.reloads == 0


def test_server_context_refuses_tls_1_1(pki, server_cert):
    ctx = source(pki, server_cert).context()
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.verify_flags & ssl.VERIFY_CRL_CHECK_LEAF


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command (Debian package openssl)")
async def test_openssl_s_client_interop(pki, server_cert, tmp_path: Path):
    """An external OpenSSL client with a certificate from `pki issue` talks to a trio TLS echo server."""
    dev = pki.issue("plant-apps", "mes-1")
    src = source(pki, server_cert)
    seen: dict = {}
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]

    async def echo_once() -> None:
        tcp = await listener.accept()
        s = trio.SSLStream(tcp, src.context(), server_side=True)
        await s.do_handshake()
        seen["identity"] = peer_identity(s)
        seen["version"] = s.version()
        data = b""
        while not data.endswith(b"\n"):
            data += await s.receive_some(100)
        await s.send_all(b"echo:" + data)
        await s.aclose()

    with trio.fail_after(20):
        async with trio.open_nursery() as n:
            n.start_soon(echo_once)
            proc = await trio.run_process(
                ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-quiet",
                 "-CAfile", str(dev.ca_path), "-cert", str(dev.cert_path), "-key", str(dev.key_path),
                 "-verify_return_error", "-verify_hostname", "localhost", "-x509_strict"],
                stdin=b"hello from openssl\n", capture_stdout=True, capture_stderr=True, check=False)
    await listener.aclose()
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"echo:hello from openssl" in proc.stdout
    assert seen["identity"] == Identity("plant-apps", "mes-1", dev.record.serial)
    assert seen["version"] in ("TLSv1.2", "TLSv1.3")


async def test_tls12_client_gets_the_same_checks(pki, server_cert):
    """TLS 1.2 verifies the client inside the handshake (1.3 after it): both must refuse."""
    dev = pki.issue("cell-line3", "press-7")
    src = source(pki, server_cert)
    c12 = ctx_for(pki, dev)
    c12.maximum_version = ssl.TLSVersion.TLSv1_2
    ok = await attempt(src, c12)
    assert ok["identity"].id == "press-7" and ok["client_got"] == b"welcome"
    pki.revoke(id="press-7")
    out = await attempt(src, c12)
    assert out["reason"] == "revoked"
    assert out["client_error"] == "peer_refused:certificate_revoked"  # the alert the client receives


async def test_tls11_client_is_refused(pki, server_cert):
    dev = pki.issue("cell-line3", "press-7")
    old = ctx_for(pki, dev)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # that is the point of the test
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("ALL:@SECLEVEL=0")
    out = await attempt(source(pki, server_cert), old)
    assert out["reason"] == "protocol_version"
