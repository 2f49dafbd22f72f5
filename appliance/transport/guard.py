"""What a listener knows about security: its name and zone, its TLS context, and the handshake.

    guard = ListenerGuard("kafka-plant", zone=None, tls=source, mutual=True, security=security)
    try:
        stream, identity = await guard.handshake(tcp, peer, timeout=10)
    except HandshakeRefused as e:
        ...  # already logged (handshake_refused listener=... peer=... reason=...) and counted; close

A refused handshake never reaches the protocol code: the client without a certificate, with one
from another CA, expired, revoked, or speaking plaintext to a TLS port is dropped here, after the
TLS alert OpenSSL chose is flushed so the client sees why ("certificate revoked", "unknown ca").

Who the rules see: on an mTLS listener the certificate's Identity (its zone decides, so
`rule_zone` is None); on plaintext and server-only TLS no identity and the listener's zone.
"""

from __future__ import annotations

import ssl
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import trio

from appliance.logs import get_logger
from appliance.security.pki import Identity, PkiError
from appliance.security.tls import ServerContextSource, peer_identity, refusal_alert, refusal_reason

log = get_logger("tls")


class HandshakeRefused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class ListenerGuard:
    name: str
    zone: str | None = None
    tls: ServerContextSource | ssl.SSLContext | None = None
    mutual: bool = False
    security: Any = None  # appliance.security.service.Security, or None (authorization off)
    refusals: Counter[str] = field(default_factory=Counter)

    @property
    def rule_zone(self) -> str | None:
        """The zone passed to the evaluator: None on mTLS (the certificate's zone decides)."""
        return None if self.mutual else self.zone

    @property
    def uses_tls(self) -> bool:
        return self.tls is not None

    def context(self) -> ssl.SSLContext:
        assert self.tls is not None
        return self.tls if isinstance(self.tls, ssl.SSLContext) else self.tls.context()

    def _refuse(self, reason: str, peer: str) -> HandshakeRefused:
        self.refusals[reason] += 1
        if self.security is not None:
            self.security.refusals[(self.name, reason)] += 1
        log.info("handshake_refused", listener=self.name, peer=peer, reason=reason)
        return HandshakeRefused(reason)

    async def handshake(self, stream: trio.abc.Stream, peer: str, timeout: float
                        ) -> tuple[trio.abc.Stream, Identity | None]:
        """TLS handshake (if this listener uses TLS) and the peer's identity (mTLS)."""
        if self.tls is None:
            return stream, None
        ssl_stream = trio.SSLStream(stream, self.context(), server_side=True)
        try:
            with trio.fail_after(timeout):
                await ssl_stream.do_handshake()
        except trio.TooSlowError:
            raise self._refuse("handshake_timeout", peer) from None
        except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError) as e:
            reason = refusal_reason(e)
            alert = refusal_alert(ssl_stream)
            if alert:
                with trio.move_on_after(1):
                    try:
                        await stream.send_all(alert)
                    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                        pass
            raise self._refuse(reason, peer) from None
        identity: Identity | None = None
        if self.mutual:
            try:
                identity = peer_identity(ssl_stream)
            except PkiError:
                identity = None
            if identity is None:  # verified by our CA but no Millstream identity (or none sent)
                with trio.move_on_after(1):
                    await trio.aclose_forcefully(ssl_stream)
                raise self._refuse("no_identity", peer)
        return ssl_stream, identity
