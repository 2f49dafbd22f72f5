"""Inputs the fuzzers found that once made the broker fail internally, pinned down one by one."""

from __future__ import annotations

import uuid

import pytest

from appliance.kafka.protocol import messages as m
from tests.faults import kafka_wire as wire


@pytest.mark.parametrize("version", [10, 11, 12])
def test_metadata_topic_with_null_name(appliance, version):
    """Found by test_live_fuzz: a null topic name in Metadata v10/v11 built a response that could
    not be encoded (name is nullable only from v12), so the connection died with an internal error."""
    M = m.MetadataRequest
    req = M(topics=[M.MetadataRequestTopic(name=None, topic_id=uuid.uuid4())], allow_auto_topic_creation=True)
    with wire.connect(appliance.kafka_port) as s:
        resp = wire.roundtrip(s, 3, version, req)
        expected = 42 if version < 12 else 100  # INVALID_REQUEST, or UNKNOWN_TOPIC_ID (by id, v12+)
        assert [t.error_code for t in resp.topics] == [expected]
        # The same connection keeps working.
        assert wire.roundtrip(s, 3, version, M(topics=None, allow_auto_topic_creation=False)).topics == []
    assert "connection_failed" not in appliance.log_text()
