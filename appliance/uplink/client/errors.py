"""Errors of the uplink's Kafka client, and how each Kafka error code is handled.

The client never guesses: every Produce partition error falls in exactly one `Handling` class,
chosen the way Apache Kafka's own producer treats the code (its `RetriableException` family),
with one deliberate difference: nothing is ever dropped. A code Kafka calls fatal stalls the
affected partition (reported as its last error, retried after a long back-off, because an
operator may fix the cloud side, e.g. raise `max.message.bytes`), instead of skipping records.
"""

from __future__ import annotations

from enum import Enum

from appliance.errors import MillstreamError
from appliance.kafka.error_codes import ErrorCode


class KafkaClientError(MillstreamError):
    """A request could not be completed. `code` is the Kafka error code when the broker sent one."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class ConnectionLostError(KafkaClientError):
    """The connection closed, failed or timed out: the outcome of in-flight requests is unknown."""


class NoBrokerAvailableError(ConnectionLostError):
    """None of the bootstrap addresses (or the node asked for) accepted a connection. `tls` is
    the last TLS refusal among the attempts, if any."""

    tls: TlsError | None = None


class TlsError(ConnectionLostError):
    """The TLS handshake failed or the cloud refused our certificate. `reason` is short and stable
    (security/tls.py: "peer_refused:certificate_revoked", "unknown_ca", "hostname_mismatch", ...)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class UnsupportedApiError(KafkaClientError):
    """The broker offers no version of an API this client needs in a range it implements."""


class Handling(Enum):
    SUCCESS = "success"  # NONE, and DUPLICATE_SEQUENCE_NUMBER (the broker already has the batch)
    RETRY = "retry"  # transient: resend the same batches (same producer id/epoch/sequence)
    REFRESH_METADATA = "refresh_metadata"  # leadership moved or topic not known yet: re-read metadata, then resend
    SEQUENCE_LOST = "sequence_lost"  # the broker's view of our sequence differs: restart under a fresh epoch
    FENCED = "fenced"  # our producer epoch is stale: take a new producer id
    FATAL = "fatal"  # needs an operator: stall the partition, report, retry slowly


_RETRY = {
    ErrorCode.CORRUPT_MESSAGE,  # a bit flip in transit: Kafka treats it as retriable too
    ErrorCode.REQUEST_TIMED_OUT,
    ErrorCode.NETWORK_EXCEPTION,
    ErrorCode.NOT_ENOUGH_REPLICAS,
    ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
    ErrorCode.KAFKA_STORAGE_ERROR,
    ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
    ErrorCode.COORDINATOR_NOT_AVAILABLE,
    ErrorCode.NOT_COORDINATOR,
    ErrorCode.CONCURRENT_TRANSACTIONS,
    ErrorCode.UNKNOWN_SERVER_ERROR,  # Kafka says fatal; a store-and-forward uplink retries it
}
_REFRESH = {
    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
    ErrorCode.LEADER_NOT_AVAILABLE,
    ErrorCode.NOT_LEADER_OR_FOLLOWER,
    ErrorCode.BROKER_NOT_AVAILABLE,
    ErrorCode.REPLICA_NOT_AVAILABLE,
}
FENCED_CODES = {ErrorCode.INVALID_PRODUCER_EPOCH, ErrorCode.PRODUCER_FENCED}
OFFSET_OUT_OF_RANGE = ErrorCode.OFFSET_OUT_OF_RANGE


def classify(code: int) -> Handling:
    if code in (ErrorCode.NONE, ErrorCode.DUPLICATE_SEQUENCE_NUMBER):
        return Handling.SUCCESS
    if code in (ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER, ErrorCode.UNKNOWN_PRODUCER_ID):
        return Handling.SEQUENCE_LOST
    if code in FENCED_CODES:
        return Handling.FENCED
    if code in _REFRESH:
        return Handling.REFRESH_METADATA
    if code in _RETRY:
        return Handling.RETRY
    return Handling.FATAL  # MESSAGE_TOO_LARGE, INVALID_RECORD, authorization, ...


def error_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"ERROR_{code}"
