// MQTT.js (Node) over WSS against moat, driven by tests/ws_clients.rs.
//
//   node ws_client.mjs pubsub  URL CA_FILE USER PASSWORD   → prints "received TOPIC: PAYLOAD"
//   node ws_client.mjs refused URL CA_FILE USER PASSWORD   → prints "refused CODE"
//
// Exits non-zero on anything else; a hard deadline keeps a hung broker from hanging the test.
import fs from "node:fs";
import mqtt from "mqtt";

const [mode, url, caFile, username, password] = process.argv.slice(2);
const deadline = setTimeout(() => {
  console.log("timeout");
  process.exit(3);
}, 15000);

const client = mqtt.connect(url, {
  ca: fs.readFileSync(caFile),
  username,
  password,
  clientId: `mqttjs-${mode}-${process.pid}`,
  protocolVersion: 4,
  reconnectPeriod: 0,
  connectTimeout: 5000,
});

function done(line, code) {
  console.log(line);
  clearTimeout(deadline);
  client.end(true, () => process.exit(code));
}

client.on("connect", () => {
  if (mode !== "pubsub") return done("connected, expected a refusal", 1);
  client.subscribe("mqttjs/echo", { qos: 1 }, (err) => {
    if (err) return done(`subscribe failed: ${err.message}`, 1);
    client.publish("mqttjs/echo", "hello from MQTT.js", { qos: 1 });
  });
});
client.on("message", (topic, payload) => done(`received ${topic}: ${payload}`, 0));
client.on("error", (err) => {
  if (mode === "refused" && err.code !== undefined) return done(`refused ${err.code}`, 0);
  done(`error: ${err.message}`, 1);
});
