"""[log] file rotation: the size and count keys reach the rotating file handler."""

from __future__ import annotations

import logging

import pytest

from appliance import logs
from appliance.config import load_settings
from appliance.errors import ConfigError


@pytest.fixture
def restore_logging():
    """logs.configure() replaces handlers, level and propagation: put back what other tests rely on."""
    root = logging.getLogger("millstream")
    saved = (list(root.handlers), root.level, root.propagate)
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    handlers, root.level, root.propagate = saved
    for h in handlers:
        root.addHandler(h)


def test_rotation_keeps_the_configured_number_of_files(tmp_path, restore_logging):
    log_file = tmp_path / "millstream.log"
    cfg = tmp_path / "site.toml"
    cfg.write_text(f'[log]\nfile = "{log_file}"\nfile_max_size = "2KiB"\nfile_backups = 3\n')
    s = load_settings(cfg).log
    assert (s.file_max_size, s.file_backups) == (2048, 3)
    logs.configure(s.level, s.file, s.file_max_size, s.file_backups)
    log = logs.get_logger("test")
    for i in range(200):  # ~100 bytes a line: about ten rotations' worth
        log.info("rotation_probe", seq=i, pad="x" * 40)
    files = sorted(p.name for p in tmp_path.glob("millstream.log*"))
    assert files == ["millstream.log", "millstream.log.1", "millstream.log.2", "millstream.log.3"]
    assert all(p.stat().st_size <= 2048 for p in tmp_path.glob("millstream.log*"))
    assert "event=rotation_probe seq=199 " in log_file.read_text()  # the newest line is in the live file
    assert "seq=0 " not in "".join(p.read_text() for p in tmp_path.glob("millstream.log*"))


def test_rotation_defaults_and_bad_values(tmp_path):
    s = load_settings().log
    assert (s.file_max_size, s.file_backups) == (20 << 20, 5)
    cfg = tmp_path / "site.toml"
    # 0 would make Python's RotatingFileHandler never rotate: the file would grow without bound
    for bad, key in (("file_backups = 0", "file_backups"), ('file_max_size = "100B"', "file_max_size")):
        cfg.write_text(f"[log]\n{bad}\n")
        with pytest.raises(ConfigError, match=rf"log\.{key}"):
            load_settings(cfg)

