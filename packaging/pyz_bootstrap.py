"""Start-up module of millstream.pyz (shipped as site-packages/millstream_pyz.py).

shiv has extracted site-packages to $SHIV_ROOT/<pyz name>_<build id>/ and put it on sys.path;
the wheels shared by every CPython are there. This module adds the directories under
per-python/ whose name lists this interpreter's tag (per-python/cp311-cp312-cp313 for 3.12),
marks the extraction as in use, removes extractions of other builds that nothing uses any more,
and hands over to the `millstream` command line.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import site
import sys
import time
from pathlib import Path

PER_PYTHON = "per-python"
IN_USE = ".in-use"
# An extraction younger than this may belong to a process that has not locked it yet.
GRACE_SECONDS = 120
_EXTRACTION = re.compile(r".+_[0-9a-f]{64}")
# shiv extracts into <name>.tmp and renames it; one left behind by a crash is removed after an hour
_ABANDONED = re.compile(r".+_[0-9a-f]{64}\.tmp")
ABANDONED_SECONDS = 3600


def python_tag(version: tuple[int, ...] | None = None) -> str:
    major, minor = (version or sys.version_info)[:2]
    return f"cp{major}{minor}"


def per_python_dirs(site_packages: Path, tag: str) -> list[Path]:
    """The per-python directories that serve `tag`, in a stable order."""
    root = site_packages / PER_PYTHON
    if not root.is_dir():
        return []
    return sorted(d for d in root.iterdir() if d.is_dir() and tag in d.name.split("-"))


def hold_in_use(extraction: Path) -> int | None:
    """Take a shared lock on the extraction for the life of the process (fd left open on purpose)."""
    try:
        fd = os.open(extraction / IN_USE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        fcntl.flock(fd, fcntl.LOCK_SH)
        return fd
    except OSError:
        return None


def remove_unused_extractions(root: Path, current: Path, now: float | None = None) -> list[Path]:
    """Delete other millstream extractions under `root` that no running process holds; best effort."""
    now = time.time() if now is None else now
    removed = []
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return removed
    for path in entries:
        if path.is_dir() and _ABANDONED.fullmatch(path.name):
            try:
                if now - path.stat().st_mtime > ABANDONED_SECONDS and (path / "site-packages" / "millstream_pyz.py").exists():
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(path)
            except OSError:
                pass
            continue
        if path == current or not path.is_dir() or not _EXTRACTION.fullmatch(path.name):
            continue
        if not (path / "site-packages" / "millstream_pyz.py").exists():
            continue  # another shiv app sharing the root: not ours to remove
        try:
            if now - path.stat().st_mtime < GRACE_SECONDS:
                continue
            fd = os.open(path / IN_USE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # a running millstream still uses it
        try:
            shutil.rmtree(path, ignore_errors=True)
            (root / f".{path.name}_lock").unlink(missing_ok=True)
            removed.append(path)
        finally:
            os.close(fd)
    return removed


def activate(site_packages: Path) -> None:
    """Put this interpreter's native wheels on sys.path, or exit with one line if there are none."""
    tag = python_tag()
    dirs = per_python_dirs(site_packages, tag)
    if not dirs and (site_packages / PER_PYTHON).is_dir():
        sys.stderr.write(f"millstream: this pyz carries no native libraries for {tag}\n")
        raise SystemExit(3)
    before = list(sys.path)
    for d in dirs:
        site.addsitedir(str(d))  # handles .pth files; appends, i.e. after the system's site-packages
    added = [p for p in sys.path if p not in before]
    rest = [p for p in sys.path if p not in added]
    # ahead of the pyz's own site-packages (which shiv already put ahead of the system's), so a
    # package installed in the interpreter never shadows the pinned one
    at = rest.index(str(site_packages)) if str(site_packages) in rest else 0
    sys.path[:] = rest[:at] + added + rest[at:]


def main() -> int:
    site_packages = Path(__file__).resolve().parent
    activate(site_packages)
    extraction = site_packages.parent
    os.environ["MILLSTREAM_PYZ"] = os.path.abspath(sys.argv[0])  # for install-service
    hold_in_use(extraction)
    remove_unused_extractions(extraction.parent, extraction)
    from appliance.cli import main as cli_main

    return cli_main()
