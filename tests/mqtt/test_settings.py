from pathlib import Path

import pytest

from appliance.config import HostPort, load_settings
from appliance.errors import ConfigError
from appliance.mqtt.session import Limits


def test_mqtt_defaults():
    s = load_settings()
    assert s.mqtt.listen == HostPort("0.0.0.0", 1883)
    limits = Limits.from_settings(s.mqtt)
    assert limits.max_packet_size == 1 << 20 and limits.max_qos == 2


def test_mqtt_section_parses_and_validates(tmp_path: Path):
    cfg = tmp_path / "site.toml"
    cfg.write_text('[mqtt]\nlisten = "127.0.0.1:8883"\nmax_packet_size = "256KiB"\nmax_queued_messages = 50\n'
                   'connect_timeout = "5s"\nretain_available = false\n')
    s = load_settings(cfg, {"mqtt": {"max_inflight": 20}})
    limits = Limits.from_settings(s.mqtt)
    assert s.mqtt.listen.port == 8883
    assert (limits.max_packet_size, limits.max_queued_messages, limits.max_inflight) == (256 << 10, 50, 20)
    assert limits.connect_timeout == 5.0 and not limits.retain_available
    cfg.write_text('[mqtt]\nmax_qos = 3\n')
    with pytest.raises(ConfigError, match=r"mqtt\.max_qos"):
        load_settings(cfg)
