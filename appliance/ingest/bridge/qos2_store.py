"""The bridge's inbound QoS 2 state: packet ids acknowledged with PUBREC upstream, not yet released.

Kept across reconnects by the runner and persisted through the MetaStore port (namespace
`mqtt.bridge`, key `<upstream host:port>/<client id>`, value `{"v": 1, "awaiting_rel": [ids]}`),
so a PUBLISH the upstream resends (DUP=1) after a dropped connection or a restart is
acknowledged again instead of being ingested twice.

Order of writes for one QoS 2 message: its Kafka records are durable in the WAL, then its id is
in this set, then the set is durable (`save`), and only then is PUBREC sent. A crash before PUBREC
therefore never loses the message (the upstream resends it), and a resend after PUBREC is always
recognised. The one window left is a kill -9 after the WAL fsync and before the set's own write
completes (about one fsync): the upstream resends a message already stored, which is then
ingested a second time. Releases (PUBREL) are saved lazily with the next write: a stale id is
harmless because only a PUBLISH with DUP=1 is treated as a resend (see client.py).
"""

from __future__ import annotations

from appliance.storage.ports import MetaStore

NAMESPACE = "mqtt.bridge"
FORMAT_VERSION = 1


class InboundQos2Store:
    def __init__(self, meta: MetaStore | None, key: str) -> None:
        self.meta = meta
        self.key = key
        self.awaiting: set[int] = set()  # shared with BridgeClient (awaiting_rel)
        self._saved: frozenset[int] = frozenset()
        self.saves = 0

    def load(self) -> None:
        if self.meta is None:
            return
        rec = self.meta.get(NAMESPACE, self.key)
        if isinstance(rec, dict) and rec.get("v") == FORMAT_VERSION:
            self.awaiting.clear()
            self.awaiting.update(int(i) for i in rec.get("awaiting_rel", ()))
            self._saved = frozenset(self.awaiting)

    @property
    def dirty(self) -> bool:
        return self._saved != self.awaiting

    async def save(self) -> None:
        """Make the current set durable (a no-op when unchanged). Raises StorageError."""
        if self.meta is None or not self.dirty:
            return
        snapshot = frozenset(self.awaiting)
        await self.meta.put(NAMESPACE, self.key, {"v": FORMAT_VERSION, "awaiting_rel": sorted(snapshot)})
        self._saved = snapshot
        self.saves += 1
