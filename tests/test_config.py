from pathlib import Path

import pytest

from appliance.config import HostPort, load_settings
from appliance.errors import ConfigError


def test_defaults_are_the_documented_ones():
    s = load_settings()
    assert s.node.role == "plant"
    assert s.kafka.listen == HostPort("0.0.0.0", 9092)
    assert s.admin.listen == HostPort("127.0.0.1", 9644)


def test_unknown_key_names_file_key_and_problem(tmp_path: Path):
    cfg = tmp_path / "site.toml"
    cfg.write_text('[kafka]\nnum_partitons = 3\n')
    with pytest.raises(ConfigError) as e:
        load_settings(cfg)
    assert str(cfg) in str(e.value)
    assert "kafka.num_partitons" in str(e.value)
    assert "unknown setting" in str(e.value)


def test_invalid_value_is_refused(tmp_path: Path):
    cfg = tmp_path / "site.toml"
    cfg.write_text('[kafka]\nlisten = "localhost:99999"\n')
    with pytest.raises(ConfigError, match=r"kafka\.listen: port 99999"):
        load_settings(cfg)


def test_unknown_section_is_refused(tmp_path: Path):
    cfg = tmp_path / "site.toml"
    cfg.write_text('[kafak]\n')
    with pytest.raises(ConfigError, match="unknown section"):
        load_settings(cfg)


def test_command_line_overrides_file(tmp_path: Path):
    cfg = tmp_path / "site.toml"
    cfg.write_text('[kafka]\nlisten = "127.0.0.1:1000"\nnum_partitions = 3\n[storage]\nwal_segment_size = "8MiB"\n')
    s = load_settings(cfg, {"kafka": {"listen": "127.0.0.1:2000"}})
    assert s.kafka.listen.port == 2000
    assert s.kafka.num_partitions == 3
    assert s.storage.wal_segment_size == 8 << 20
