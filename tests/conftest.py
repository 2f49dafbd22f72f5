import inspect

import pytest

from tests.hang_watchdog import run_with_watchdog
from tests.harness import ApplianceProcess


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    for item in items:  # every trio test runs under the hang watchdog (tests/hang_watchdog.py)
        if inspect.iscoroutinefunction(getattr(item, "obj", None)):
            item.add_marker(pytest.mark.trio(run=run_with_watchdog))


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
