"""Error families shared across layers.

Each area has one base class; an error that must reach a client carries the code the protocol
sends back (a Kafka error code, an MQTT reason code), so adapters never translate by guesswork.
"""

from __future__ import annotations


class MillstreamError(Exception):
    """Base of every error Millstream raises on purpose."""


class ConfigError(MillstreamError):
    """A setting is unknown or invalid. The message names the file, the key and the problem."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        super().__init__(f"{source}: {key}: {problem}")
        self.source = source
        self.key = key
        self.problem = problem


class ProtocolError(MillstreamError):
    """Bytes from a peer that break the protocol; the connection they came on is closed."""


class StorageError(MillstreamError):
    """Storage cannot take or serve data right now. Retriable for the client.

    `kafka_code` is KAFKA_STORAGE_ERROR (56); MQTT adapters map it to quota exceeded (0x97).
    """

    kafka_code = 56
    mqtt_reason = 0x97


class StorageFullError(StorageError):
    """The WAL's disk budget is spent or the disk is full: back-pressure, nothing is dropped."""


class StreamNotFoundError(MillstreamError):
    """The stream id is unknown (deleted, or never created)."""

    kafka_code = 3  # UNKNOWN_TOPIC_OR_PARTITION


class OffsetOutOfRangeError(MillstreamError):
    kafka_code = 1  # OFFSET_OUT_OF_RANGE

    def __init__(self, offset: int, log_start: int, high_watermark: int) -> None:
        super().__init__(f"offset {offset} outside [{log_start}, {high_watermark}]")
        self.offset = offset
        self.log_start = log_start
        self.high_watermark = high_watermark


class CorruptRecordError(MillstreamError):
    """A record batch fails validation (magic, CRC, sizes, offsets)."""

    kafka_code = 2  # CORRUPT_MESSAGE


class RecordTooLargeError(MillstreamError):
    kafka_code = 10  # MESSAGE_TOO_LARGE


class ProducerStateError(MillstreamError):
    """Idempotent producer checks: the subclass carries the Kafka code."""

    kafka_code = 45


class OutOfOrderSequenceError(ProducerStateError):
    kafka_code = 45  # OUT_OF_ORDER_SEQUENCE_NUMBER


class InvalidProducerEpochError(ProducerStateError):
    kafka_code = 47  # INVALID_PRODUCER_EPOCH


class UnknownProducerIdError(ProducerStateError):
    kafka_code = 59  # UNKNOWN_PRODUCER_ID


class DuplicateBatchError(ProducerStateError):
    """The batch was already appended; answer the producer with the original offsets."""

    kafka_code = 0

    def __init__(self, base_offset: int, last_offset: int) -> None:
        super().__init__(f"duplicate of batch at offset {base_offset}")
        self.base_offset = base_offset
        self.last_offset = last_offset


class StartupError(MillstreamError):
    """The appliance cannot start (a port in use, a data dir not writable...): one clear line."""
