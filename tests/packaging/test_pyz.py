"""The built millstream.pyz under every CPython 3.10-3.13 on this machine, and on the wrong ones."""

from __future__ import annotations

import fcntl
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from tests.packaging.pyz_helpers import ROOT, build_pyz, run_pyz, started_pyz, supported_interpreters

INTERPRETERS = supported_interpreters()
GUARD_LINE = "millstream: needs CPython 3.10-3.13 on x86_64 Linux with glibc >= 2.28;"


def test_at_least_one_supported_interpreter_is_tested():
    assert INTERPRETERS, "no CPython 3.10-3.13 found; the pyz would go untested"
    print("testing the pyz under:", ", ".join(f"{i.version} ({i.path})" for i in INTERPRETERS))


@pytest.mark.parametrize("interp", INTERPRETERS, ids=[i.version for i in INTERPRETERS])
def test_version_names_revision_python_and_native_crc(pyz, interp, warm_cache):
    from build_pyz import git_revision

    res = run_pyz(interp.path, pyz, "version", cache=warm_cache)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert out.startswith("millstream 0."), out
    assert f"revision: {git_revision()}" in out
    assert f"python: {interp.version}." in out
    assert "crc32c: c" in out
    assert "msgpack: c" in out
    assert "cryptography: OpenSSL" in out
    assert f"pyz: {pyz}" in out
    assert res.stderr == ""


@pytest.mark.parametrize("interp", INTERPRETERS, ids=[i.version for i in INTERPRETERS])
def test_help_gives_the_full_command_tree(pyz, interp, warm_cache):
    res = run_pyz(interp.path, pyz, "--help", cache=warm_cache)
    assert res.returncode == 0, res.stderr
    tree = res.stdout.split("command tree:", 1)[1]
    for line in ("run ", "version ", "config ", "  check ", "install-service "):
        assert f"\n  {line}" in tree, tree


@pytest.mark.parametrize("interp", INTERPRETERS, ids=[i.version for i in INTERPRETERS])
def test_each_python_loads_its_own_native_wheels(pyz, interp, warm_cache):
    """The C extensions imported come from the per-python directory for this version, not another's."""
    code = ("import google_crc32c, msgpack._cmsgpack as m, cryptography.hazmat.bindings._rust as r;"
            "print(google_crc32c.__file__); print(m.__file__); print(r.__file__)")
    assert run_pyz(interp.path, pyz, "version", cache=warm_cache).returncode == 0
    (extraction,) = [p for p in warm_cache.iterdir() if p.is_dir()]
    sp = extraction / "site-packages"
    # what the pyz's start-up module does, then import the C extensions and say where they came from
    probe = (f"import sys; sys.path.insert(0, {str(sp)!r}); import millstream_pyz;"
             f"millstream_pyz.activate(millstream_pyz.Path({str(sp)!r})); " + code)
    res = subprocess.run([interp.path, "-I", "-c", probe], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    tag = "cp" + interp.version.replace(".", "")
    for path in res.stdout.split():
        assert path.startswith(str(sp)), path
        if "per-python" in path:
            assert tag in Path(path).relative_to(sp / "per-python").parts[0].split("-"), path


def test_per_version_wheels_sit_side_by_side(pyz):
    with zipfile.ZipFile(pyz) as zf:
        names = zf.namelist()
    dirs = {n.split("/")[2] for n in names if n.startswith("site-packages/per-python/")}
    covered = {t for d in dirs for t in d.split("-")}
    assert covered == {"cp310", "cp311", "cp312", "cp313"}, dirs
    # pure-Python wheels every version shares are stored once, at the top
    assert sum(n.startswith("site-packages/trio/__init__.py") for n in names) == 1
    assert sum(n.endswith("/google_crc32c/__init__.py") for n in names) == 4
    assert "site-packages/appliance/_build_info.py" in names
    assert "site-packages/millstream_pyz.py" in names


@pytest.mark.parametrize("version", ["2.7", "3.6", "3.8", "3.9"])
def test_too_old_interpreter_gets_one_line(pyz, version, tmp_path):
    exes = sorted(glob.glob(f"/root/.pyenv/versions/{version}.*/bin/python{version}"))
    if not exes:
        pytest.skip(f"no CPython {version} on this machine (the patched-version test covers the message)")
    res = run_pyz(exes[0], pyz, "version", cache=tmp_path / "cache")
    assert res.returncode == 3
    assert res.stdout == ""
    assert res.stderr.startswith(GUARD_LINE) and res.stderr.count("\n") == 1, res.stderr
    assert f"this is CPython {version}" in res.stderr
    assert not (tmp_path / "cache").exists(), "nothing may be extracted for a refused interpreter"


@pytest.mark.parametrize("fake", ["(3, 9, 18, 'final', 0)", "(3, 14, 0, 'final', 0)"])
def test_patched_version_tuple_gets_one_line(pyz, fake, tmp_path):
    """The real pyz run with sys.version_info patched: what a 3.9 or 3.14 user would see."""
    code = (f"import sys, runpy; sys.version_info = {fake}; sys.argv = [{str(pyz)!r}, 'version'];"
            f"runpy.run_path({str(pyz)!r}, run_name='__main__')")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIV_")}
    env["MILLSTREAM_CACHE"] = str(tmp_path / "cache")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert res.returncode == 3
    major, minor = eval(fake)[:2]
    assert res.stderr == f"{GUARD_LINE} this is CPython {major}.{minor} ({sys.executable})\n"


def test_cache_on_a_file_gets_one_line(pyz, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    res = run_pyz(sys.executable, pyz, "version", cache=blocker / "cache")
    assert res.returncode == 3
    assert res.stderr.startswith(f"millstream: cannot create cache directory {blocker / 'cache'}")
    assert res.stderr.rstrip().endswith("set MILLSTREAM_CACHE to a writable directory on an exec mount")
    assert res.stderr.count("\n") == 1


def test_noexec_cache_gets_one_line(pyz, tmp_path):
    mnt = tmp_path / "noexec"
    mnt.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "noexec,size=64m", "tmpfs", str(mnt)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a noexec tmpfs here ({mounted.stderr.strip()}); test_pyz_guard covers it")
    try:
        res = run_pyz(sys.executable, pyz, "version", cache=mnt / "cache")
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    assert res.returncode == 3
    assert res.stderr.startswith(f"millstream: cache directory {mnt / 'cache'} is on a noexec mount")
    assert res.stderr.count("\n") == 1


def _fake_extraction(cache: Path, build_id: str, *, ours: bool = True, age: float = 3600) -> Path:
    d = cache / f"millstream.pyz_{build_id}"
    (d / "site-packages").mkdir(parents=True)
    (d / "site-packages" / ("millstream_pyz.py" if ours else "other_app.py")).write_text("")
    past = time.time() - age
    os.utime(d, (past, past))
    return d


def test_old_extractions_are_removed_unless_in_use(pyz, tmp_path):
    cache = tmp_path / "cache"
    unused = _fake_extraction(cache, "a" * 64)
    in_use = _fake_extraction(cache, "b" * 64)
    foreign = _fake_extraction(cache, "c" * 64, ours=False)
    fresh = _fake_extraction(cache, "d" * 64, age=0)  # may be starting right now
    crashed = _fake_extraction(cache, "e" * 64 + ".tmp", age=7200)  # an extraction that died half-way
    busy = _fake_extraction(cache, "f" * 64 + ".tmp", age=60)  # an extraction in progress
    (cache / f".{unused.name}_lock").write_text("")
    fd = os.open(in_use / ".in-use", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_SH)  # as a running millstream of that build holds it
    try:
        res = run_pyz(sys.executable, pyz, "version", cache=cache)
    finally:
        os.close(fd)
    assert res.returncode == 0, res.stderr
    assert not unused.exists() and not (cache / f".{unused.name}_lock").exists()
    assert in_use.exists() and foreign.exists() and fresh.exists() and busy.exists()
    assert not crashed.exists()
    current = [p for p in cache.iterdir() if p.is_dir() and p not in (in_use, foreign, fresh, busy)]
    assert len(current) == 1 and (current[0] / "site-packages" / "millstream_pyz.py").exists()


def _git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True, timeout=60).stdout


def test_clean_checkout_builds_the_same_pyz(pyz, tmp_path):
    """The build from a fresh clone of HEAD is byte-identical to the one every other test runs:
    reproducible, and nothing it needs is left out of git. With uncommitted changes the two cannot
    match (content or the "-dirty" revision); then the work tree is built again to check reproducibility."""
    from tests.packaging.pyz_helpers import BUILD_INPUTS

    clone = tmp_path / "clone"
    _git("clone", "--quiet", "--shared", "--no-checkout", str(ROOT), str(clone))
    _git("checkout", "--quiet", "--detach", _git("rev-parse", "HEAD").strip(), cwd=clone)
    built = tmp_path / "clean" / "millstream.pyz"
    subprocess.run([sys.executable, str(clone / "packaging" / "build_pyz.py"), "--quiet", "--out", str(built),
                    "--wheels", str(ROOT / "build" / "pyz-wheels")], check=True, cwd=clone, timeout=600)
    res = run_pyz(sys.executable, built, "version", cache=tmp_path / "cache")
    assert res.returncode == 0, res.stderr
    assert f"revision: {_git('rev-parse', '--short=12', 'HEAD').strip()}\n" in res.stdout
    # the revision baked in says "-dirty" for any changed tracked file; untracked files in the inputs go in too
    uncommitted = (_git("status", "--porcelain", "--untracked-files=no") + _git("status", "--porcelain", "--",
                                                                              *BUILD_INPUTS)).strip()
    if not uncommitted:
        assert hashlib.sha256(built.read_bytes()).hexdigest() == hashlib.sha256(pyz.read_bytes()).hexdigest()
        return
    print(f"build inputs have uncommitted changes, so the clean build differs; rebuilding the work tree:\n{uncommitted}")
    again = tmp_path / "again" / "millstream.pyz"
    build_pyz(again)
    assert hashlib.sha256(again.read_bytes()).hexdigest() == hashlib.sha256(pyz.read_bytes()).hexdigest()


def test_cli_import_stays_light():
    """`millstream version` and `--help` must not pay for trio, textual, minio or the TUI at import."""
    code = ("import sys, appliance.cli; heavy = sorted(m for m in ('trio', 'textual', 'minio', 'cryptography',"
            " 'tui', 'msgpack') if m in sys.modules); print(','.join(heavy))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == ""


def test_warm_start_skips_shiv_bootstrap(pyz, tmp_path):
    """First run: shiv extracts. Later runs: the guard starts the extraction itself, shiv unloaded."""
    cache = tmp_path / "cache"
    first = run_pyz(sys.executable, pyz, "version", cache=cache, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert first.returncode == 0 and "| _bootstrap\n" in first.stderr
    again = run_pyz(sys.executable, pyz, "version", cache=cache, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert again.returncode == 0 and "crc32c: c" in again.stdout
    assert "_bootstrap" not in again.stderr and "| millstream_pyz\n" in again.stderr
    forced = run_pyz(sys.executable, pyz, "version", cache=cache,
                     env={"PYTHONPROFILEIMPORTTIME": "1", "SHIV_FORCE_EXTRACT": "1"})
    assert forced.returncode == 0 and "| _bootstrap\n" in forced.stderr  # shiv's overrides still work


ROUND_TRIP_TOOLS = ("kcat", "mosquitto_pub", "mosquitto_sub")


def _kcat_produce(app, topic: str, lines: str) -> None:
    res = subprocess.run(["kcat", "-P", "-b", app.bootstrap, "-t", topic, "-K:"], input=lines,
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr


def _kcat_consume(app, topic: str) -> list[str]:
    res = subprocess.run(["kcat", "-C", "-b", app.bootstrap, "-t", topic, "-o", "beginning", "-e", "-q",
                          "-f", "%k=%s@%o\n"], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    return res.stdout.splitlines()


def _mqtt_pub(app, topic: str, message: str, *args: str) -> None:
    res = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(app.mqtt_port), "-V", "mqttv5", "-q", "1",
                          "-t", topic, "-m", message, *args], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr


class _MqttSub:
    """mosquitto_sub in the background, read line by line (so a test knows when it is subscribed)."""

    def __init__(self, app, topic_filter: str, count: int) -> None:
        self.proc = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(app.mqtt_port), "-V", "mqttv5",
                                      "-q", "1", "-t", topic_filter, "-v", "-C", str(count), "-W", "20"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().rstrip("\n")  # -W 20 bounds the wait

    def finish(self) -> None:
        assert self.proc.wait(timeout=30) == 0, self.proc.stderr.read() if self.proc.stderr else ""


MAPPING = """\
[[mqtt_map]]
filter = "uns/acme/{site}/{line}/{machine}/#"
kafka_topic = "{site}.{line}.telemetry"
key = "{machine}/{#}"
"""


@pytest.mark.skipif(any(shutil.which(t) is None for t in ROUND_TRIP_TOOLS),
                    reason="kcat or mosquitto clients not installed (make system-deps)")
@pytest.mark.parametrize("interp", INTERPRETERS, ids=[i.version for i in INTERPRETERS])
def test_pyz_round_trip_kcat_and_mosquitto(pyz, interp, warm_cache, tmp_path):
    """What issue 8 asks of the built pyz, under each Python: kcat produces and mosquitto_pub
    publishes into one Kafka topic (through an [[mqtt_map]] rule), kcat reads both back, and
    mosquitto_sub gets the MQTT messages from the appliance's own broker (live and retained);
    SIGTERM drains with exit 0; after a restart over the same data dir all of it is still there.
    """
    site = tmp_path / "site.toml"
    site.write_text(MAPPING)
    data_dir = tmp_path / "data"
    expected = ["press-7=71.5@0", "press-8=69.0@1", "press-7/state=running@2", "press-7/temp=71.5@3"]
    with started_pyz(interp.path, pyz, tmp_path, "--config", str(site), cache=warm_cache, data_dir=data_dir) as app:
        _kcat_produce(app, "plant1.line1.telemetry", "press-7:71.5\npress-8:69.0\n")
        _mqtt_pub(app, "uns/acme/plant1/line1/press-7/state", "running", "-r")
        sub = _MqttSub(app, "uns/acme/plant1/#", 2)
        assert sub.line() == "uns/acme/plant1/line1/press-7/state running"  # retained: now it is subscribed
        _mqtt_pub(app, "uns/acme/plant1/line1/press-7/temp", "71.5")
        assert sub.line() == "uns/acme/plant1/line1/press-7/temp 71.5"  # live
        sub.finish()
        # QoS 1 PUBACK is sent once the record is in the WAL, so kcat sees it straight away
        assert _kcat_consume(app, "plant1.line1.telemetry") == expected
        app.process.terminate()
        assert app.process.wait(timeout=30) == 0
    with started_pyz(interp.path, pyz, tmp_path, "--config", str(site), cache=warm_cache, data_dir=data_dir) as app:
        assert _kcat_consume(app, "plant1.line1.telemetry") == expected
        sub = _MqttSub(app, "uns/acme/plant1/#", 1)
        assert sub.line() == "uns/acme/plant1/line1/press-7/state running"
        sub.finish()
        app.process.terminate()
        assert app.process.wait(timeout=30) == 0
