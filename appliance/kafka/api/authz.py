"""Authorization for the Kafka handlers: one call per resource, Kafka's error codes.

Not an API module (no API_KEY). The decision comes from `ctx.authorizer` (the running
`Security`: rules, audit, counters); with no authorizer (no rules file) everything is allowed.
Who asks is `ctx.principal` (the certificate identity on mTLS listeners) in `ctx.zone`
(the listener's zone on plaintext/TLS listeners), arriving on `ctx.listener`.

Operation per API (as Kafka's ACLs map them, in the rules file's vocabulary):

    Produce                              produce        on the topic    TOPIC_AUTHORIZATION_FAILED
    Fetch, ListOffsets, OffsetFetch,
      OffsetCommit (topics)              consume        on the topic    TOPIC_AUTHORIZATION_FAILED
    Metadata, DescribeConfigs (topic)    describe       on the topic    TOPIC_AUTHORIZATION_FAILED
      (listing all topics leaves out those not describable, without auditing them)
    Metadata auto-creation, CreateTopics create_topic   on the topic
    DeleteTopics, DeleteRecords          delete_topic   on the topic
    CreatePartitions, (Incremental)AlterConfigs  alter_topic on the topic
    JoinGroup, SyncGroup, Heartbeat,
      LeaveGroup, DescribeGroups         group_join     on the group    GROUP_AUTHORIZATION_FAILED
    OffsetCommit, OffsetFetch,
      OffsetDelete                       group_commit   on the group    GROUP_AUTHORIZATION_FAILED
    DeleteGroups                         admin          (cluster)       GROUP_AUTHORIZATION_FAILED
    DescribeConfigs (broker), DescribeCluster  admin    (cluster)       CLUSTER_AUTHORIZATION_FAILED

InitProducerId stays open (Kafka lets any principal that may write a topic be idempotent; the
writes themselves are checked); ApiVersions and FindCoordinator too (the group ops are checked).
The conduit's `max_payload` limit applies to produced record batches (MESSAGE_TOO_LARGE).
"""

from __future__ import annotations

from appliance.kafka.api.context import RequestContext
from appliance.kafka.error_codes import ErrorCode

TOPIC_DENIED = int(ErrorCode.TOPIC_AUTHORIZATION_FAILED)
GROUP_DENIED = int(ErrorCode.GROUP_AUTHORIZATION_FAILED)
CLUSTER_DENIED = int(ErrorCode.CLUSTER_AUTHORIZATION_FAILED)


def decision(ctx: RequestContext, op: str, resource: str):
    """The Decision (audited when it denies), or None when authorization is off."""
    if ctx.authorizer is None:
        return None
    return ctx.authorizer.check(ctx.principal, ctx.zone, ctx.listener, op, resource)


def allowed(ctx: RequestContext, op: str, resource: str) -> bool:
    d = decision(ctx, op, resource)
    return d is None or d.allowed


def visible(ctx: RequestContext, op: str, resource: str) -> bool:
    """For filtering listings: decides without recording a denial."""
    return ctx.authorizer is None or ctx.authorizer.peek(ctx.principal, ctx.zone, ctx.listener, op, resource)


def topic_error(ctx: RequestContext, op: str, topic: str | None) -> int:
    """0, or TOPIC_AUTHORIZATION_FAILED. A topic without a name (unknown id) is left to the handler."""
    return 0 if topic is None or allowed(ctx, op, topic) else TOPIC_DENIED


def group_error(ctx: RequestContext, op: str, group: str) -> int:
    return 0 if allowed(ctx, op, group) else GROUP_DENIED


def cluster_error(ctx: RequestContext) -> int:
    return 0 if allowed(ctx, "admin", "") else CLUSTER_DENIED


def max_payload(ctx: RequestContext, op: str, topic: str) -> int | None:
    """The conduit's max_payload for this operation (after an allowing check), or None."""
    d = decision(ctx, op, topic) if ctx.authorizer is not None else None
    return d.limits.max_payload if d is not None and d.allowed and d.limits is not None else None
