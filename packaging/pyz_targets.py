"""What millstream.pyz targets, shared by lock.py, build_pyz.py and the packaging tests."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess

# CPython versions the one pyz carries native wheels for (keep in step with pyz_guard.SUPPORTED).
PYTHONS = ("3.10", "3.11", "3.12", "3.13")
# Oldest glibc the pyz supports: manylinux_2_28 and every older manylinux tag are acceptable.
GLIBC = (2, 28)


def tag(version: str) -> str:
    """"3.12" -> "cp312"."""
    return "cp" + version.replace(".", "")


def manylinux_platforms() -> list[str]:
    """Every platform tag a glibc-2.28 x86_64 machine accepts, newest first.

    Listed explicitly because older pips do not expand `manylinux_2_28` to the older tags.
    """
    plats = [f"manylinux_2_{minor}_x86_64" for minor in range(GLIBC[1], 4, -1)]
    return plats + ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]


def platform_args(version: str) -> list[str]:
    """pip flags that select wheels for CPython `version` on manylinux x86_64 (no sdists)."""
    args = ["--only-binary=:all:", "--implementation", "cp", "--python-version", version, "--abi", tag(version)]
    for plat in manylinux_platforms():
        args += ["--platform", plat]
    return args


def find_interpreter(version: str) -> str | None:
    """A CPython `version` executable from pyenv or PATH, or None."""
    roots = [os.environ.get("PYENV_ROOT", ""), os.path.expanduser("~/.pyenv"), "/root/.pyenv"]
    candidates: list[str] = []
    for root in dict.fromkeys(r for r in roots if r):
        candidates += sorted(glob.glob(os.path.join(root, "versions", f"{version}.*", "bin", f"python{version}")))
    on_path = shutil.which(f"python{version}")
    if on_path:
        candidates.append(on_path)
    for exe in candidates:
        try:
            out = subprocess.run([exe, "-c", "import sys,platform;print(platform.python_implementation(),"
                                  "'%d.%d' % sys.version_info[:2])"],
                                 capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0 and out.stdout.split() == ["CPython", version]:
            return exe
    return None
