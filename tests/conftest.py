import pytest

from tests.harness import ApplianceProcess


@pytest.fixture
def appliance(tmp_path):
    """A running plant appliance on loopback ports with its own data dir."""
    app = ApplianceProcess(tmp_path / "data").start()
    yield app
    app.kill()


@pytest.fixture
def make_appliance(tmp_path):
    started: list[ApplianceProcess] = []

    def make(name: str = "data", **kwargs) -> ApplianceProcess:
        app = ApplianceProcess(tmp_path / name, **kwargs)
        started.append(app)
        return app

    yield make
    for app in started:
        app.kill()
