"""TLS building blocks for every listener and the uplink: contexts, peer identity, refusal reasons.

Listeners take a fresh context per accepted connection from `ServerContextSource.context()`.
It stats the certificate, key, CA and CRL files (a few microseconds) and rebuilds the context
when any of them changed, so a `millstream pki revoke` applies to the next handshake without a
restart, and connections already established keep their context. (OpenSSL cannot drop a CRL
from a context's store, and when several CRLs of one issuer share a lastUpdate second it may pick
the older: rebuilding is the reliable way.) If a rebuild fails (say a truncated file), the old
context stays in force and the failure is logged once per change.

Every handshake checks the client certificate against the site CA and the CRL
(VERIFY_CRL_CHECK_LEAF) in OpenSSL's X.509 strict mode. Failures map to short reasons through
`refusal_reason(exc)`, for logs and counters:

    no_certificate, unknown_ca, expired, not_yet_valid, revoked, wrong_purpose, bad_signature,
    invalid_certificate, crl_missing, crl_expired, crl_invalid, hostname_mismatch,
    not_tls, protocol_version, no_shared_cipher, peer_closed, peer_refused:<alert>, tls_error:<reason>
"""

from __future__ import annotations

import enum
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from appliance.logs import get_logger
from appliance.security.pki import Identity, PkiError, identity_from_der

log = get_logger("tls")


class ClientAuth(enum.Enum):
    NONE = "none"  # server-authenticated TLS only
    OPTIONAL = "optional"  # verify a certificate if the client sends one
    REQUIRED = "required"  # mTLS


_VERIFY_MODE = {ClientAuth.NONE: ssl.CERT_NONE, ClientAuth.OPTIONAL: ssl.CERT_OPTIONAL,
                ClientAuth.REQUIRED: ssl.CERT_REQUIRED}


def _harden(ctx: ssl.SSLContext) -> None:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    # TLS 1.2: forward-secret AEAD suites only (TLS 1.3 suites are all fine).
    ctx.set_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20")


def _load_trust(ctx: ssl.SSLContext, ca_file: str | Path, crl_file: str | Path | None) -> None:
    ctx.load_verify_locations(cafile=str(ca_file))
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    if crl_file is not None:
        # load_verify_locations(cafile=...) loads CRLs from a PEM file as well as certificates.
        ctx.load_verify_locations(cafile=str(crl_file))
        ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF


def server_context(cert_file: str | Path, key_file: str | Path, ca_file: str | Path | None = None,
                   crl_file: str | Path | None = None,
                   client_auth: ClientAuth = ClientAuth.REQUIRED) -> ssl.SSLContext:
    """A server context: TLS 1.2+, our certificate, and (unless NONE) client certificates checked
    against `ca_file` and `crl_file`. A CRL is mandatory when client certificates are checked."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _harden(ctx)
    ctx.load_cert_chain(str(cert_file), str(key_file))
    if client_auth is not ClientAuth.NONE:
        if ca_file is None or crl_file is None:
            raise ValueError("client certificate checks need ca_file and crl_file")
        _load_trust(ctx, ca_file, crl_file)
    ctx.verify_mode = _VERIFY_MODE[client_auth]
    return ctx


def client_context(ca_file: str | Path | None, cert_file: str | Path | None = None, key_file: str | Path | None = None,
                   *, crl_file: str | Path | None = None, check_hostname: bool = True) -> ssl.SSLContext:
    """A client context (the uplink, tests): verifies the server against `ca_file` (the site CA or
    the cloud's CA; None: the system's CAs, e.g. for a public Kafka service), presents our
    certificate if given, optionally checks the server against a CRL."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _harden(ctx)
    if ca_file is None:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        _load_trust(ctx, ca_file, crl_file)
    ctx.check_hostname = check_hostname
    ctx.verify_mode = ssl.CERT_REQUIRED
    if cert_file is not None:
        ctx.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    return ctx


@dataclass(frozen=True)
class _Stamp:
    files: tuple[tuple[int, int, int] | None, ...]


class ServerContextSource:
    """Hands out the current server context, rebuilt when any of its files changed on disk."""

    def __init__(self, cert_file: str | Path, key_file: str | Path, ca_file: str | Path | None = None,
                 crl_file: str | Path | None = None, client_auth: ClientAuth = ClientAuth.REQUIRED,
                 *, stat: Callable[[str | Path], os.stat_result] = os.stat) -> None:
        self._files = tuple(p for p in (cert_file, key_file, ca_file, crl_file) if p is not None)
        self._args = (cert_file, key_file, ca_file, crl_file, client_auth)
        self._stat = stat
        self.client_auth = client_auth
        self._stamp = self._current_stamp()
        self._ctx = server_context(*self._args)  # fail loudly at start-up, not on the first client
        self._failed_stamp: _Stamp | None = None
        self.reloads = 0

    @staticmethod
    def for_pki_dir(pki_dir: str | Path, cert_file: str | Path, key_file: str | Path,
                    client_auth: ClientAuth = ClientAuth.REQUIRED) -> ServerContextSource:
        d = Path(pki_dir)
        return ServerContextSource(cert_file, key_file, d / "ca.crt", d / "crl.pem", client_auth)

    def _current_stamp(self) -> _Stamp:
        out = []
        for p in self._files:
            try:
                st = self._stat(p)
                out.append((st.st_ino, st.st_size, st.st_mtime_ns))
            except OSError:
                out.append(None)
        return _Stamp(tuple(out))

    def context(self) -> ssl.SSLContext:
        stamp = self._current_stamp()
        if stamp != self._stamp and stamp != self._failed_stamp:
            try:
                ctx = server_context(*self._args)
            except (OSError, ssl.SSLError, ValueError) as e:
                self._failed_stamp = stamp
                log.error("tls_reload_failed", files=",".join(map(str, self._files)), error=e)
            else:
                self._ctx, self._stamp, self._failed_stamp = ctx, stamp, None
                self.reloads += 1
                log.info("tls_context_reloaded", reloads=self.reloads)
        return self._ctx


class _HasPeerCert(Protocol):
    def getpeercert(self, binary_form: bool = ...) -> Any: ...


def peer_identity(conn: _HasPeerCert) -> Identity | None:
    """The verified peer's Identity after the handshake (trio.SSLStream, ssl.SSLObject or
    ssl.SSLSocket), or None when the peer sent no certificate. Raises PkiError for a verified
    certificate without a Millstream identity (say, a server certificate of another product)."""
    der = conn.getpeercert(binary_form=True)
    if not der:
        return None
    return identity_from_der(der)


def refusal_alert(stream: object) -> bytes:
    """The TLS alert OpenSSL wrote for a failed handshake, still unsent.

    trio.SSLStream marks itself broken on a handshake error without flushing that alert, so the
    client would see a bare disconnect instead of "certificate revoked" / "unknown ca". Send these
    bytes on `stream.transport_stream` (bounded by a short timeout) before closing. Best effort:
    it reads trio's outgoing memory BIO and returns b"" if that is not available.

        try:
            await ssl_stream.do_handshake()
        except trio.BrokenResourceError as e:
            reason = refusal_reason(e)
            with trio.move_on_after(1):
                await ssl_stream.transport_stream.send_all(refusal_alert(ssl_stream))
            log.info("handshake_refused", listener=name, peer=peer, reason=reason)
    """
    bio = getattr(stream, "_outgoing", None)
    if isinstance(bio, ssl.MemoryBIO):
        return bio.read()
    return b""


# OpenSSL X509_V_ERR_* codes -> our reasons.
_VERIFY_REASONS = {
    2: "unknown_ca", 18: "unknown_ca", 19: "unknown_ca", 20: "unknown_ca", 21: "unknown_ca",
    30: "unknown_ca",  # authority/subject key id mismatch: signed by another CA of the same name
    3: "crl_missing", 11: "crl_not_yet_valid", 12: "crl_expired", 8: "crl_invalid", 6: "crl_invalid",
    15: "crl_invalid", 16: "crl_invalid",
    7: "bad_signature", 4: "bad_signature",
    9: "not_yet_valid", 10: "expired", 23: "revoked", 26: "wrong_purpose", 24: "invalid_certificate",
    62: "hostname_mismatch", 64: "hostname_mismatch",
}
# OpenSSL library reasons (ssl.SSLError.reason) -> our reasons.
_SSL_REASONS = {
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "no_certificate",
    "HTTP_REQUEST": "not_tls", "HTTPS_PROXY_REQUEST": "not_tls", "WRONG_VERSION_NUMBER": "not_tls",
    "RECORD_LAYER_FAILURE": "not_tls", "PACKET_LENGTH_TOO_LONG": "not_tls",
    "UNSUPPORTED_PROTOCOL": "protocol_version", "TLSV1_ALERT_PROTOCOL_VERSION": "protocol_version",
    "NO_SHARED_CIPHER": "no_shared_cipher", "NO_CIPHERS_AVAILABLE": "no_shared_cipher",
    "UNEXPECTED_EOF_WHILE_READING": "peer_closed",
}


def refusal_reason(exc: BaseException) -> str:
    """A short reason for a failed handshake. Accepts the ssl error itself or anything that wraps
    it (trio.BrokenResourceError raised `from` the ssl.SSLError)."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, ssl.SSLCertVerificationError):
            code = e.verify_code
            if code in _VERIFY_REASONS:
                return _VERIFY_REASONS[code]
            return "invalid_certificate" if code >= 70 else f"verify_error:{code}"
        if isinstance(e, ssl.SSLEOFError):
            return "peer_closed"
        if isinstance(e, ssl.SSLError):
            reason = (e.reason or "").upper()
            if reason in _SSL_REASONS:
                return _SSL_REASONS[reason]
            if reason.startswith(("SSLV3_ALERT_", "TLSV1_ALERT_", "TLSV13_ALERT_")):
                return "peer_refused:" + reason.split("_ALERT_", 1)[1].lower()
            return "tls_error:" + (reason.lower() or type(e).__name__)
        if isinstance(e, PkiError):
            return "no_identity"
        e = e.__cause__ or e.__context__
    if isinstance(exc, (ConnectionError, EOFError)) or type(exc).__name__ in ("BrokenResourceError", "ClosedResourceError"):
        return "peer_closed"
    return "tls_error:" + type(exc).__name__
