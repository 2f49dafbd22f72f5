"""The Kafka wire-protocol broker: codecs, API handlers, groups."""
