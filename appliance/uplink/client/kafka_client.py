"""The uplink's Kafka client on trio: bootstrap, per-broker connections, the few APIs it needs.

    async with open_kafka_client(["cloud-a:9092", "cloud-b:9092"], client_id="plant1") as client:
        await client.bootstrap()                         # first reachable address + ApiVersions
        md = await client.metadata(["plant1.alarms"])    # leaders per partition, brokers
        pid, epoch = await client.init_producer_id()
        results, throttle_ms = await client.produce(md.leader("plant1.alarms", 0), {("plant1.alarms", 0): batch})

Protocol state lives in the sans-IO `ClientConnection`; this module only moves bytes. Each broker
node gets one connection whose reader task hands responses to waiting requests, so callers may
pipeline (the forwarder keeps up to 5 Produce requests in flight, as an idempotent producer may).
Any transport failure, protocol violation or request timeout closes that connection and fails
every request still waiting on it with ConnectionLostError: their outcome is unknown and the
caller resends (the idempotent sequence numbers make that safe). Reconnection is lazy: the next
request opens a new connection. Back-off between attempts is the caller's policy.

`connect(host, port)` is injectable: `tls.UplinkTls.connect` wraps the TCP stream in TLS there.
A TLS refusal fails requests with TlsError (a ConnectionLostError carrying a short reason).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import trio

from appliance.config import parse_host_port
from appliance.errors import ProtocolError
from appliance.kafka.protocol import messages as m
from appliance.kafka.protocol.codec import MalformedResponseError
from appliance.logs import get_logger
from appliance.uplink.client.connection import ClientConnection, api_rows
from appliance.uplink.client.errors import (
    ConnectionLostError,
    KafkaClientError,
    NoBrokerAvailableError,
    TlsError,
    error_name,
)
from appliance.uplink.client.tls import tls_failure
from appliance.uplink.client.versions import (
    API_VERSIONS,
    CREATE_TOPICS,
    INIT_PRODUCER_ID,
    METADATA,
    PRODUCE,
    negotiate,
)

log = get_logger("uplink")

Connector = Callable[[str, int], Awaitable[trio.abc.Stream]]


async def tcp_connect(host: str, port: int) -> trio.abc.Stream:
    return await trio.open_tcp_stream(host, port)


@dataclass(frozen=True, slots=True)
class PartitionMeta:
    partition: int
    leader: int  # -1 when there is none right now
    error: int


@dataclass(frozen=True, slots=True)
class TopicMeta:
    name: str
    error: int
    partitions: dict[int, PartitionMeta]


@dataclass(frozen=True, slots=True)
class ClusterMeta:
    brokers: dict[int, tuple[str, int]]
    controller: int
    topics: dict[str, TopicMeta]

    def leader(self, topic: str, partition: int) -> int | None:
        t = self.topics.get(topic)
        p = t.partitions.get(partition) if t else None
        return p.leader if p is not None and p.leader >= 0 else None


@dataclass(frozen=True, slots=True)
class ProduceResult:
    error: int
    base_offset: int
    message: str | None = None


class _Slot:
    __slots__ = ("event", "value", "error")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.value: Any = None
        self.error: BaseException | None = None


class BrokerConnection:
    """One open connection: serialised sends, a reader task, per-request waits with a timeout."""

    def __init__(self, stream: trio.abc.Stream, conn: ClientConnection, address: str, node_id: int | None) -> None:
        self.stream = stream
        self.conn = conn
        self.address = address
        self.node_id = node_id
        self.closed = False
        self.close_reason: str | None = None
        self.close_error: KafkaClientError | None = None  # what requests fail with once closed
        self._slots: dict[int, _Slot] = {}
        self._send_lock = trio.Lock()
        self._reader_scope = trio.CancelScope()

    async def reader(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        with self._reader_scope:
            task_status.started()
            try:
                while True:
                    data = await self.stream.receive_some(1 << 18)
                    if not data:
                        raise ConnectionLostError(f"{self.address} closed the connection")
                    for corr, response in self.conn.receive_data(data):
                        slot = self._slots.pop(corr, None)
                        if slot is not None:
                            slot.value = response
                            slot.event.set()
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, ProtocolError,
                    MalformedResponseError, KafkaClientError) as e:
                tls = tls_failure(e)  # e.g. the cloud's alert refusing our certificate
                self.close(str(tls) if tls else f"{type(e).__name__}: {e}", error=tls)
        if not self.closed:
            self.close("reader stopped")
        await trio.aclose_forcefully(self.stream)

    def close(self, reason: str, error: KafkaClientError | None = None) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        err = self.close_error = error or ConnectionLostError(f"connection to {self.address} lost: {reason}")
        for slot in self._slots.values():
            slot.error = err
            slot.event.set()
        self._slots.clear()
        self._reader_scope.cancel()

    def _closed_error(self) -> KafkaClientError:
        if isinstance(self.close_error, TlsError):
            return TlsError(str(self.close_error), self.close_error.reason)
        return ConnectionLostError(f"connection to {self.address} lost: {self.close_reason}")

    async def send(self, api_key: int, message: Any, *, version: int | None = None) -> _Slot:
        """Write one request; the returned slot is filled by the reader. Frames leave in call order."""
        if self.closed:
            raise self._closed_error()
        slot = _Slot()
        async with self._send_lock:
            if self.closed:
                raise self._closed_error()
            # Encode under the lock: the connection expects responses in the order frames go out.
            corr, frame = (self.conn.api_versions_request(version) if api_key == API_VERSIONS
                           else self.conn.request(api_key, message, version))
            self._slots[corr] = slot
            try:
                await self.stream.send_all(frame)
            except BaseException as e:  # a partly written frame leaves the stream unusable
                tls = tls_failure(e)
                self.close(str(tls) if tls else f"send failed: {type(e).__name__}: {e}", error=tls)
                if isinstance(e, (OSError, trio.BrokenResourceError, trio.ClosedResourceError)):
                    if isinstance(self.close_error, TlsError):  # the reader saw the cloud's refusal first
                        raise self._closed_error() from e
                    raise ConnectionLostError(f"connection to {self.address} lost: {e}") from e
                raise
        return slot

    async def wait(self, slot: _Slot, timeout: float) -> Any:
        with trio.move_on_after(timeout):
            await slot.event.wait()
        if not slot.event.is_set():
            self.close(f"no answer within {timeout:g}s")
            raise ConnectionLostError(f"request to {self.address} timed out after {timeout:g}s")
        if slot.error is not None:
            raise slot.error
        return slot.value

    async def request(self, api_key: int, message: Any, timeout: float, *, version: int | None = None) -> Any:
        return await self.wait(await self.send(api_key, message, version=version), timeout)


class PendingProduce:
    """A Produce request on the wire; `result()` waits for its answer."""

    def __init__(self, bc: BrokerConnection, slot: _Slot, keys: list[tuple[str, int]], timeout: float) -> None:
        self.connection = bc
        self._slot = slot
        self._keys = keys
        self._timeout = timeout

    async def result(self) -> tuple[dict[tuple[str, int], ProduceResult], int]:
        """({(topic, partition): result}, throttle ms)."""
        resp = await self.connection.wait(self._slot, self._timeout)
        out: dict[tuple[str, int], ProduceResult] = {}
        for t in resp.responses:
            for p in t.partition_responses:
                out[(t.name, p.index)] = ProduceResult(p.error_code, p.base_offset, p.error_message)
        for key in self._keys:  # a partition missing from the answer is a broker bug: retry it
            out.setdefault(key, ProduceResult(-1, -1, "partition missing from the Produce response"))
        return out, resp.throttle_time_ms


class KafkaClient:
    def __init__(self, bootstrap: Sequence[str], nursery: trio.Nursery, *, client_id: str = "millstream-uplink",
                 connect_timeout: float = 10.0, request_timeout: float = 30.0, connect: Connector = tcp_connect) -> None:
        if not bootstrap:
            raise ValueError("no bootstrap addresses")
        self.bootstrap_addresses = [parse_host_port(a) for a in bootstrap]
        self.client_id = client_id
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self._connect = connect
        self._nursery = nursery
        self._next_bootstrap = 0
        self._any: BrokerConnection | None = None
        self._nodes: dict[int, BrokerConnection] = {}
        self._opening: dict[int, trio.Lock] = {}
        self.brokers: dict[int, tuple[str, int]] = {}

    # --- connections ------------------------------------------------------------------------

    async def _open(self, host: str, port: int, node_id: int | None) -> BrokerConnection:
        address = f"{host}:{port}"
        bc: BrokerConnection | None = None
        try:
            with trio.fail_after(self.connect_timeout):
                stream = await self._connect(host, port)
                bc = BrokerConnection(stream, ClientConnection(self.client_id), address, node_id)
                await self._nursery.start(bc.reader)
                resp = await bc.request(API_VERSIONS, None, self.connect_timeout)
        except trio.TooSlowError:
            if bc is not None:
                bc.close("connect timeout")
            raise ConnectionLostError(f"{address}: no connection within {self.connect_timeout:g}s") from None
        except BaseException:
            if bc is not None:
                bc.close("ApiVersions failed")
            raise
        if resp.error_code not in (0, 35):
            bc.close("ApiVersions refused")
            raise KafkaClientError(f"{address}: ApiVersions failed with {error_name(resp.error_code)}", resp.error_code)
        bc.conn.set_versions(negotiate(api_rows(resp)))
        log.debug("uplink_connected", address=address, node=node_id, versions=bc.conn.versions)
        return bc

    async def bootstrap(self) -> BrokerConnection:
        """A live connection to any broker: the last one used, else the bootstrap addresses in turn."""
        if self._any is not None and not self._any.closed:
            return self._any
        for bc in self._nodes.values():
            if not bc.closed:
                self._any = bc
                return bc
        problems = []
        tls: TlsError | None = None
        n = len(self.bootstrap_addresses)
        for i in range(n):
            hp = self.bootstrap_addresses[(self._next_bootstrap + i) % n]
            try:
                self._any = await self._open(hp.host, hp.port, None)
                self._next_bootstrap = (self._next_bootstrap + i) % n  # stick with what works
                return self._any
            except (OSError, KafkaClientError) as e:
                problems.append(f"{hp}: {e}")
                if isinstance(e, TlsError):
                    tls = e
        self._next_bootstrap = (self._next_bootstrap + 1) % n
        err = NoBrokerAvailableError("no bootstrap address reachable: " + "; ".join(problems))
        err.tls = tls  # the last TLS refusal, for the uplink's status
        raise err

    async def node(self, node_id: int | None) -> BrokerConnection:
        """The connection to a broker node (opened on demand), or any broker for None/unknown ids."""
        if node_id is None or node_id not in self.brokers:
            return await self.bootstrap()
        bc = self._nodes.get(node_id)
        if bc is not None and not bc.closed:
            return bc
        lock = self._opening.setdefault(node_id, trio.Lock())
        async with lock:
            bc = self._nodes.get(node_id)
            if bc is not None and not bc.closed:
                return bc
            host, port = self.brokers[node_id]
            if self._any is not None and not self._any.closed and self._any.address == f"{host}:{port}":
                bc = self._any  # the bootstrap connection already goes to this node
            else:
                try:
                    bc = await self._open(host, port, node_id)
                except OSError as e:
                    raise NoBrokerAvailableError(f"node {node_id} at {host}:{port}: {e}") from e
            self._nodes[node_id] = bc
            return bc

    def close(self, reason: str = "closed") -> None:
        for bc in [self._any, *self._nodes.values()]:
            if bc is not None:
                bc.close(reason)

    @property
    def connected(self) -> bool:
        return any(bc is not None and not bc.closed for bc in [self._any, *self._nodes.values()])

    # --- APIs ------------------------------------------------------------------------------

    async def metadata(self, topics: Sequence[str]) -> ClusterMeta:
        bc = await self.bootstrap()
        req = m.MetadataRequest(topics=[m.MetadataRequest.MetadataRequestTopic(name=t) for t in topics],
                                allow_auto_topic_creation=False)
        resp = await bc.request(METADATA, req, self.request_timeout)
        brokers = {b.node_id: (b.host, b.port) for b in resp.brokers}
        self.brokers = brokers
        out = {}
        for t in resp.topics:
            parts = {p.partition_index: PartitionMeta(p.partition_index, p.leader_id, p.error_code) for p in t.partitions}
            out[t.name] = TopicMeta(t.name, t.error_code, parts)
        return ClusterMeta(brokers, resp.controller_id, out)

    async def init_producer_id(self, producer_id: int = -1, producer_epoch: int = -1) -> tuple[int, int]:
        """A producer id and epoch for an idempotent (non-transactional) producer.

        Given the current id and epoch (InitProducerId v3+), Millstream bumps the epoch; Apache
        Kafka hands out a new id for non-transactional producers. Either way the answer is an
        (id, epoch) pair that has never sent a batch, so every partition accepts sequence 0."""
        bc = await self.bootstrap()
        version = bc.conn.versions.get(INIT_PRODUCER_ID, 0)
        if version < 3:
            producer_id, producer_epoch = -1, -1
        req = m.InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=60000,
                                      producer_id=producer_id, producer_epoch=producer_epoch)
        resp = await bc.request(INIT_PRODUCER_ID, req, self.request_timeout)
        if resp.error_code:
            raise KafkaClientError(f"InitProducerId failed: {error_name(resp.error_code)}", resp.error_code)
        return resp.producer_id, resp.producer_epoch

    async def create_topics(self, topics: Sequence[tuple[str, int, int]], controller: int | None = None,
                            timeout_ms: int = 30000) -> dict[str, tuple[int, str | None]]:
        """Create (name, partitions, replication factor) topics; {name: (error code, message)}."""
        bc = await self.node(controller if controller is not None and controller >= 0 else None)
        req = m.CreateTopicsRequest(topics=[m.CreateTopicsRequest.CreatableTopic(
            name=n, num_partitions=p, replication_factor=rf) for n, p, rf in topics], timeout_ms=timeout_ms)
        resp = await bc.request(CREATE_TOPICS, req, self.request_timeout + timeout_ms / 1000)
        return {t.name: (t.error_code, t.error_message) for t in resp.topics}

    async def send_produce(self, node_id: int | None,
                           batches: Mapping[tuple[str, int], bytes | bytearray | tuple[bytes, ...]],
                           *, timeout_ms: int = 30000) -> PendingProduce:
        """Write a Produce request (acks=all, one record batch per partition: Apache Kafka accepts
        exactly one magic-2 batch per partition and request; a batch may be given as a tuple of
        its parts, joined into the frame). Requests sent to one node are
        answered in the order they were sent."""
        bc = await self.node(node_id)
        by_topic: dict[str, list] = {}
        for (topic, partition), batch in batches.items():
            by_topic.setdefault(topic, []).append(
                m.ProduceRequest.TopicProduceData.PartitionProduceData(index=partition, records=batch))
        req = m.ProduceRequest(transactional_id=None, acks=-1, timeout_ms=timeout_ms, topic_data=[
            m.ProduceRequest.TopicProduceData(name=t, partition_data=parts) for t, parts in by_topic.items()])
        slot = await bc.send(PRODUCE, req)
        return PendingProduce(bc, slot, list(batches), self.request_timeout + timeout_ms / 1000)

    async def produce(self, node_id: int | None, batches: Mapping[tuple[str, int], bytes | bytearray],
                      *, timeout_ms: int = 30000) -> tuple[dict[tuple[str, int], ProduceResult], int]:
        """send_produce + result."""
        return await (await self.send_produce(node_id, batches, timeout_ms=timeout_ms)).result()


@asynccontextmanager
async def open_kafka_client(bootstrap: Sequence[str], **kwargs: Any) -> AsyncIterator[KafkaClient]:
    async with trio.open_nursery() as nursery:
        client = KafkaClient(bootstrap, nursery, **kwargs)
        try:
            yield client
        finally:
            client.close("client closed")
            nursery.cancel_scope.cancel()


__all__ = ["BrokerConnection", "ClusterMeta", "KafkaClient", "PartitionMeta", "PendingProduce", "ProduceResult", "TopicMeta",
           "open_kafka_client", "tcp_connect"]
