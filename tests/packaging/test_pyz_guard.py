"""The pyz's start-up checks, called directly with the values a foreign machine would report."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from tests.packaging.pyz_helpers import ROOT


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "packaging" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


guard = _load("pyz_guard")
boot = _load("pyz_bootstrap")
GOOD = dict(version=(3, 12, 1), implementation="CPython", system="linux", machine="x86_64", glibc=(2, 36))


@pytest.mark.parametrize("version", [(3, 10, 0), (3, 11, 7), (3, 12, 1), (3, 13, 0)])
def test_supported_interpreters_pass(version):
    assert guard.interpreter_problem(**{**GOOD, "version": version}) is None


@pytest.mark.parametrize("change, reason", [
    ({"version": (3, 9, 18)}, "this is CPython 3.9"),
    ({"version": (3, 14, 0)}, "this is CPython 3.14"),
    ({"version": (2, 7, 18)}, "this is CPython 2.7"),
    ({"implementation": "PyPy"}, "this is PyPy 3.12"),
    ({"system": "darwin"}, "this is darwin"),
    ({"machine": "aarch64"}, "this machine is aarch64"),
    ({"glibc": (2, 17)}, "this system has glibc 2.17"),
    ({"glibc": None}, "this system has no glibc"),
])
def test_unsupported_interpreters_are_named(change, reason):
    assert guard.interpreter_problem(**{**GOOD, **change}) == reason


def test_this_machine_passes():
    import platform
    import sys

    assert guard.glibc_version() >= (2, 28)
    assert guard.interpreter_problem(sys.version_info, guard.implementation_name(), sys.platform,
                                     platform.machine(), guard.glibc_version()) is None


def test_cache_root_prefers_millstream_cache(tmp_path):
    assert guard.cache_root({"MILLSTREAM_CACHE": str(tmp_path / "c")}) == str(tmp_path / "c")
    assert guard.cache_root({"XDG_CACHE_HOME": str(tmp_path)}) == str(tmp_path / "millstream")


def test_unwritable_cache_is_refused(tmp_path, monkeypatch):
    # root may write anywhere, so the refusal is injected at os.access
    monkeypatch.setattr(guard.os, "access", lambda path, mode: False)
    assert guard.cache_problem(str(tmp_path)) == f"cache directory {tmp_path} is not writable"


def test_noexec_cache_is_refused(tmp_path, monkeypatch):
    real = os.statvfs(tmp_path)

    class NoExec:
        f_flag = real.f_flag | guard.ST_NOEXEC

    monkeypatch.setattr(guard.os, "statvfs", lambda path: NoExec)
    assert "is on a noexec mount" in guard.cache_problem(str(tmp_path))
    assert guard.ST_NOEXEC == getattr(os, "ST_NOEXEC", guard.ST_NOEXEC)


def test_guard_parses_as_python2():
    """It runs before any version check, so old interpreters must at least parse it."""
    import ast

    source = (ROOT / "packaging" / "pyz_guard.py").read_text()
    tree = ast.parse(source, feature_version=(3, 4))
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.JoinedStr, ast.AnnAssign))]


def test_per_python_dirs_pick_by_tag(tmp_path: Path):
    for name in ("cp310", "cp311-cp312-cp313", "cp312"):
        (tmp_path / "per-python" / name).mkdir(parents=True)
    assert [d.name for d in boot.per_python_dirs(tmp_path, "cp312")] == ["cp311-cp312-cp313", "cp312"]
    assert [d.name for d in boot.per_python_dirs(tmp_path, "cp310")] == ["cp310"]
    assert boot.per_python_dirs(tmp_path, "cp314") == []
