"""MQTT 3.1.1 / 5.0 ingestion: a real broker for local subscribers that hands every accepted
message to an ingest sink (later: the Kafka mapping over the WAL).

- `codec/`    sans-IO packets, properties, reason codes, PacketReader (stdlib only)
- `topics`    name/filter rules, wildcard matching, subscription trie, $share groups
- `session`   per-connection state machine (`Connection`) and `SessionState`; pure, time passed in
- `broker`    sessions, routing, retained messages, wills, stats (`Broker`, `MqttStats`)
- `sink`      `IngestSink` protocol: acknowledgements of QoS 1/2 wait for its durability
- `state`     `MqttStateStore` port and `MetaStoreMqttState` (retained + persistent sessions)

The socket side is `appliance/transport/mqtt_server.py` (`serve_mqtt`).
"""
