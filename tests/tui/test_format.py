"""The console's renderings of record fields and its replay-start parser."""

from __future__ import annotations

import pytest

from tui.format import format_timestamp_ms, parse_replay, render_field

NOW = 1_795_000_000_000  # 2026-11-18 11:06:40 UTC


def test_fields_render_as_text_json_or_hex():
    v = b'{"temp": 71.5,\n "unit": "degC"}'
    assert render_field(v, "text") == '{"temp": 71.5,\\n "unit": "degC"}'
    assert render_field(v, "json") == '{"temp":71.5,"unit":"degC"}'
    assert render_field(v, "json", pretty=True) == '{\n  "temp": 71.5,\n  "unit": "degC"\n}'
    assert render_field(b"press-1", "json") == "press-1"
    assert render_field(b"press-1", "json", mark=True) == "(not JSON) press-1"
    assert render_field(b"\x00ok\xff", "text") == "\\x00ok\\xff"
    assert render_field(b"\x00ok", "hex") == "00 6f 6b"
    assert render_field(b"AB", "hex", pretty=True) == "000000  41 42" + " " * 42 + "  AB"
    assert render_field(None, "text") == "null"


def test_replay_start_from_offset_relative_time_or_utc_date():
    assert parse_replay("1200", NOW) == ("offset", 1200)
    assert parse_replay("-15m", NOW) == ("timestamp", NOW - 15 * 60_000)
    assert parse_replay("2h ago", NOW) == ("timestamp", NOW - 2 * 3_600_000)
    assert parse_replay("2026-11-18 11:06:40", NOW) == ("timestamp", NOW)
    assert parse_replay("2026-11-18T12:06:40+01:00", NOW) == ("timestamp", NOW)
    assert parse_replay("2026-11-18T11:06:40Z", NOW) == ("timestamp", NOW)
    with pytest.raises(ValueError, match="offset"):
        parse_replay("yesterday-ish", NOW)
    assert format_timestamp_ms(NOW + 5) == "2026-11-18 11:06:40.005"
