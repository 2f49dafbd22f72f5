"""Build dist/millstream.pyz: one shiv zipapp for CPython 3.10-3.13 on manylinux x86_64.

    python packaging/build_pyz.py [--out dist/millstream.pyz] [--wheels build/pyz-wheels]

1. Read packaging/requirements.lock; for each supported CPython download (or reuse) the locked
   wheels with `pip download --require-hashes`, one directory per version.
2. Stage a site-packages tree: a wheel every version uses (same file, e.g. a pure-Python or an
   abi3 wheel) is unpacked once at the top; the others go to `per-python/<tags>/`, named after
   the versions that share them (`per-python/cp310`, `per-python/cp311-cp312-cp313`, ...).
   Add appliance/, tui/, a generated appliance/_build_info.py and the start-up module
   millstream_pyz.py (from packaging/pyz_bootstrap.py), which puts the right per-python
   directories on sys.path.
3. Let shiv zip it (reproducible timestamps, content-hash build id), then swap the archive's
   __main__.py for packaging/pyz_guard.py (with the build id filled in), which checks the
   interpreter and the cache directory before shiv extracts anything, and starts an already
   extracted build without loading shiv's bootstrap.

The same sources and lock give a byte-identical pyz.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import Marker

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pyz_targets import PYTHONS, platform_args, tag  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "packaging" / "requirements.lock"
SOURCES = ("appliance", "tui")
ENTRY_MODULE = "millstream_pyz"
PER_PYTHON = "per-python"


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    marker: str | None
    hashes: frozenset[str]

    def applies_to(self, python: str) -> bool:
        if not self.marker:
            return True
        return Marker(self.marker).evaluate({"python_version": python, "python_full_version": python + ".0"})

    def requirement(self) -> str:
        return f"{self.name}=={self.version} " + " ".join(f"--hash=sha256:{h}" for h in sorted(self.hashes))


def parse_lock(text: str) -> list[Pin]:
    """The pins of a requirements file written by lock.py (name==version [; marker] --hash=...)."""
    pins = []
    logical = text.replace("\\\n", " ")
    for line in logical.splitlines():
        line = line.split("#", 1)[0].strip() if line.lstrip().startswith("#") else line.strip()
        if not line:
            continue
        words = line.split()
        hashes = frozenset(w.split(":", 1)[1] for w in words if w.startswith("--hash=sha256:"))
        spec = " ".join(w for w in words if not w.startswith("--hash="))
        req, _, marker = spec.partition(";")
        name, sep, version = req.strip().partition("==")
        if not sep or not hashes:
            raise SystemExit(f"{LOCK.name}: every line needs name==version and --hash=sha256:...; got {line!r}")
        pins.append(Pin(name.strip(), version.strip(), marker.strip() or None, hashes))
    return pins


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def locked_wheels(python: str, pins: list[Pin], wheel_dir: Path) -> list[Path]:
    """The wheel files CPython `python` needs, downloading any that are missing, each hash-checked."""
    wanted = [p for p in pins if p.applies_to(python)]

    def pick() -> tuple[list[Path], list[Pin]]:
        by_hash = {sha256_of(f): f for f in sorted(wheel_dir.glob("*.whl"))} if wheel_dir.exists() else {}
        found, missing = [], []
        for pin in wanted:
            hits = sorted({by_hash[h] for h in pin.hashes if h in by_hash})
            if len(hits) > 1:
                raise SystemExit(f"{wheel_dir}: several locked wheels for {pin.name} {python}: {hits}")
            (found.append(hits[0]) if hits else missing.append(pin))
        return found, missing

    found, missing = pick()
    if missing:
        wheel_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as req:
            req.write("\n".join(p.requirement() for p in missing) + "\n")
        try:
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes",
                            "--dest", str(wheel_dir), *platform_args(python), "-r", req.name], check=True)
        finally:
            os.unlink(req.name)
        found, missing = pick()
        if missing:
            raise SystemExit(f"pip download did not fetch {[p.name for p in missing]} for CPython {python}")
    return found


def unpack_wheel(wheel: Path, dest: Path) -> None:
    """Install a wheel by unzipping it (purelib/platlib of .data merged, scripts and headers dropped)."""
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            parts = info.filename.split("/")
            if ".." in parts or info.filename.startswith("/"):
                raise SystemExit(f"{wheel.name}: unsafe path {info.filename!r}")
            if parts[0].endswith(".data"):
                if len(parts) < 3 or parts[1] not in ("purelib", "platlib"):
                    continue
                parts = parts[2:]
            target = dest.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zf.read(info))


def git_revision() -> str:
    """Short commit id, with "-dirty" when tracked files differ from it; "unknown" outside git."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               check=True, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + ("-dirty" if dirty else "")


def copy_sources(stage: Path) -> None:
    for pkg in SOURCES:
        for path in sorted((ROOT / pkg).rglob("*")):
            rel = path.relative_to(ROOT)
            if (path.is_dir() or "__pycache__" in rel.parts or path.suffix in (".pyc", ".pyo")
                    or any(p.startswith(".") for p in rel.parts) or rel.as_posix() == "appliance/_build_info.py"):
                continue
            target = stage / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)


def stage_site_packages(stage: Path, wheels: dict[str, list[Path]], revision: str) -> dict[str, list[str]]:
    """Lay out site-packages; return {directory: [wheel names]} for the report."""
    users: dict[Path, list[str]] = {}
    for python, files in wheels.items():
        for f in files:
            users.setdefault(f, []).append(python)
    # the same file name under two per-version download dirs is the same wheel: merge them
    by_name: dict[str, tuple[Path, set[str]]] = {}
    for f, pythons in users.items():
        first, seen = by_name.setdefault(f.name, (f, set()))
        seen.update(pythons)
    layout: dict[str, list[str]] = {}
    for name, (f, pythons) in sorted(by_name.items()):
        if pythons == set(wheels):
            rel = "."
        else:
            rel = f"{PER_PYTHON}/" + "-".join(tag(p) for p in sorted(pythons, key=PYTHONS.index))
        unpack_wheel(f, stage / rel)
        layout.setdefault(rel, []).append(name)
    copy_sources(stage)
    (stage / "appliance" / "_build_info.py").write_text(
        '"""Written by packaging/build_pyz.py into the pyz; never committed."""\n\n'
        f"REVISION = {revision!r}\nPYZ = True\n")
    shutil.copyfile(ROOT / "packaging" / "pyz_bootstrap.py", stage / f"{ENTRY_MODULE}.py")
    # modes vary with umask and wheel tooling; fix them so the archive is the same everywhere
    for path in stage.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return layout


def swap_main(pyz: Path, main_source: bytes) -> None:
    """Replace shiv's __main__.py with the guard, keeping every other entry byte for byte."""
    raw = pyz.read_bytes()
    shebang = raw[: raw.index(b"\n") + 1]
    tmp = pyz.with_suffix(".tmp")
    with zipfile.ZipFile(pyz) as zin, open(tmp, "wb") as fd:
        fd.write(shebang)
        with zipfile.ZipFile(fd, "w") as zout:
            for info in zin.infolist():
                zout.writestr(info, main_source if info.filename == "__main__.py" else zin.read(info))
    tmp.chmod(0o755)
    tmp.replace(pyz)


def guard_source(pyz: Path) -> bytes:
    """packaging/pyz_guard.py with shiv's build id filled in (for its warm-start path)."""
    with zipfile.ZipFile(pyz) as zf:
        build_id = json.loads(zf.read("environment.json"))["build_id"]
    source = (ROOT / "packaging" / "pyz_guard.py").read_text()
    marker = "\nBUILD_ID = None\n"
    if source.count(marker) != 1:
        raise SystemExit("pyz_guard.py: expected one `BUILD_ID = None` line to fill in")
    return source.replace(marker, f"\nBUILD_ID = {build_id!r}\n").encode()


def build(out: Path, wheel_root: Path, pythons: tuple[str, ...] = PYTHONS) -> dict[str, list[str]]:
    pins = parse_lock(LOCK.read_text())
    wheels = {py: locked_wheels(py, pins, wheel_root / tag(py)) for py in pythons}
    with tempfile.TemporaryDirectory(prefix="millstream-pyz-") as tmp:
        stage = Path(tmp) / "site-packages"
        layout = stage_site_packages(stage, wheels, git_revision())
        out.parent.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
        subprocess.run([sys.executable, "-m", "shiv", "--site-packages", str(stage), "--reproducible",
                        "--compressed", "--python", "/usr/bin/env python3",
                        "--entry-point", f"{ENTRY_MODULE}:main", "--output-file", str(out)],
                       check=True, env=env, stdout=subprocess.DEVNULL)
    swap_main(out, guard_source(out))
    return layout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "dist" / "millstream.pyz")
    ap.add_argument("--wheels", type=Path, default=ROOT / "build" / "pyz-wheels", help="wheel download cache")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    started = time.monotonic()
    layout = build(args.out, args.wheels)
    if not args.quiet:
        for where, names in sorted(layout.items()):
            print(f"  {where}: {len(names)} wheels")
        size = args.out.stat().st_size
        print(f"built {args.out} ({size / 1e6:.1f} MB, sha256 {sha256_of(args.out)[:16]}) "
              f"in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
