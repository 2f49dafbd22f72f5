"""Produce (key 0), versions 3-11 (magic-2 record batches only).

`stage` runs while the request is read: it validates each batch (magic, CRC-32C, sizes, offset
deltas) and appends it, which assigns offsets and checks idempotent-producer sequences without
yielding. The returned coroutine waits for the WAL fsync, so pipelined requests share one fsync
and acks go out only for durable data. acks=0 gets no response at all.

A bad batch fails only its partition (CORRUPT_MESSAGE, MESSAGE_TOO_LARGE, ...); the other
partitions of the same request are unaffected.

Segmentation (authz.py): a topic the client may not produce to fails with
TOPIC_AUTHORIZATION_FAILED; the allowing conduit's `max_payload` caps each partition's records
(MESSAGE_TOO_LARGE) and its `msgs_per_s` is a quota: records are taken, and the response is
delayed by, and reports in throttle_time_ms, the time that brings the client back to its rate.
"""

from __future__ import annotations

from collections.abc import Awaitable

import trio

from appliance.errors import (
    CorruptRecordError,
    DuplicateBatchError,
    ProducerStateError,
    RecordTooLargeError,
    StorageError,
    StreamNotFoundError,
)
from appliance.kafka import compression, records
from appliance.kafka.api import authz
from appliance.kafka.api.context import RequestContext
from appliance.kafka.compression import CodecUnavailable
from appliance.kafka.error_codes import ErrorCode
from appliance.kafka.protocol import messages as m
from appliance.logs import get_logger
from appliance.storage.ports import AppendResult, PendingAppend

API_KEY = 0
VERSIONS = (3, 11)

log = get_logger("kafka")
R = m.ProduceResponse
TopicR = R.TopicProduceResponse
PartR = TopicR.PartitionProduceResponse


class _Outcome:
    """One partition's result: either an error now, or appends to wait for."""

    __slots__ = ("index", "error", "message", "appends", "records")

    def __init__(self, index: int) -> None:
        self.index = index
        self.records = 0
        self.error = 0
        self.message: str | None = None
        # In batch order: a pending append, or the original result of a duplicate batch.
        self.appends: list[PendingAppend | AppendResult] = []

    def fail(self, code: int, message: str | None) -> _Outcome:
        self.error = int(code)
        self.message = message
        return self


def _append_partition(ctx: RequestContext, topic, index: int, data) -> _Outcome:
    out = _Outcome(index)
    broker = ctx.broker
    stream = topic.streams[index] if topic is not None and 0 <= index < topic.partitions else None
    if stream is None:
        return out.fail(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, None)
    if not data:
        return out.fail(ErrorCode.CORRUPT_MESSAGE, "empty records")
    try:
        batches = records.split_batches(data)
        limit = int(topic.configs.get("max.message.bytes", broker.kafka.message_max_bytes))
        headers = [records.validate_batch(b, limit) for b in batches]
    except CorruptRecordError as e:
        return out.fail(ErrorCode.CORRUPT_MESSAGE, str(e))
    except RecordTooLargeError as e:
        return out.fail(ErrorCode.MESSAGE_TOO_LARGE, str(e))
    for h in headers:
        if h.is_control or h.is_transactional:
            return out.fail(ErrorCode.INVALID_RECORD, "transactional and control batches are not supported")
    if topic.compacted:
        for b in batches:
            try:
                keyless = records.has_keyless_record(b, compression.decompress)
            except CodecUnavailable:
                keyless = False  # cannot look inside here: let it in (compaction keeps such batches whole)
            except (CorruptRecordError, OSError, EOFError, ValueError) as e:
                return out.fail(ErrorCode.CORRUPT_MESSAGE, f"records do not decode: {e}")
            if keyless:
                return out.fail(ErrorCode.INVALID_RECORD, "compacted topic cannot accept a record without a key")
    out.records = sum(h.records_count for h in headers)
    now = broker.now_ms()
    appended = 0
    try:
        for batch in batches:
            try:
                out.appends.append(broker.logs.append(stream, batch, now_ms=now))
                appended += len(batch)
            except DuplicateBatchError as e:
                # An idempotent retry of a batch we already have: answer with its original offsets.
                out.appends.append(AppendResult(e.base_offset, e.last_offset, -1,
                                                broker.logs.offsets(stream).log_start, True))
            except ProducerStateError as e:
                return out.fail(e.kafka_code, str(e))
            except StorageError as e:
                return out.fail(ErrorCode.KAFKA_STORAGE_ERROR, str(e))
            except StreamNotFoundError:
                return out.fail(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, None)
        return out
    finally:
        if appended:  # once per partition, for the live per-topic rates (inventory/meter.py)
            broker.meter.add_in(topic.name, appended, broker.monotonic())


def stage(ctx: RequestContext, req: m.ProduceRequest) -> Awaitable[m.ProduceResponse | None] | m.ProduceResponse | None:
    acks = req.acks
    if req.transactional_id:
        code, msg = ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, "transactions are not supported"
    elif acks not in (0, 1, -1):
        code, msg = ErrorCode.INVALID_REQUIRED_ACKS, f"acks={acks}"
    else:
        code, msg = 0, None
    outcomes: list[tuple[str, list[_Outcome]]] = []
    throttle = 0.0
    for t in req.topic_data:
        topic = ctx.broker.topics.get(t.name)
        d = authz.decision(ctx, "produce", t.name) if not code else None
        cap = d.limits.max_payload if d is not None and d.allowed and d.limits is not None else None
        parts = []
        for p in t.partition_data:
            if code:
                parts.append(_Outcome(p.index).fail(code, msg))
            elif d is not None and not d.allowed:
                parts.append(_Outcome(p.index).fail(authz.TOPIC_DENIED, None))
            elif cap is not None and p.records is not None and len(p.records) > cap:
                parts.append(_Outcome(p.index).fail(ErrorCode.MESSAGE_TOO_LARGE, f"over the conduit's max_payload {cap}"))
            else:
                parts.append(_append_partition(ctx, topic, p.index, p.records))
        rate = d.limits.msgs_per_s if d is not None and d.allowed and d.limits is not None else None
        if rate and ctx.rates is not None:
            count = sum(o.records for o in parts if not o.error)
            throttle = max(throttle, ctx.rates.delay(d.rule_name or "", rate, count, ctx.broker.monotonic()))
        outcomes.append((t.name, parts))
    if acks == 0:
        return None
    return _finish(ctx, outcomes, req.timeout_ms, throttle)


async def _finish(ctx: RequestContext, outcomes: list[tuple[str, list[_Outcome]]], timeout_ms: int,
                  throttle: float = 0.0) -> m.ProduceResponse:
    timeout = max(timeout_ms, 0) / 1000 if timeout_ms > 0 else 30.0
    responses = []
    with trio.move_on_after(timeout) as scope:
        for name, parts in outcomes:
            answers = []
            for o in parts:
                answers.append(await _partition_response(ctx, o))
            responses.append(TopicR(name=name, partition_responses=answers))
    if scope.cancelled_caught:  # the WAL did not confirm in time: the client retries (idempotently)
        responses = [TopicR(name=name, partition_responses=[
            PartR(index=o.index, error_code=ErrorCode.REQUEST_TIMED_OUT, base_offset=-1) for o in parts])
            for name, parts in outcomes]
    if throttle > 0:  # over the conduit's msgs_per_s: hold the answer back (the data is already in)
        await trio.sleep(min(throttle, 30.0))
    return R(responses=responses, throttle_time_ms=min(int(throttle * 1000), 30_000))


async def _partition_response(ctx: RequestContext, o: _Outcome) -> PartR:
    if o.error:
        return PartR(index=o.index, error_code=o.error, base_offset=-1, error_message=o.message)
    results: list[AppendResult] = []
    try:
        for a in o.appends:
            results.append(a if isinstance(a, AppendResult) else await a.durable())
    except StorageError as e:
        log.warning("produce_not_durable", error=str(e))
        return PartR(index=o.index, error_code=ErrorCode.KAFKA_STORAGE_ERROR, base_offset=-1, error_message=str(e))
    first = results[0]
    return PartR(index=o.index, error_code=0, base_offset=first.base_offset,
                 log_append_time_ms=first.log_append_time, log_start_offset=first.log_start)
