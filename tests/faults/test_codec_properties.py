"""Property tests for the Kafka request decoder (codec.decode_request) on hostile bytes.

Whatever the bytes, decode_request either returns a request or raises a ProtocolError (the
family the listener turns into a logged close); it never lets another exception escape and never
allocates in proportion to a length field instead of the frame's real size.
"""

from __future__ import annotations

import random
import struct
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.errors import ProtocolError
from appliance.kafka.protocol import codec
from appliance.kafka.protocol.messages import API_KEYS
from tests.faults.mutate import HOSTILE_INTS, corpus, mutate
from tests.faults.scale import LONG, knob, seed

CORPUS = corpus()
PROPERTY = settings(max_examples=knob("FAULTS_HYPOTHESIS_EXAMPLES"), deadline=None, derandomize=True,
                    database=None, suppress_health_check=[HealthCheck.too_slow])


def decode_or_protocol_error(frame: bytes) -> object | None:
    try:
        return codec.decode_request(frame)
    except ProtocolError:
        return None


def test_corpus_covers_every_request_and_decodes():
    assert len(CORPUS) > 300
    for frame in CORPUS:
        header, _ = codec.decode_request(frame)
        assert header.request_api_key in API_KEYS


@PROPERTY
@given(st.binary(max_size=512))
def test_random_bytes_never_escape_the_protocol_error_family(frame):
    decode_or_protocol_error(frame)


@PROPERTY
@given(api=st.sampled_from(sorted(API_KEYS)), version=st.integers(-2, 20), body=st.binary(max_size=256),
       corr=st.integers(-(2**31), 2**31 - 1))
def test_random_bodies_behind_a_real_header(api, version, body, corr):
    decode_or_protocol_error(struct.pack(">hhi", api, version, corr) + body)


@PROPERTY
@given(index=st.integers(0, len(CORPUS) - 1), rng_seed=st.integers(0, 2**32 - 1))
def test_mutated_valid_requests_never_escape_the_protocol_error_family(index, rng_seed):
    decode_or_protocol_error(mutate(CORPUS[index], random.Random(rng_seed)))


# CI: the values most likely to matter; the long run tries them all.
SWEEP_INTS = HOSTILE_INTS if LONG else (0x7FFFFFFF, -0x80000000, -2, 0x7FFF)


def _every_length_position(frame: bytes):
    """The frame with each int32 / int16 position overwritten by each hostile value."""
    for pos in range(8, len(frame) - 1):
        for value in SWEEP_INTS:
            data = bytearray(frame)
            if pos + 4 <= len(frame) and -0x80000000 <= value <= 0x7FFFFFFF:
                struct.pack_into(">i", data, pos, value)
                yield bytes(data)
                data = bytearray(frame)
            if -0x8000 <= value <= 0x7FFF:
                struct.pack_into(">h", data, pos, value)
                yield bytes(data)


@pytest.mark.parametrize("api_key", sorted(API_KEYS))
def test_length_fields_never_drive_allocation(api_key):
    """Every int16/int32 position of a sample request (newest version of each API key; every
    version in the long run) set to huge and negative values: peak memory stays within a small
    multiple of the frame."""
    entry = API_KEYS[api_key]
    versions = range(entry.min_version, entry.max_version + 1) if LONG else (entry.max_version,)
    frames = [f for f in CORPUS if struct.unpack_from(">hh", f)[0] == api_key and struct.unpack_from(">hh", f)[1] in versions]
    tracemalloc.start()
    try:
        worst = 0
        for frame in frames:
            for hostile in _every_length_position(frame):
                tracemalloc.reset_peak()
                base = tracemalloc.get_traced_memory()[0]
                decode_or_protocol_error(hostile)
                worst = max(worst, tracemalloc.get_traced_memory()[1] - base - 64 * len(hostile))
    finally:
        tracemalloc.stop()
    assert worst < 256 << 10, f"decoding allocated {worst} bytes beyond 64 x the frame size"


@pytest.mark.parametrize("array_length", [2**31 - 1, 2**31 - 2, 1 << 28, 0, -1, -2, -(2**31)])
def test_claimed_array_lengths_are_checked_before_allocating(array_length):
    """A Metadata v1 request claiming `array_length` topics in a 20-byte frame."""
    frame = struct.pack(">hhih", 3, 1, 5, -1) + struct.pack(">i", array_length) + b"\x00\x01x"
    tracemalloc.start()
    try:
        result = decode_or_protocol_error(frame)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 10
    if array_length < 0:  # any negative length is null, as Kafka's own decoder reads it: "all topics"
        assert result is not None and result[1].topics is None
    elif array_length == 0:
        assert result is not None and result[1].topics == []
    else:
        assert result is None


@PROPERTY
@given(index=st.integers(0, len(CORPUS) - 1))
def test_compact_lengths_claiming_gigabytes_are_refused(index):
    """In flexible versions, a 5-byte varint length of ~2^35 placed after the header is refused."""
    frame = CORPUS[index]
    api, version = struct.unpack_from(">hh", frame)
    if not codec.is_flexible(api, version):
        return
    (n,) = struct.unpack_from(">h", frame, 8)
    pos = 10 + max(n, 0) + 1  # header tags end here
    hostile = frame[:pos] + b"\xff\xff\xff\xff\x7f" + frame[pos:]
    decode_or_protocol_error(hostile)


def test_seeded_mutation_sweep():
    """A fixed, seeded sweep (independent of hypothesis) so every CI run covers the same ground."""
    rng = random.Random(seed())
    for _ in range(knob("FAULTS_HYPOTHESIS_EXAMPLES") * 20):
        decode_or_protocol_error(mutate(rng.choice(CORPUS), rng))
