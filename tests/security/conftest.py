from pathlib import Path

import pytest

from appliance.security.pki import IssuedCert, Pki


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    p = Pki(tmp_path / "site")
    p.init(site="acme")
    return p


@pytest.fixture
def server_cert(pki: Pki) -> IssuedCert:
    return pki.ensure_server_cert(["localhost", "127.0.0.1"])
