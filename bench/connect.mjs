// TLS + CONNECT → CONNACK with a real client (MQTT.js, as installed in tests/js), in closed
// loops: each loop connects, waits for the CONNACK, sends DISCONNECT and closes, then starts
// again. Prints one JSON line shaped like moat-bench's reports (per_s, lat_p50_us, ...), so
// bench/compare.sh reads both the same way.
//
// node bench/connect.mjs --port P --ca FILE [--servername localhost] [--concurrency 4]
//                        [--duration 5] [--label ROW] [--v5] [--username U --password P]
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "..", "tests", "js", "package.json"));
const mqtt = require("mqtt");

const args = { servername: "localhost", concurrency: 4, duration: 5, label: "", v5: false };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const key = argv[i].replace(/^--/, "");
  if (key === "v5") args.v5 = true;
  else args[key] = argv[++i];
}
if (!args.port || !args.ca) {
  console.error("usage: node bench/connect.mjs --port P --ca FILE [--concurrency N] [--duration S]");
  process.exit(2);
}
const ca = readFileSync(args.ca);
const durationMs = Number(args.duration) * 1000;
const latencies = [];
const errors = new Map();
let n = 0;

function once(id) {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    const client = mqtt.connect(`mqtts://127.0.0.1:${args.port}`, {
      ca,
      servername: args.servername,
      clientId: id,
      protocolVersion: args.v5 ? 5 : 4,
      keepalive: 60,
      reconnectPeriod: 0,
      connectTimeout: 10_000,
      ...(args.username ? { username: args.username, password: args.password ?? "" } : {}),
    });
    let done = false;
    const finish = (err) => {
      if (done) return;
      done = true;
      if (err) {
        const key = String(err.code ?? err.message ?? err).slice(0, 60);
        errors.set(key, (errors.get(key) ?? 0) + 1);
        client.end(true, () => resolve());
      } else {
        latencies.push(Number(process.hrtime.bigint() - t0) / 1000);
        client.end(false, () => resolve());
      }
    };
    client.once("connect", () => finish());
    client.once("error", (e) => finish(e));
    client.once("close", () => finish(new Error("closed before CONNACK")));
  });
}

const start = Date.now();
async function loop(l) {
  while (Date.now() - start < durationMs) {
    await once(`bench-js-${process.pid}-${l}-${n++}`);
  }
}
await Promise.all(Array.from({ length: Number(args.concurrency) }, (_, l) => loop(l)));
const elapsed = (Date.now() - start) / 1000;

latencies.sort((a, b) => a - b);
const q = (p) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] : 0);
const report = {
  label: args.label,
  mode: "connect_js",
  concurrency: Number(args.concurrency),
  ok: latencies.length,
  failed: [...errors.values()].reduce((a, b) => a + b, 0),
  errors: Object.fromEntries(errors),
  per_s: latencies.length / elapsed,
  lat_p50_us: q(0.5),
  lat_p99_us: q(0.99),
};
console.log(JSON.stringify(report));
