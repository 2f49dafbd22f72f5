import pytest

from tests.storage.objects.moto_server import MotoServer, set_credentials


@pytest.fixture(scope="session")
def moto():
    """One moto_server for the session; each test uses its own bucket (MotoServer.url())."""
    set_credentials()
    server = MotoServer().start()
    yield server
    server.stop()
