// kafkajs client scenario driven by tests/e2e/test_kafkajs.py.
// Usage: node kafkajs_roundtrip.js BOOTSTRAP TOPIC COUNT
// Creates TOPIC (3 partitions), produces COUNT keyed records (half gzip-compressed), then runs a
// consumer group of two members until every record is consumed; prints one JSON summary line.
const { Kafka, CompressionTypes, logLevel } = require("kafkajs");

async function main() {
  const [bootstrap, topic, countArg] = process.argv.slice(2);
  const count = parseInt(countArg, 10);
  const kafka = new Kafka({ clientId: "kafkajs-test", brokers: [bootstrap], logLevel: logLevel.WARN });
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 3, replicationFactor: 1 }], waitForLeaders: true });
  await admin.disconnect();

  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const produced = [];
  for (let i = 0; i < count; i += 10) {
    const messages = [];
    for (let j = i; j < Math.min(i + 10, count); j++) messages.push({ key: `asset-${j % 24}`, value: `v-${j}` });
    const meta = await producer.send({ topic, acks: -1, messages,
      compression: i % 20 === 0 ? CompressionTypes.GZIP : CompressionTypes.None });
    for (const m of messages) produced.push(m.value);
  }
  await producer.disconnect();

  const consumed = [];
  const perMember = { a: new Set(), b: new Set() };
  const members = ["a", "b"].map((name) => {
    const c = kafka.consumer({ groupId: "kafkajs-group", sessionTimeout: 10000, heartbeatInterval: 500 });
    c.name = name;
    return c;
  });
  let resolveDone;
  const done = new Promise((r) => (resolveDone = r));
  for (const c of members) {
    await c.connect();
    await c.subscribe({ topic, fromBeginning: true });
    await c.run({
      eachMessage: async ({ partition, message }) => {
        perMember[c.name].add(partition);
        consumed.push({ partition, offset: Number(message.offset), key: message.key.toString(), value: message.value.toString() });
        if (consumed.length >= count) resolveDone();
      },
    });
  }
  const timer = setTimeout(() => resolveDone(), 40000);
  await done;
  clearTimeout(timer);
  for (const c of members) await c.disconnect();
  console.log(JSON.stringify({ produced: produced.length, consumed,
    members: { a: [...perMember.a], b: [...perMember.b] } }));
}

main().catch((e) => { console.error(e); process.exit(1); });
