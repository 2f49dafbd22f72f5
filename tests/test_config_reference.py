"""docs/configuration.md and the README's configuration index match appliance/config.py."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from appliance import config

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "packaging"))
import gen_config_reference as gen  # noqa: E402

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def test_configuration_reference_is_current():
    committed = gen.REFERENCE.read_text() if gen.REFERENCE.exists() else ""
    assert committed == gen.reference(), "docs/configuration.md is stale: run make docs"


def test_readme_configuration_index_is_current():
    readme = gen.README.read_text()
    assert readme == gen.with_readme_index(readme), "README.md's configuration index is stale: run make docs"


def test_every_setting_has_a_doc():
    assert gen.undocumented() == [], "give these settings a doc in appliance/config.py, then run make docs"


def test_every_section_and_key_is_in_the_committed_reference():
    text = gen.REFERENCE.read_text()
    for name, cls in [*config.SECTIONS.items(), *config.ARRAY_SECTIONS.items()]:
        heading = f"## [{name}]" if name in config.SECTIONS else f"## [[{name}]]"
        assert heading + "\n" in text, heading
        body = text.split(heading + "\n", 1)[1].split("\n## ", 1)[0]
        for f in dataclasses.fields(cls):
            if "parse" in f.metadata:
                assert f"| `{f.metadata.get('key') or f.name}` |" in body, f"{name}.{f.name}"


def _all_fields():
    for name, cls in [*config.SECTIONS.items(), *config.ARRAY_SECTIONS.items()]:
        for f in dataclasses.fields(cls):
            if "parse" in f.metadata:
                yield pytest.param(f, id=f"{name}.{f.name}")


@pytest.mark.parametrize("f", list(_all_fields()))
def test_default_shown_is_valid_toml_that_parses_to_the_default(f: dataclasses.Field):
    """What the reference shows as the default can be pasted into a site config and means the same."""
    default = gen._default_of(f)
    if default is dataclasses.MISSING:  # shown as *required*
        return
    shown = gen.format_default(default, f.metadata["parse"])
    if shown == "unset":
        assert default is None
        return
    value = tomllib.loads(f"x = {shown}")["x"]
    assert f.metadata["parse"](value) == default, shown


def test_run_flags_are_listed_with_the_setting_they_override():
    flags = dict(gen.command_line_flags())
    assert flags["--kafka-listen"] == "kafka.listen"
    assert flags["--mqtt-listen"] == "mqtt.listen"
    assert flags["--data-dir"] == "node.data_dir"
    assert flags["--no-fsync"] == "storage.fsync = false"


def test_check_names_the_stale_file_when_a_setting_changes(monkeypatch, capsys):
    @dataclasses.dataclass(frozen=True)
    class Extra:
        """A section that is not in the committed reference."""

        answer: int = config.setting(42, config.parse_int(0, 100), "a new key")

    monkeypatch.setitem(config.SECTIONS, "extra", Extra)
    assert gen.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert "docs/configuration.md is stale: run make docs" in err
    assert "README.md is stale: run make docs" in err
    assert "| `answer` | `42` | integer 0..100 | a new key |" in gen.reference()


def test_make_docs_runs_the_generator():
    res = subprocess.run(["make", "-n", "docs"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    assert "packaging/gen_config_reference.py" in res.stdout


# --- `millstream config check FILE [--json]`: the effective settings, defaults marked -------------

SITE = """\
[node]
id = 7
[kafka]
listen = "127.0.0.1:19092"
num_partitions = 3
[uplink]
enabled = true
bootstrap = ["cloud.example.com:9092"]
site = "plant1"
[[uplink.forward]]
prefix = "line1."
priority = 0
[[streams]]
topic = "line1.alarms"
owner = "controls"
retention = "7d"
"""


def _check(capsys, *args: str) -> tuple[int, str, str]:
    from appliance import cli

    code = cli.main(["config", "check", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_config_check_marks_what_the_file_leaves_at_default(tmp_path: Path, capsys):
    cfg = tmp_path / "site.toml"
    cfg.write_text(SITE)
    code, out, _ = _check(capsys, str(cfg))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"{cfg}: OK"
    assert "  id = 7" in lines and "  role = \"plant\"  # default" in lines
    assert "  listen = \"127.0.0.1:19092\"" in lines and "  fetch_max_wait_cap = 30.0  # default" in lines
    assert "  # advertised_host is unset  # default" in lines
    assert ('  forward = [{ prefix = "line1.", cloud = "{site}.{topic}", priority = 0 }]') in lines
    streams = out.split("[[streams]]\n", 1)[1]
    assert '  topic = "line1.alarms"\n' in streams and "  retention = 604800.0\n" in streams
    assert '  placement = "plant_edge"  # default\n' in streams and '  owner = "controls"\n' in streams


def test_config_check_output_is_a_config_with_the_same_settings(tmp_path: Path, capsys):
    """The printed settings, pasted into a file, load to exactly the effective settings."""
    cfg = tmp_path / "site.toml"
    cfg.write_text(SITE)
    _, out, _ = _check(capsys, str(cfg))
    printed = out.split("\n", 1)[1].split("\ninventory:", 1)[0]
    again = tmp_path / "again.toml"
    again.write_text(printed)
    loaded, original = config.load_settings(again), config.load_settings(cfg)
    assert dataclasses.replace(loaded, source="x") == dataclasses.replace(original, source="x")


def test_config_check_json_for_scripts(tmp_path: Path, capsys):
    cfg = tmp_path / "site.toml"
    cfg.write_text(SITE)
    code, out, _ = _check(capsys, str(cfg), "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["ok"] is True and doc["file"] == str(cfg)
    assert doc["settings"]["node"] == {"role": "plant", "id": 7, "data_dir": "var", "shutdown_grace": 10.0}
    assert doc["settings"]["uplink"]["forward"] == [{"prefix": "line1.", "cloud": "{site}.{topic}", "priority": 0}]
    assert "id" not in doc["defaulted"]["node"] and "role" in doc["defaulted"]["node"]
    assert set(doc["settings"]) == set(config.SECTIONS) and set(doc["arrays"]) == set(config.ARRAY_SECTIONS)
    assert doc["arrays"]["streams"][0]["topic"] == "line1.alarms"
    assert all(set(f) == {"severity", "stream", "rule", "message"} for f in doc["findings"])


def test_config_check_json_names_the_bad_key(tmp_path: Path, capsys):
    cfg = tmp_path / "site.toml"
    cfg.write_text('[kafka]\nlisten = 3\n')
    code, out, err = _check(capsys, str(cfg), "--json")
    assert code == 2
    assert json.loads(out) == {"file": str(cfg), "ok": False,
                               "error": {"key": "kafka.listen", "problem": 'expected "HOST:PORT", got 3'}}
    assert err.startswith(f"millstream: config error: {cfg}: kafka.listen:")


def test_config_check_json_fails_on_a_placement_error(tmp_path: Path, capsys):
    cfg = tmp_path / "site.toml"
    cfg.write_text('[[streams]]\ntopic = "interlock"\nlocal_action = true\nplacement = "cloud"\nforwarded = true\n')
    code, out, _ = _check(capsys, str(cfg), "--json")
    assert code == 1
    doc = json.loads(out)
    assert doc["ok"] is False and any(f["severity"] == "error" for f in doc["findings"])
