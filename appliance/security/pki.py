"""The site CA: create it, issue and revoke certificates, keep a CRL and an inventory.

Layout under `<data-dir>/pki/` (directory 0700):

    ca.key            CA private key, PKCS#8 PEM, 0600, encrypted when a passphrase is given
    ca.crt            CA certificate (hand this to every client as its trust anchor)
    crl.pem           CRL signed by the CA; always present (empty after `init`), re-signed on revoke
    inventory.json    every issued certificate: serial, zone, id, kind, validity, revocation
    issued/<serial>.crt   a copy of every issued certificate
    out/<zone>.<id>/  default output of `issue`: <id>.crt, <id>.key (0600), ca.crt
    server/           the appliance's own listener certificate (see ensure_server_cert)

Keys are ECDSA P-256 with SHA-256 signatures: accepted by every OpenSSL-based client we care
about (librdkafka, Python ssl, mosquitto, Node) and by OpenSSL's X.509 strict mode, unlike
Ed25519 which several TLS 1.2 stacks still reject.

Identity encoding (what rules and logs see): the authoritative identity is a SAN URI
`urn:millstream:zone:<zone>:id:<id>`; the subject carries the same values for people reading
certificates (`CN=<id>, OU=<zone>, O=Millstream <site>`). Zone and id are 1-64 characters of
`[A-Za-z0-9._-]`, starting with a letter or digit, so they are safe inside MQTT topic levels,
Kafka names and the URN. `identity_from_cert` reads the URI only.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from appliance.errors import MillstreamError
from appliance.logs import get_logger

log = get_logger("pki")

URN_PREFIX = "urn:millstream:zone:"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
CA_DAYS = 3650
CRL_DAYS = 365  # OpenSSL refuses every handshake once the CRL's nextUpdate passes: keep it long
SERVER_ZONE = "appliance"
SERVER_RENEW_DAYS = 30
REASONS = {
    "unspecified": x509.ReasonFlags.unspecified,
    "key_compromise": x509.ReasonFlags.key_compromise,
    "ca_compromise": x509.ReasonFlags.ca_compromise,
    "affiliation_changed": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessation_of_operation": x509.ReasonFlags.cessation_of_operation,
}


class PkiError(MillstreamError):
    """A PKI operation cannot be done (no CA, wrong passphrase, unknown serial, bad name...)."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a certificate names. `serial` is the certificate's serial in lower-case hex."""

    zone: str
    id: str
    serial: str | None = None

    @property
    def uri(self) -> str:
        return identity_uri(self.zone, self.id)

    def __str__(self) -> str:
        return f"{self.zone}/{self.id}"


@dataclass(frozen=True)
class CertRecord:
    """One issued certificate as kept in the inventory."""

    serial: str
    zone: str
    id: str
    kind: str  # "client" | "server"
    not_before: str  # ISO 8601 UTC
    not_after: str
    issued_at: str
    dns: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()
    revoked_at: str | None = None
    revoke_reason: str | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def status(self, now: datetime) -> str:
        if self.revoked:
            return "revoked"
        if _parse_time(self.not_after) < now:
            return "expired"
        if _parse_time(self.not_before) > now:
            return "not_yet_valid"
        return "valid"

    @staticmethod
    def from_json(d: dict[str, Any]) -> CertRecord:
        return CertRecord(**{**d, "dns": tuple(d.get("dns", ())), "ips": tuple(d.get("ips", ()))})


@dataclass(frozen=True)
class IssuedCert:
    record: CertRecord
    cert_path: Path
    key_path: Path
    ca_path: Path


@dataclass(frozen=True)
class ExpiryWarning:
    """Something that stops handshakes when its date passes: a certificate, the CA, or the CRL."""

    what: str  # "certificate" | "ca" | "crl"
    subject: str
    not_after: str
    expired: bool
    serial: str | None = None


def identity_uri(zone: str, id: str) -> str:
    return f"{URN_PREFIX}{zone}:id:{id}"


def check_name(kind: str, value: str) -> str:
    if not NAME_RE.fullmatch(value):
        raise PkiError(f"invalid {kind} {value!r}: use 1-64 characters of A-Z a-z 0-9 . _ - "
                       "starting with a letter or digit")
    return value


def identity_from_cert(cert: x509.Certificate) -> Identity:
    """The Identity a certificate carries in its SAN URI; PkiError if it carries none."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise PkiError("certificate has no subjectAltName (no urn:millstream:zone:<zone>:id:<id>)") from None
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        m = re.fullmatch(r"urn:millstream:zone:([^:]+):id:([^:]+)", uri)
        if m and NAME_RE.fullmatch(m.group(1)) and NAME_RE.fullmatch(m.group(2)):
            return Identity(zone=m.group(1), id=m.group(2), serial=format(cert.serial_number, "x"))
    raise PkiError("certificate has no urn:millstream:zone:<zone>:id:<id> URI")


def identity_from_der(der: bytes) -> Identity:
    return identity_from_cert(x509.load_der_x509_certificate(der))


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(s: str) -> datetime:
    """An inventory time ("2026-11-25T21:03:35Z") as an aware UTC datetime."""
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


_parse_time = parse_time


def _write_file(path: Path, data: bytes, mode: int) -> None:
    """Atomic create-or-replace with the given mode from the first byte on (no umask window)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey, passphrase: bytes | None) -> bytes:
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


def _split_names(names: Sequence[str]) -> tuple[list[str], list[str]]:
    dns: list[str] = []
    ips: list[str] = []
    for n in names:
        try:
            ips.append(str(ipaddress.ip_address(n)))
        except ValueError:
            dns.append(n)
    return dns, ips


class Pki:
    """The site CA in `<data_dir>/pki`. Every mutating call holds an exclusive file lock, so the
    CLI and a running appliance can both issue without losing inventory entries."""

    def __init__(self, data_dir: str | Path, *, clock: Callable[[], datetime] = _utcnow,
                 serials: Callable[[], int] = x509.random_serial_number, pki_dir: str | Path | None = None) -> None:
        self.dir = Path(pki_dir) if pki_dir is not None else Path(data_dir) / "pki"
        self.clock = clock
        self.serials = serials

    # --- paths
    @property
    def ca_cert_path(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def ca_key_path(self) -> Path:
        return self.dir / "ca.key"

    @property
    def crl_path(self) -> Path:
        return self.dir / "crl.pem"

    @property
    def inventory_path(self) -> Path:
        return self.dir / "inventory.json"

    @property
    def server_dir(self) -> Path:
        return self.dir / "server"

    def exists(self) -> bool:
        return self.ca_cert_path.exists() and self.ca_key_path.exists()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # --- CA
    def init(self, *, site: str = "site", passphrase: bytes | None = None, days: int = CA_DAYS) -> x509.Certificate:
        """Create the CA key, certificate, an empty CRL and the inventory. Refuses to overwrite."""
        with self._locked():
            if self.ca_key_path.exists() or self.ca_cert_path.exists():
                raise PkiError(f"a CA already exists in {self.dir}")
            os.chmod(self.dir, 0o700)
            now = self.clock()
            key = ec.generate_private_key(ec.SECP256R1())
            name = x509.Name([
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"Millstream {site}"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"Millstream site CA {site}"),
            ])
            ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
            cert = (
                x509.CertificateBuilder()
                .subject_name(name).issuer_name(name)
                .public_key(key.public_key())
                .serial_number(self.serials())
                .not_valid_before(now - timedelta(minutes=5))
                .not_valid_after(now + timedelta(days=days))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                             key_encipherment=False, data_encipherment=False,
                                             key_agreement=False, key_cert_sign=True, crl_sign=True,
                                             encipher_only=False, decipher_only=False), critical=True)
                .add_extension(ski, critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                               critical=False)
                .sign(key, hashes.SHA256())
            )
            _write_file(self.ca_key_path, _key_pem(key, passphrase), 0o600)
            _write_file(self.ca_cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
            self._save_inventory({"version": 1, "crl_number": 0, "certs": []})
            self._sign_crl(key, cert, CRL_DAYS)
            log.info("ca_created", dir=self.dir, encrypted=bool(passphrase), not_after=_iso(cert.not_valid_after_utc))
            return cert

    def ca_cert(self) -> x509.Certificate:
        try:
            return x509.load_pem_x509_certificate(self.ca_cert_path.read_bytes())
        except FileNotFoundError:
            raise PkiError(f"no site CA in {self.dir}: run `millstream pki init` first") from None

    def ca_key_encrypted(self) -> bool:
        return b"ENCRYPTED" in self._read_ca_key_pem()

    def _read_ca_key_pem(self) -> bytes:
        try:
            return self.ca_key_path.read_bytes()
        except FileNotFoundError:
            raise PkiError(f"no site CA in {self.dir}: run `millstream pki init` first") from None

    def _ca_key(self, passphrase: bytes | None) -> ec.EllipticCurvePrivateKey:
        pem = self._read_ca_key_pem()
        try:
            key = serialization.load_pem_private_key(pem, password=passphrase or None)
        except TypeError:
            raise PkiError("the CA key is encrypted: set MILLSTREAM_CA_PASSPHRASE or enter the passphrase") from None
        except ValueError:
            raise PkiError("cannot decrypt the CA key: wrong passphrase?") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise PkiError("the CA key is not an EC key")
        return key

    # --- inventory
    def _load_inventory(self) -> dict[str, Any]:
        try:
            return json.loads(self.inventory_path.read_text())
        except FileNotFoundError:
            if not self.exists():
                raise PkiError(f"no site CA in {self.dir}: run `millstream pki init` first") from None
            return {"version": 1, "crl_number": 0, "certs": []}

    def _save_inventory(self, inv: dict[str, Any]) -> None:
        _write_file(self.inventory_path, json.dumps(inv, indent=1).encode(), 0o644)

    def list(self) -> list[CertRecord]:
        return [CertRecord.from_json(c) for c in self._load_inventory()["certs"]]

    def find(self, serial: str) -> CertRecord:
        """By full serial or a unique prefix of at least 6 hex digits."""
        s = serial.lower().removeprefix("0x").replace(":", "")
        recs = self.list()
        exact = [r for r in recs if r.serial == s]
        if exact:
            return exact[0]
        pref = [r for r in recs if len(s) >= 6 and r.serial.startswith(s)]
        if len(pref) == 1:
            return pref[0]
        raise PkiError(f"serial {serial!r} is {'ambiguous' if pref else 'not in the inventory'}")

    # --- issue
    def issue(self, zone: str, id: str, *, kind: str = "client", dns: Sequence[str] = (),
              ips: Sequence[str] = (), days: int = 365, not_before: datetime | None = None,
              not_after: datetime | None = None, out_dir: str | Path | None = None,
              passphrase: bytes | None = None) -> IssuedCert:
        """Issue a certificate and key for (zone, id). `not_before`/`not_after` override `days`
        (tests use them to make expired certificates). Writes <id>.crt, <id>.key (0600), ca.crt."""
        check_name("zone", zone)
        check_name("id", id)
        if kind not in ("client", "server"):
            raise PkiError(f"kind must be client or server, not {kind!r}")
        ip_objs = []
        for ip in ips:
            try:
                ip_objs.append(ipaddress.ip_address(ip))
            except ValueError:
                raise PkiError(f"invalid IP address {ip!r}") from None
        for d in dns:
            if not re.fullmatch(r"(\*\.)?[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?", d):
                raise PkiError(f"invalid DNS name {d!r}")
        with self._locked():
            ca_key = self._ca_key(passphrase)
            ca_cert = self.ca_cert()
            now = self.clock()
            nb = not_before or now - timedelta(minutes=5)
            na = not_after or now + timedelta(days=days)
            if na <= nb:
                raise PkiError("not_after must be after not_before")
            key = ec.generate_private_key(ec.SECP256R1())
            san: list[x509.GeneralName] = [x509.UniformResourceIdentifier(identity_uri(zone, id))]
            san += [x509.DNSName(d) for d in dns]
            san += [x509.IPAddress(i) for i in ip_objs]
            eku = ExtendedKeyUsageOID.SERVER_AUTH if kind == "server" else ExtendedKeyUsageOID.CLIENT_AUTH
            ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            site_o = ca_cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
            subject = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, str(site_o[0].value))] if site_o else []
            subject += [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, zone),
                        x509.NameAttribute(NameOID.COMMON_NAME, id)]
            serial = self.serials()
            cert = (
                x509.CertificateBuilder()
                .subject_name(x509.Name(subject)).issuer_name(ca_cert.subject)
                .public_key(key.public_key())
                .serial_number(serial)
                .not_valid_before(nb).not_valid_after(na)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                             key_encipherment=False, data_encipherment=False,
                                             key_agreement=False, key_cert_sign=False, crl_sign=False,
                                             encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
                .add_extension(x509.SubjectAlternativeName(san), critical=False)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                               critical=False)
                .sign(ca_key, hashes.SHA256())
            )
            serial_hex = format(serial, "x")
            cert_pem = cert.public_bytes(serialization.Encoding.PEM)
            out = Path(out_dir) if out_dir else self.dir / "out" / f"{zone}.{id}"
            out.mkdir(parents=True, exist_ok=True, mode=0o700)
            paths = IssuedCert(
                record=CertRecord(serial=serial_hex, zone=zone, id=id, kind=kind, not_before=_iso(nb),
                                  not_after=_iso(na), issued_at=_iso(now), dns=tuple(dns),
                                  ips=tuple(str(i) for i in ip_objs)),
                cert_path=out / f"{id}.crt", key_path=out / f"{id}.key", ca_path=out / "ca.crt")
            _write_file(paths.key_path, _key_pem(key, None), 0o600)
            _write_file(paths.cert_path, cert_pem, 0o644)
            _write_file(paths.ca_path, self.ca_cert_path.read_bytes(), 0o644)
            _write_file(self.dir / "issued" / f"{serial_hex}.crt", cert_pem, 0o644)
            inv = self._load_inventory()
            inv["certs"].append(_record_json(paths.record))
            self._save_inventory(inv)
            log.info("certificate_issued", serial=serial_hex, zone=zone, id=id, kind=kind,
                     not_after=paths.record.not_after)
            return paths

    # --- revoke and CRL
    def revoke(self, serial: str | None = None, *, id: str | None = None, zone: str | None = None,
               reason: str = "unspecified", passphrase: bytes | None = None) -> list[CertRecord]:
        """Revoke one serial, or every unrevoked certificate of an id (optionally in one zone),
        then re-sign the CRL. Returns the records revoked now."""
        if reason not in REASONS:
            raise PkiError(f"unknown reason {reason!r} (known: {', '.join(REASONS)})")
        if (serial is None) == (id is None):
            raise PkiError("give either a serial or an id")
        with self._locked():
            ca_key = self._ca_key(passphrase)
            if serial is not None:
                target = self.find(serial)
                if target.revoked:
                    raise PkiError(f"serial {target.serial} is already revoked")
                serials = {target.serial}
            else:
                serials = {r.serial for r in self.list()
                           if r.id == id and (zone is None or r.zone == zone) and not r.revoked}
                if not serials:
                    raise PkiError(f"no unrevoked certificate for id {id!r}" + (f" in zone {zone!r}" if zone else ""))
            inv = self._load_inventory()
            now = _iso(self.clock())
            done = []
            for c in inv["certs"]:
                if c["serial"] in serials:
                    c["revoked_at"] = now
                    c["revoke_reason"] = reason
                    done.append(CertRecord.from_json(c))
            self._save_inventory(inv)
            self._sign_crl(ca_key, self.ca_cert(), CRL_DAYS)
            for r in done:
                log.info("certificate_revoked", serial=r.serial, zone=r.zone, id=r.id, reason=reason)
            return done

    def refresh_crl(self, *, days: int = CRL_DAYS, passphrase: bytes | None = None) -> x509.CertificateRevocationList:
        """Re-sign the CRL with a fresh nextUpdate (needed before the old one lapses)."""
        with self._locked():
            return self._sign_crl(self._ca_key(passphrase), self.ca_cert(), days)

    def _sign_crl(self, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate,
                  days: int) -> x509.CertificateRevocationList:
        inv = self._load_inventory()
        inv["crl_number"] = int(inv.get("crl_number", 0)) + 1
        now = self.clock()
        ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        b = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(ca_cert.subject)
            .last_update(now - timedelta(minutes=5))
            .next_update(now + timedelta(days=days))
            .add_extension(x509.CRLNumber(inv["crl_number"]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        )
        for c in inv["certs"]:
            if c.get("revoked_at"):
                b = b.add_revoked_certificate(
                    x509.RevokedCertificateBuilder()
                    .serial_number(int(c["serial"], 16))
                    .revocation_date(_parse_time(c["revoked_at"]))
                    .add_extension(x509.CRLReason(REASONS[c.get("revoke_reason") or "unspecified"]), critical=False)
                    .build()
                )
        crl = b.sign(ca_key, hashes.SHA256())
        self._save_inventory(inv)
        _write_file(self.crl_path, crl.public_bytes(serialization.Encoding.PEM), 0o644)
        return crl

    def crl(self) -> x509.CertificateRevocationList:
        return x509.load_pem_x509_crl(self.crl_path.read_bytes())

    # --- warnings
    def expiring(self, within_days: float) -> list[ExpiryWarning]:
        """Unrevoked certificates that expire within the window (not those long expired), plus
        the CA and the CRL when they expire within it or already have."""
        now = self.clock()
        horizon = now + timedelta(days=within_days)
        out: list[ExpiryWarning] = []
        ca = self.ca_cert()
        if ca.not_valid_after_utc <= horizon:
            out.append(ExpiryWarning("ca", ca.subject.rfc4514_string(), _iso(ca.not_valid_after_utc),
                                     ca.not_valid_after_utc <= now, format(ca.serial_number, "x")))
        nu = self.crl().next_update_utc
        if nu is not None and nu <= horizon:
            out.append(ExpiryWarning("crl", str(self.crl_path), _iso(nu), nu <= now))
        for r in self.list():
            na = _parse_time(r.not_after)
            if not r.revoked and now <= na <= horizon:
                out.append(ExpiryWarning("certificate", f"{r.zone}/{r.id}", r.not_after, False, r.serial))
        return out

    # --- the appliance's own listeners
    def ensure_server_cert(self, names: Sequence[str], *, id: str = "millstream", zone: str = SERVER_ZONE,
                           days: int = 825, passphrase: bytes | None = None) -> IssuedCert:
        """The server certificate for the appliance's listeners, in `pki/server/`. Creates the CA
        on first start (unencrypted unless a passphrase is given), and (re)issues the certificate
        when it is missing, revoked, due within 30 days, or lacks one of `names` (DNS or IP)."""
        if not self.exists():
            self.init(passphrase=passphrase)
        want_dns, want_ips = _split_names(names)
        out = self.server_dir
        cert_path, key_path = out / f"{id}.crt", out / f"{id}.key"
        if cert_path.exists() and key_path.exists():
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            serial = format(cert.serial_number, "x")
            rec = next((r for r in self.list() if r.serial == serial), None)
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            have_dns = set(san.get_values_for_type(x509.DNSName))
            have_ips = {str(i) for i in san.get_values_for_type(x509.IPAddress)}
            fresh = cert.not_valid_after_utc > self.clock() + timedelta(days=SERVER_RENEW_DAYS)
            if (rec is not None and not rec.revoked and fresh and set(want_dns) <= have_dns
                    and set(want_ips) <= have_ips and cert.issuer == self.ca_cert().subject):
                return IssuedCert(rec, cert_path, key_path, out / "ca.crt")
            log.info("server_certificate_renewing", serial=serial, names=",".join(names))
        return self.issue(zone, id, kind="server", dns=want_dns, ips=want_ips, days=days,
                          out_dir=out, passphrase=passphrase)


def _record_json(r: CertRecord) -> dict[str, Any]:
    d = asdict(r)
    d["dns"] = list(r.dns)
    d["ips"] = list(r.ips)
    return d


def ensure_server_cert(data_dir: str | Path, names: Sequence[str], **kw: Any) -> IssuedCert:
    return Pki(data_dir).ensure_server_cert(names, **kw)


def expiring(data_dir: str | Path, within_days: float) -> list[ExpiryWarning]:
    return Pki(data_dir).expiring(within_days)


__all__ = ["CertRecord", "ExpiryWarning", "Identity", "IssuedCert", "Pki", "PkiError", "ensure_server_cert",
           "expiring", "identity_from_cert", "identity_from_der", "identity_uri"]
