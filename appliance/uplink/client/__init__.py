"""A small Kafka client for the uplink: sans-IO connection state (`connection`), version
negotiation (`versions`), error handling classes (`errors`), producer-header rewriting of stored
batches (`batches`), back-off (`backoff`) and the trio adapter (`kafka_client`). Only standard
Kafka APIs (ApiVersions, Metadata, CreateTopics, InitProducerId, Produce), so it works against
any Kafka-compatible cluster."""

from appliance.uplink.client.kafka_client import ClusterMeta, KafkaClient, ProduceResult, open_kafka_client

__all__ = ["ClusterMeta", "KafkaClient", "ProduceResult", "open_kafka_client"]
