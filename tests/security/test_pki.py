"""The site CA: files and modes, identity encoding, revocation and the CRL, server certificates."""

from __future__ import annotations

import stat
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509

from appliance.security.pki import Identity, Pki, PkiError, identity_from_cert


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_init_creates_ca_crl_inventory_with_private_modes(pki: Pki):
    assert mode(pki.ca_key_path) == 0o600
    assert mode(pki.dir) == 0o700
    ca = pki.ca_cert()
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert "Millstream site CA acme" in ca.subject.rfc4514_string()
    assert list(pki.crl()) == []
    assert pki.crl().is_signature_valid(ca.public_key())
    assert pki.list() == []
    assert not pki.ca_key_encrypted()


def test_init_refuses_to_overwrite(pki: Pki):
    with pytest.raises(PkiError, match="already exists"):
        pki.init()


def test_commands_without_a_ca_say_how_to_create_one(tmp_path: Path):
    with pytest.raises(PkiError, match="pki init"):
        Pki(tmp_path).issue("cell", "x")


def test_issue_writes_cert_key_ca_and_records_it(pki: Pki):
    issued = pki.issue("cell-line3", "press-7", dns=["press-7.local"], ips=["10.1.3.7"], days=30)
    assert mode(issued.key_path) == 0o600
    assert issued.ca_path.read_bytes() == pki.ca_cert_path.read_bytes()
    cert = x509.load_pem_x509_certificate(issued.cert_path.read_bytes())
    assert identity_from_cert(cert) == Identity("cell-line3", "press-7", issued.record.serial)
    assert cert.subject.rfc4514_string() == "CN=press-7,OU=cell-line3,O=Millstream acme"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["urn:millstream:zone:cell-line3:id:press-7"]
    assert san.get_values_for_type(x509.DNSName) == ["press-7.local"]
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 30
    [rec] = pki.list()
    assert rec == issued.record and rec.kind == "client" and rec.ips == ("10.1.3.7",)
    assert rec.status(datetime.now(timezone.utc)) == "valid"
    assert issued.cert_path.parent == pki.dir / "out" / "cell-line3.press-7"


def test_openssl_verifies_issued_certificates_in_strict_mode(pki: Pki):
    issued = pki.issue("cell", "dev1")
    out = subprocess.run(["openssl", "verify", "-x509_strict", "-purpose", "sslclient", "-CAfile",
                          str(pki.ca_cert_path), "-crl_check", "-CRLfile", str(pki.crl_path),
                          str(issued.cert_path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("zone,id", [("cell/1", "x"), ("cell", "a:b"), ("cell", "+"), ("", "x"), ("cell", "-x")])
def test_unsafe_names_are_refused(pki: Pki, zone: str, id: str):
    with pytest.raises(PkiError, match="invalid"):
        pki.issue(zone, id)


def test_revoke_by_serial_puts_it_in_the_crl(pki: Pki):
    a = pki.issue("cell", "dev1")
    b = pki.issue("cell", "dev2")
    [r] = pki.revoke(a.record.serial[:8], reason="key_compromise")  # a unique prefix is enough
    assert r.serial == a.record.serial and r.revoked
    crl = pki.crl()
    entry = crl.get_revoked_certificate_by_serial_number(int(a.record.serial, 16))
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.key_compromise
    assert crl.get_revoked_certificate_by_serial_number(int(b.record.serial, 16)) is None
    assert crl.is_signature_valid(pki.ca_cert().public_key())
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 2
    statuses = {x.id: x.status(datetime.now(timezone.utc)) for x in pki.list()}
    assert statuses == {"dev1": "revoked", "dev2": "valid"}
    with pytest.raises(PkiError, match="already revoked"):
        pki.revoke(a.record.serial)


def test_revoke_by_id_revokes_every_certificate_of_that_id(pki: Pki):
    first = pki.issue("cell", "dev1")
    second = pki.issue("cell", "dev1")  # renewal
    pki.issue("other", "dev1")
    done = pki.revoke(id="dev1", zone="cell")
    assert {r.serial for r in done} == {first.record.serial, second.record.serial}
    assert len(list(pki.crl())) == 2
    with pytest.raises(PkiError, match="no unrevoked certificate"):
        pki.revoke(id="dev1", zone="cell")
    with pytest.raises(PkiError, match="not in the inventory"):
        pki.revoke("deadbeefdeadbeef")


def test_encrypted_ca_key_needs_the_passphrase(tmp_path: Path):
    p = Pki(tmp_path)
    p.init(passphrase=b"correct horse")
    assert p.ca_key_encrypted() and mode(p.ca_key_path) == 0o600
    with pytest.raises(PkiError, match="encrypted"):
        p.issue("cell", "x")
    with pytest.raises(PkiError, match="wrong passphrase"):
        p.issue("cell", "x", passphrase=b"wrong")
    assert p.issue("cell", "x", passphrase=b"correct horse").record.id == "x"


def test_explicit_validity_for_expired_certificates(pki: Pki):
    now = datetime.now(timezone.utc)
    old = pki.issue("cell", "old", not_before=now - timedelta(days=10), not_after=now - timedelta(days=1))
    assert old.record.status(now) == "expired"
    with pytest.raises(PkiError, match="after"):
        pki.issue("cell", "bad", not_before=now, not_after=now - timedelta(seconds=1))


def test_expiring_warns_about_certificates_and_the_crl(tmp_path: Path):
    t0 = datetime(2030, 1, 1, tzinfo=timezone.utc)
    clock = {"now": t0}
    p = Pki(tmp_path, clock=lambda: clock["now"])
    p.init(days=3650)
    soon = p.issue("cell", "soon", days=10)
    p.issue("cell", "later", days=200)
    gone = p.issue("cell", "gone", days=5)
    p.revoke(gone.record.serial)
    warnings = p.expiring(30)
    assert [(w.what, w.subject, w.serial) for w in warnings] == [("certificate", "cell/soon", soon.record.serial)]
    clock["now"] = t0 + timedelta(days=350)
    whats = {w.what: w for w in p.expiring(30)}
    assert whats["crl"].expired is False  # the CRL's next update (365 days) is close
    clock["now"] = t0 + timedelta(days=400)
    assert {w.what: w for w in p.expiring(30)}["crl"].expired is True
    p.refresh_crl()
    assert "crl" not in {w.what for w in p.expiring(30)}


def test_ensure_server_cert_issues_once_and_reissues_when_names_change(tmp_path: Path):
    p = Pki(tmp_path)
    first = p.ensure_server_cert(["broker.plant1", "127.0.0.1"])  # also creates the CA on first start
    assert p.exists() and first.record.kind == "server" and first.record.zone == "appliance"
    assert mode(first.key_path) == 0o600
    again = p.ensure_server_cert(["127.0.0.1"])
    assert again.record.serial == first.record.serial
    wider = p.ensure_server_cert(["broker.plant1", "127.0.0.1", "10.0.0.5"])
    assert wider.record.serial != first.record.serial
    assert wider.record.ips == ("127.0.0.1", "10.0.0.5") and wider.record.dns == ("broker.plant1",)
    p.revoke(wider.record.serial)
    assert p.ensure_server_cert(["127.0.0.1"]).record.serial != wider.record.serial


def test_identity_from_cert_without_urn_is_refused(pki: Pki, tmp_path: Path):
    for extra in ([], ["-addext", "subjectAltName=DNS:plain.local,URI:urn:millstream:zone:a/b:id:x"]):
        other = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                                "-nodes", "-keyout", str(tmp_path / "k"), "-subj", "/CN=plain", "-days", "1",
                                *extra], capture_output=True, check=True).stdout
        with pytest.raises(PkiError, match="urn:millstream"):
            identity_from_cert(x509.load_pem_x509_certificate(other))
