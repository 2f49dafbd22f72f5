"""Sparkplug B decoding and host state, without sockets."""

from __future__ import annotations

import struct

from appliance.ingest.sparkplug.host import SparkplugHost, parse_topic
from appliance.ingest.sparkplug.payload import decode_payload, metric_value
from tests.ingest import spb


def test_values_are_read_by_datatype():
    data = spb.payload([
        spb.metric("i8", -3, "Int8", alias=1), spb.metric("i16", -300, "Int16"), spb.metric("i32", -70000, "Int32"),
        spb.metric("i64", -(2**40), "Int64"), spb.metric("u32", 4_000_000_000, "UInt32"),
        spb.metric("f", 1.5, "Float"), spb.metric("d", 2.25, "Double"), spb.metric("b", True, "Boolean"),
        spb.metric("s", "héllo", "String"), spb.metric("n", None, "Double", null=True),
        spb.metric("arr", struct.pack("<3h", 1, -2, 3), "Int16Array"),
    ], seq=7, ts=1234)
    p = decode_payload(data)
    assert p.seq == 7 and p.timestamp == 1234
    got = {m.name: metric_value(m, m.datatype) for m in p.metrics}
    assert got == {"i8": -3, "i16": -300, "i32": -70000, "i64": -(2**40), "u32": 4_000_000_000, "f": 1.5, "d": 2.25,
                   "b": True, "s": "héllo", "n": None, "arr": [1, -2, 3]}
    assert p.metrics[0].alias == 1


def test_topics():
    t = parse_topic("spBv1.0/g/DDATA/edge/dev")
    assert (t.group, t.message_type, t.edge_node, t.device) == ("g", "DDATA", "edge", "dev")
    assert parse_topic("spBv1.0/STATE/host") is None
    assert parse_topic("spBv1.0/g/NDATA/edge/extra") is None


def _birth(host, seq=0, bd=0, now=0.0):
    t = parse_topic("spBv1.0/g/NBIRTH/e")
    return host.handle(t, spb.payload([spb.metric("bdSeq", bd, "Int64"), spb.metric("T", 1.0, "Double", alias=1)],
                                      seq=seq), now, 1000)


def test_alias_resolution_seq_gap_unknown_alias_and_rate_limited_rebirth():
    host = SparkplugHost(rebirth_min_interval=5.0)
    out = _birth(host)
    assert [r.name for r in out.records] == ["bdSeq", "T"] and not out.commands
    ndata = parse_topic("spBv1.0/g/NDATA/e")
    out = host.handle(ndata, spb.payload([spb.metric(alias=1, value=2.5, dtype=None)], seq=1), 1.0, 2000)
    # no datatype in the data message: taken from the birth certificate (value sent as double)
    assert [(r.name, r.value, r.datatype, r.quality) for r in out.records] == [("T", 2.5, "Double", "GOOD")]
    assert not out.commands
    out = host.handle(ndata, spb.payload([spb.metric(alias=1, value=3.0)], seq=3), 2.0, 3000)
    assert len(out.commands) == 1 and out.commands[0].topic == "spBv1.0/g/NCMD/e"
    assert "seq gap" in out.commands[0].reason
    assert [r.value for r in out.records] == [3.0]  # still emitted
    out = host.handle(ndata, spb.payload([spb.metric(alias=99, value=1.0)], seq=4), 3.0, 4000)
    assert out.commands == [] and out.records == []  # unknown alias, but a rebirth was asked 1 s ago
    out = host.handle(ndata, spb.payload([spb.metric(alias=99, value=1.0)], seq=5), 8.0, 5000)
    assert "unknown alias" in out.commands[0].reason
    cmd = decode_payload(out.commands[0].payload)
    assert [(m.name, metric_value(m, m.datatype)) for m in cmd.metrics] == [("Node Control/Rebirth", True)]


def test_death_marks_offline_and_stale_will_is_ignored():
    host = SparkplugHost()
    _birth(host, bd=1)
    dbirth = parse_topic("spBv1.0/g/DBIRTH/e/d")
    host.handle(dbirth, spb.payload([spb.metric("P", 1.0, "Float", alias=2, quality=192)], seq=1), 0.0, 1000)
    assert host.node_online("g", "e", "d")
    ndeath = parse_topic("spBv1.0/g/NDEATH/e")
    out = host.handle(ndeath, spb.payload([spb.metric("bdSeq", 0, "Int64")]), 0.0, 2000)
    assert out.records == [] and host.node_online("g", "e")  # an older session's will
    out = host.handle(ndeath, spb.payload([spb.metric("bdSeq", 1, "Int64")]), 0.0, 2000)
    assert not host.node_online("g", "e") and not host.node_online("g", "e", "d")
    assert [(r.topic.device, r.name, r.quality, r.value) for r in out.records] == [
        (None, "T", "STALE", None), ("d", "P", "STALE", None)]
    # data after death: the node must be born again
    out = host.handle(parse_topic("spBv1.0/g/NDATA/e"), spb.payload([spb.metric(alias=1, value=1.0)], seq=2),
                      10.0, 3000)
    assert out.records == [] and len(out.commands) == 1


def test_malformed_payload_is_counted_not_raised():
    host = SparkplugHost()
    out = host.handle(parse_topic("spBv1.0/g/NBIRTH/e"), b"\x12\xff\xff", 0.0, 1)
    assert out.error and host.stats.invalid_payloads == 1
