"""Admin API write operations: validate a JSON body, call the broker, return a model.

Errors come out as `AdminError` carrying the HTTP status the server sends with `{"error": ...}`.
Topic rules (names, config validation) stay in `appliance.kafka.topics`; this module only maps
its Kafka error codes onto HTTP statuses.
"""

from __future__ import annotations

from typing import Any

from appliance.admin import views
from appliance.admin.models import AlterTopic, CreateTopic, DecodeError, TopicInfo, decode_as
from appliance.errors import MillstreamError, StorageError
from appliance.kafka.topics import TOPIC_ALREADY_EXISTS, UNKNOWN_TOPIC_OR_PARTITION, TopicError
from appliance.logs import get_logger

log = get_logger("admin")


class AdminError(MillstreamError):
    """A request the admin API refuses; `status` is the HTTP status code."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _http_status(e: TopicError) -> int:
    if e.kafka_code == TOPIC_ALREADY_EXISTS:
        return 409
    if e.kafka_code == UNKNOWN_TOPIC_OR_PARTITION:
        return 404
    return 400


def _config_strings(raw: Any) -> Any:
    """Accept numbers for config values (`"retention.ms": 3600000`); Kafka configs are strings."""
    if not isinstance(raw, dict):
        return raw
    return {k: (str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v) for k, v in raw.items()}


def _body(tp: type, body: Any) -> Any:
    if isinstance(body, dict) and "configs" in body:
        body = {**body, "configs": _config_strings(body["configs"])}
    try:
        return decode_as(tp, body)
    except DecodeError as e:
        raise AdminError(400, str(e)) from None


async def create_topic(app: Any, body: Any) -> TopicInfo:
    req: CreateTopic = _body(CreateTopic, body)
    partitions = req.partitions if req.partitions is not None else app.settings.kafka.num_partitions
    try:
        topic = await app.broker.topics.create(req.name, partitions, req.configs)
    except TopicError as e:
        raise AdminError(_http_status(e), str(e)) from None
    except StorageError as e:
        raise AdminError(503, f"storage unavailable: {e}") from None
    log.info("admin_topic_created", topic=req.name, partitions=partitions)
    return views.topic_info(app, topic)


async def delete_topic(app: Any, name: str) -> None:
    try:
        await app.broker.topics.delete(name)
    except TopicError as e:
        raise AdminError(_http_status(e), str(e)) from None
    except StorageError as e:
        raise AdminError(503, f"storage unavailable: {e}") from None
    log.info("admin_topic_deleted", topic=name)


async def alter_topic(app: Any, name: str, body: Any) -> TopicInfo:
    req: AlterTopic = _body(AlterTopic, body)
    if not req.configs and req.partitions is None:
        raise AdminError(400, "nothing to change: give \"configs\" and/or \"partitions\"")
    catalog = app.broker.topics
    if catalog.get(name) is None:
        raise AdminError(404, f"topic {name!r} does not exist")
    changes = [(key, 1 if value is None else 0, value) for key, value in req.configs.items()]
    try:
        # Validate everything before changing anything, so a bad partition count does not
        # leave the configs half-applied.
        if changes:
            await catalog.alter_configs(name, changes, validate_only=True)
        if req.partitions is not None:
            await catalog.add_partitions(name, req.partitions, validate_only=True)
        if changes:
            await catalog.alter_configs(name, changes)
        if req.partitions is not None:
            await catalog.add_partitions(name, req.partitions)
    except TopicError as e:
        raise AdminError(_http_status(e), str(e)) from None
    except StorageError as e:
        raise AdminError(503, f"storage unavailable: {e}") from None
    log.info("admin_topic_altered", topic=name, configs=req.configs or "-", partitions=req.partitions or "-")
    topic = catalog.get(name)
    if topic is None:
        raise AdminError(404, f"topic {name!r} was deleted meanwhile")
    return views.topic_info(app, topic)
