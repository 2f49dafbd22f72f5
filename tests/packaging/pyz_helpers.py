"""Build the pyz once per test session, find interpreters, and start the pyz for end-to-end tests."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "packaging"))
from pyz_targets import PYTHONS, find_interpreter  # noqa: E402

BUILD_INPUTS = ("appliance", "tui", "packaging", "pyproject.toml")


def source_key() -> str:
    """Hash of everything that goes into the pyz, plus the git revision baked into it."""
    h = hashlib.sha256()
    for name in BUILD_INPUTS:
        base = ROOT / name
        paths = [base] if base.is_file() else sorted(base.rglob("*"))
        for p in paths:
            rel = p.relative_to(ROOT)
            if p.is_dir() or "__pycache__" in rel.parts or p.suffix == ".pyc" or p.name == "_build_info.py":
                continue
            h.update(str(rel).encode() + b"\0" + p.read_bytes() + b"\0")
    from build_pyz import git_revision

    h.update(git_revision().encode())
    return h.hexdigest()[:20]


def build_pyz(out: Path) -> float:
    """Run the real build (`make pyz` does the same); return seconds taken."""
    started = time.monotonic()
    subprocess.run([sys.executable, str(ROOT / "packaging" / "build_pyz.py"), "--quiet", "--out", str(out)],
                   check=True, cwd=ROOT, timeout=600)
    return time.monotonic() - started


def cached_pyz() -> Path:
    """The pyz for the current sources, built at most once per source state (build/pyz-test/KEY/)."""
    cache = ROOT / "build" / "pyz-test"
    key = source_key()
    pyz = cache / key / "millstream.pyz"
    if not pyz.exists():
        if cache.exists():
            for old in cache.iterdir():
                shutil.rmtree(old, ignore_errors=True)
        build_pyz(pyz)
    return pyz


@dataclass(frozen=True)
class Interpreter:
    version: str
    path: str


def supported_interpreters() -> list[Interpreter]:
    """Every CPython 3.10-3.13 on this machine (pyenv or PATH); at least the one running the tests."""
    found = []
    for v in PYTHONS:
        exe = find_interpreter(v)
        if exe:
            found.append(Interpreter(v, exe))
    current = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if current in PYTHONS and all(i.version != current for i in found):
        found.append(Interpreter(current, sys.executable))
    return found


def run_pyz(python: str, pyz: Path, *args: str, cache: Path, timeout: float = 120,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("SHIV_", "PYTHON"))}
    full_env["MILLSTREAM_CACHE"] = str(cache)
    full_env.update(env or {})
    return subprocess.run([python, str(pyz), *args], capture_output=True, text=True, timeout=timeout,
                          env=full_env, cwd=ROOT)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class RunningPyz:
    process: subprocess.Popen[str]
    data_dir: Path
    kafka_port: int
    admin_port: int
    mqtt_port: int

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"


@contextlib.contextmanager
def started_pyz(python: str, pyz: Path, tmp: Path, *extra: str, cache: Path | None = None,
                ready_timeout: float = 60.0, data_dir: Path | None = None) -> Iterator[RunningPyz]:
    """`millstream.pyz run` with a temp data dir and free loopback ports; stopped with SIGTERM on exit.

    `cache` is MILLSTREAM_CACHE (default tmp/cache, i.e. a first run that extracts); `data_dir`
    defaults to tmp/data (pass the same one again to restart over the same data).
    Ready when the appliance wrote `<data-dir>/run/ready.json` (every listener is up) and the Kafka
    port accepts connections. Raises with the process output if it exits or does not become ready
    within ready_timeout.
    """
    data_dir = data_dir or tmp / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    ready_file = data_dir / "run" / "ready.json"
    ready_file.unlink(missing_ok=True)  # left behind only by a killed run
    kafka_port, admin_port, mqtt_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHIV_", "PYTHON"))}
    env["MILLSTREAM_CACHE"] = str(cache or tmp / "cache")
    log = open(tmp / "pyz.log", "a+")
    proc = subprocess.Popen(
        [python, str(pyz), "run", "--data-dir", str(data_dir), "--kafka-listen", f"127.0.0.1:{kafka_port}",
         "--admin-listen", f"127.0.0.1:{admin_port}", "--mqtt-listen", f"127.0.0.1:{mqtt_port}", "--no-fsync",
         *extra],
        stdout=log, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"millstream.pyz exited with {proc.returncode}:\n{log.read()[-4000:]}")
            if ready_file.exists():
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", kafka_port), timeout=0.2):
                    break
            if time.monotonic() > deadline:
                log.seek(0)
                raise RuntimeError(f"millstream.pyz not ready in {ready_timeout}s:\n{log.read()[-4000:]}")
            time.sleep(0.05)
        yield RunningPyz(proc, data_dir, kafka_port, admin_port, mqtt_port)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        log.close()
