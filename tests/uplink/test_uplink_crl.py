"""The uplink checks the cloud's certificate against the cloud CA's CRL (`[uplink] crl_file`).

Real TLS handshakes against a trio TLS listener whose certificates the project's own CA issues;
the CRL is the one `millstream pki revoke` writes, re-read by the uplink when it changes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import trio

from appliance.config import load_settings
from appliance.errors import ConfigError
from appliance.security.pki import IssuedCert, Pki
from appliance.security.tls import ClientAuth, server_context
from appliance.uplink.client.errors import TlsError
from appliance.uplink.client.tls import UplinkTls


def uplink_settings(path: Path, **kw: str):
    path.write_text("[uplink]\n" + "".join(f'{k} = "{v}"\n' for k, v in kw.items()))
    return load_settings(path).uplink


class CloudListener:
    """A TLS listener on loopback that serves whichever certificate it is given now."""

    def __init__(self) -> None:
        self.cert: IssuedCert | None = None
        self.port = 0

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async def handle(tcp: trio.SocketStream) -> None:
            assert self.cert is not None
            ctx = server_context(self.cert.cert_path, self.cert.key_path, client_auth=ClientAuth.NONE)
            stream = trio.SSLStream(tcp, ctx, server_side=True)
            try:
                await stream.do_handshake()
                await stream.receive_some(1)
            except trio.BrokenResourceError:
                pass
            finally:
                await trio.aclose_forcefully(stream)

        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        await trio.serve_listeners(handle, listeners, task_status=task_status)


def server_cert(pki: Pki) -> IssuedCert:
    return pki.issue("cloud", "broker", kind="server", ips=["127.0.0.1"])


def checking_uplink(tmp_path: Path, pki: Pki) -> UplinkTls:
    return UplinkTls(uplink_settings(tmp_path / "u.toml", security="tls", ca_file=str(pki.ca_cert_path),
                                     crl_file=str(pki.crl_path)))


async def handshake(tls: UplinkTls, port: int) -> None:
    stream = await tls.connect("127.0.0.1", port)
    await stream.aclose()


async def test_a_revoked_cloud_certificate_is_refused_once_the_crl_says_so(tmp_path):
    pki = Pki(tmp_path / "cloud")
    pki.init(site="cloud")
    cloud = CloudListener()
    cloud.cert = first = server_cert(pki)
    tls = checking_uplink(tmp_path, pki)
    async with trio.open_nursery() as nursery:
        await nursery.start(cloud.run)
        await handshake(tls, cloud.port)  # valid and not revoked
        pki.revoke(first.record.serial, reason="key_compromise")  # rewrites crl.pem: the next connection reads it
        with pytest.raises(TlsError) as e:
            await handshake(tls, cloud.port)
        assert e.value.reason == "revoked" and "the cloud's certificate is revoked" in str(e.value)
        assert tls.reload_error is None
        cloud.cert = server_cert(pki)  # the cloud renews its certificate
        await handshake(tls, cloud.port)
        # Without crl_file the same revoked certificate would pass: the check is the CRL's doing.
        cloud.cert = first
        await handshake(UplinkTls(uplink_settings(tmp_path / "n.toml", security="tls", ca_file=str(pki.ca_cert_path))),
                        cloud.port)
        nursery.cancel_scope.cancel()


async def test_an_expired_crl_refuses_every_handshake_and_says_what_to_do(tmp_path):
    past = datetime.now(timezone.utc) - timedelta(days=10)
    pki = Pki(tmp_path / "cloud", clock=lambda: past)
    pki.init(site="cloud")
    pki.refresh_crl(days=1)  # its nextUpdate was 9 days ago
    pki.clock = lambda: datetime.now(timezone.utc)
    cloud = CloudListener()
    cloud.cert = server_cert(pki)
    tls = checking_uplink(tmp_path, pki)
    async with trio.open_nursery() as nursery:
        await nursery.start(cloud.run)
        with pytest.raises(TlsError) as e:
            await handshake(tls, cloud.port)
        assert e.value.reason == "crl_expired" and "copy a fresh one" in str(e.value)
        pki.refresh_crl()  # the operator copies a fresh CRL: the next connection works
        await handshake(tls, cloud.port)
        nursery.cancel_scope.cancel()


def test_a_bad_crl_file_is_a_config_error_naming_key_and_file(tmp_path):
    pki = Pki(tmp_path / "cloud")
    pki.init(site="cloud")
    foreign = Pki(tmp_path / "foreign")
    foreign.init(site="elsewhere")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a CRL\n")
    cases = [
        (garbage, "not a PEM CRL"),
        (foreign.crl_path, "not issued by a CA in uplink.ca_file"),
        (tmp_path / "missing.pem", "cannot read"),
    ]
    for crl, problem in cases:
        with pytest.raises(ConfigError) as e:
            UplinkTls(uplink_settings(tmp_path / "u.toml", security="tls", ca_file=str(pki.ca_cert_path),
                                      crl_file=str(crl)), source="plant.toml")
        assert "uplink.crl_file" in str(e.value) and str(crl) in str(e.value) and problem in str(e.value)
    with pytest.raises(ConfigError) as e:
        uplink_settings(tmp_path / "v.toml", security="tls", crl_file=str(pki.crl_path))
    assert "crl_file needs ca_file" in str(e.value)
    with pytest.raises(ConfigError) as e:
        uplink_settings(tmp_path / "w.toml", ca_file=str(pki.ca_cert_path), crl_file=str(pki.crl_path))
    assert 'crl_file set but security = "plaintext"' in str(e.value)
