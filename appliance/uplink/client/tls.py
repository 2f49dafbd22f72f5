"""TLS for the uplink's connections to the cloud: `[uplink] security = "tls"` or `"mtls"`.

    tls = UplinkTls.from_settings(settings.uplink, source="plant.toml")  # ConfigError if a file is bad
    client = KafkaClient(bootstrap, nursery, connect=tls.connect)

Every connection (bootstrap and per-broker) is TCP, then a TLS handshake that verifies the cloud's
certificate against `ca_file` (or the system's CAs) and, unless `check_hostname = false`, that it
names the broker's host or `server_name`; with mtls it presents our client certificate (issued by
the cloud's CA: `millstream pki issue --zone uplink --id SITE`). With `crl_file` (a copy of the
cloud CA's `crl.pem`) a revoked cloud certificate is refused (reason `revoked`), as is every
certificate once that CRL has expired (`crl_expired`). The context is rebuilt when a file changes
on disk, so a renewed certificate or CRL applies to the next connection; a broken file keeps the
previous context and is reported (last error) until it is fixed.

Refusals are reported as TlsError with a short `reason` (security/tls.py's vocabulary) and a
sentence saying which side refused and why. With TLS 1.3 the cloud checks our certificate after
our side of the handshake is done, so its refusal (an alert: certificate revoked, unknown ca,
certificate expired, certificate required) arrives on the first read, i.e. while waiting for the
ApiVersions answer: the reader maps that to TlsError too (`tls_failure`).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import trio
from cryptography import x509

from appliance.config import UplinkSettings
from appliance.errors import ConfigError
from appliance.logs import get_logger
from appliance.security.pki import PkiError, identity_from_cert
from appliance.security.tls import client_context, refusal_reason
from appliance.uplink.client.errors import TlsError

log = get_logger("uplink")

# What a short reason means for an operator, from the uplink's side.
_EXPLAIN = {
    "peer_refused:certificate_revoked": "the cloud refused our client certificate: it is revoked",
    "peer_refused:unknown_ca": "the cloud does not trust the CA that issued our client certificate",
    "peer_refused:certificate_expired": "the cloud refused our client certificate: it has expired (or is not yet valid)",
    "peer_refused:certificate_required": "the cloud requires a client certificate (set security = \"mtls\")",
    "peer_refused:bad_certificate": "the cloud refused our client certificate",
    "peer_refused:unsupported_certificate": "the cloud refused our client certificate (unsupported)",
    "peer_refused:handshake_failure": "the cloud refused the TLS handshake",
    "peer_refused:access_denied": "the cloud refused our client certificate (access denied)",
    "unknown_ca": "the cloud's certificate is not issued by a CA in uplink.ca_file",
    "hostname_mismatch": "the cloud's certificate does not name the host we connect to (set uplink.server_name)",
    "expired": "the cloud's certificate has expired",
    "not_yet_valid": "the cloud's certificate is not valid yet (check the clocks)",
    "revoked": "the cloud's certificate is revoked (uplink.crl_file)",
    "crl_expired": "the CRL in uplink.crl_file has expired: copy a fresh one from the cloud's CA",
    "crl_not_yet_valid": "the CRL in uplink.crl_file is not valid yet (check the clocks)",
    "crl_invalid": "the CRL in uplink.crl_file is not signed by the cloud's CA",
    "not_tls": "the cloud's listener does not speak TLS",
    "peer_closed": "the cloud closed the connection during the TLS handshake (refused our certificate? see its handshake_refused log)",
    "protocol_version": "no TLS version in common with the cloud (TLS 1.2+ needed)",
    "no_shared_cipher": "no cipher suite in common with the cloud",
}


def explain(reason: str) -> str:
    return _EXPLAIN.get(reason, f"TLS handshake failed ({reason})")


def tls_failure(exc: BaseException) -> TlsError | None:
    """A TlsError for a transport failure whose cause is a TLS error, else None."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, ssl.SSLError):
            reason = refusal_reason(e)
            return TlsError(f"{explain(reason)} [{reason}]", reason)
        e = e.__cause__ or e.__context__
    return None


@dataclass(frozen=True)
class ClientCertInfo:
    """What the status shows about our client certificate."""

    path: str
    identity: str | None  # "zone/id" when it carries a Millstream identity
    not_after: str
    expired: bool

    def as_dict(self) -> dict[str, object]:
        return {"path": self.path, "identity": self.identity, "not_after": self.not_after, "expired": self.expired}


def _signed_by(crl: x509.CertificateRevocationList, ca: x509.Certificate) -> bool:
    try:
        return crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    except TypeError:  # a key type CRLs cannot be signed with
        return False


def _read(source: str, key: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(source, f"uplink.{key}", f"cannot read {path}: {e.strerror or e}") from None


class UplinkTls:
    """The uplink's client SSLContext, checked at start-up and rebuilt when its files change."""

    def __init__(self, settings: UplinkSettings, *, source: str = "[uplink]",
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.settings = settings
        self.source = source
        self._clock = clock
        self._files = [f for f in (settings.ca_file, settings.cert_file, settings.key_file, settings.crl_file)
                       if f is not None]
        self._stamp = self._current_stamp()
        self._ctx = self._build()  # a bad file is a config error at start-up, naming key and file
        self.cert_info = self._cert_info()
        self.reload_error: str | None = None
        if self.cert_info is not None and self.cert_info.expired:
            log.warning("uplink_certificate_expired", cert=self.cert_info.path, not_after=self.cert_info.not_after)

    @property
    def mutual(self) -> bool:
        return self.settings.security == "mtls"

    def _current_stamp(self) -> tuple[tuple[int, int, int] | None, ...]:
        out = []
        for p in self._files:
            try:
                st = os.stat(p)
                out.append((st.st_ino, st.st_size, st.st_mtime_ns))
            except OSError:
                out.append(None)
        return tuple(out)

    def _build(self) -> ssl.SSLContext:
        s = self.settings
        for key in ("ca_file", "cert_file", "key_file", "crl_file"):
            path = getattr(s, key)
            if path is not None:
                _read(self.source, key, path)  # names the key and file when one is missing or unreadable
        if s.ca_file is not None:
            try:
                ssl.create_default_context(cafile=s.ca_file)
            except (ssl.SSLError, ValueError) as e:
                raise ConfigError(self.source, "uplink.ca_file", f"{s.ca_file}: no usable CA certificate ({e})") from None
        if s.crl_file is not None:
            self._check_crl(s.crl_file, s.ca_file or "")
        try:
            ctx = client_context(s.ca_file, crl_file=s.crl_file, check_hostname=s.check_hostname)
        except (ssl.SSLError, ValueError) as e:
            raise ConfigError(self.source, "uplink.ca_file", f"{s.ca_file}: {e}") from None
        if self.mutual:
            try:
                x509.load_pem_x509_certificate(_read(self.source, "cert_file", s.cert_file or ""))
            except ValueError:
                raise ConfigError(self.source, "uplink.cert_file", f"{s.cert_file}: not a PEM certificate") from None
            try:
                ctx.load_cert_chain(s.cert_file or "", s.key_file)
            except ssl.SSLError as e:
                problem = ("the key does not belong to the certificate" if "KEY_VALUES_MISMATCH" in str(e)
                           else f"not a usable unencrypted PEM private key ({e.reason or e})")
                raise ConfigError(self.source, "uplink.key_file", f"{s.key_file}: {problem}") from None
        return ctx

    def _check_crl(self, crl_file: str, ca_file: str) -> None:
        """A CRL that is no PEM CRL, or not signed by a CA of `ca_file`, is a config error (every
        handshake would fail); an expired one is logged here and refused by each handshake."""
        try:
            crl = x509.load_pem_x509_crl(_read(self.source, "crl_file", crl_file))
        except ValueError:
            raise ConfigError(self.source, "uplink.crl_file", f"{crl_file}: not a PEM CRL") from None
        cas = x509.load_pem_x509_certificates(_read(self.source, "ca_file", ca_file))
        if not any(ca.subject == crl.issuer and _signed_by(crl, ca) for ca in cas):
            raise ConfigError(self.source, "uplink.crl_file",
                              f"{crl_file}: not issued by a CA in uplink.ca_file ({ca_file})")
        next_update = crl.next_update_utc
        if next_update is not None and next_update <= self._clock():
            log.warning("uplink_crl_expired", crl=crl_file, next_update=next_update.strftime("%Y-%m-%dT%H:%M:%SZ"))

    def _cert_info(self) -> ClientCertInfo | None:
        if not self.mutual or self.settings.cert_file is None:
            return None
        cert = x509.load_pem_x509_certificate(Path(self.settings.cert_file).read_bytes())
        try:
            ident = identity_from_cert(cert)
            identity: str | None = f"{ident.zone}/{ident.id}"
        except PkiError:
            identity = None
        not_after = cert.not_valid_after_utc
        return ClientCertInfo(self.settings.cert_file, identity, not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
                              not_after <= self._clock())

    def context(self) -> ssl.SSLContext:
        """The current context: rebuilt when a file changed; a failed rebuild keeps the old one."""
        stamp = self._current_stamp()
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self._ctx = self._build()
                self.cert_info = self._cert_info()
                self.reload_error = None
                log.info("uplink_tls_reloaded", cert=self.settings.cert_file or "-")
            except (ConfigError, OSError, ValueError) as e:
                self.reload_error = str(e)
                log.error("uplink_tls_reload_failed", error=e)
        return self._ctx

    async def connect(self, host: str, port: int) -> trio.abc.Stream:
        """TCP + TLS handshake; TlsError (with a reason) when the handshake fails."""
        ctx = self.context()
        tcp = await trio.open_tcp_stream(host, port)
        stream = trio.SSLStream(tcp, ctx, server_hostname=self.settings.server_name or host)
        try:
            await stream.do_handshake()
        except (trio.BrokenResourceError, ssl.SSLError, OSError) as e:
            await trio.aclose_forcefully(tcp)
            err = tls_failure(e)
            if err is None:
                reason = refusal_reason(e)
                err = TlsError(f"{explain(reason)} [{reason}]", reason)
            raise err from None
        except BaseException:
            await trio.aclose_forcefully(tcp)
            raise
        return stream


__all__ = ["ClientCertInfo", "UplinkTls", "explain", "tls_failure"]
