from __future__ import annotations

from pathlib import Path

import pytest

from tests.packaging.pyz_helpers import cached_pyz


@pytest.fixture(scope="session")
def pyz() -> Path:
    """dist-equivalent millstream.pyz for the current sources (cached across sessions by source hash)."""
    return cached_pyz()


@pytest.fixture(scope="session")
def warm_cache(tmp_path_factory) -> Path:
    """A MILLSTREAM_CACHE shared by tests that do not care about first-run extraction."""
    return tmp_path_factory.mktemp("pyz-cache") / "cache"
