// bench/idle-mqttjs.js: moat-bench's `idle` mode with MQTT.js as the client, a cross-check from
// a client moat did not write (bench/slope.sh, CLIENT=mqttjs). Opens CONNS TLS sessions (32
// set-ups at once), prints `ready N sessions up, F failed`, holds them HOLD seconds (MQTT.js
// sends its own PINGREQs at the keep alive), then prints one JSON line like moat-bench's.
// usage: NODE_PATH=dir/with/node_modules node idle-mqttjs.js PORT CA CONNS KEEPALIVE HOLD
'use strict';
const fs = require('fs');
const mqtt = require('mqtt');
const [port, caFile, conns, keepalive, hold] = process.argv.slice(2);
const ca = fs.readFileSync(caFile);
const n = Number(conns);
let up = 0, failed = 0, dropped = 0, next = 0, done = 0;
const clients = [];
const errors = {};
// Every wait is bounded: the whole run ends after this many seconds whatever happens.
setTimeout(() => process.exit(2), (600 + Number(hold)) * 1000).unref();
function openOne() {
  if (next >= n) return;
  const i = next++;
  const c = mqtt.connect({
    protocol: 'mqtts', host: '127.0.0.1', port: Number(port), ca, servername: 'localhost',
    keepalive: Number(keepalive), reconnectPeriod: 0, connectTimeout: 30000,
    clientId: `mqttjs-${process.pid}-${i}`, protocolVersion: 4,
  });
  let settled = false;
  const settle = (ok, why) => {
    if (settled) return;
    settled = true;
    if (ok) up++; else { failed++; errors[why] = (errors[why] || 0) + 1; }
    if (++done === n) ready(); else openOne();
  };
  c.on('connect', () => settle(true));
  c.on('error', (e) => settle(false, String(e.message || e)));
  c.on('close', () => { if (settled) { if (!c.__ended) dropped++; } else settle(false, 'closed'); });
  clients.push(c);
}
function ready() {
  console.log(`ready ${up} sessions up, ${failed} failed`);
  setTimeout(() => {
    const summary = Object.entries(errors).map(([k, v]) => `${v}x ${k}`).join('; ');
    console.log(JSON.stringify({ mode: 'idle', label: 'mqttjs', conns: n, up, failed,
      dropped_while_held: dropped, errors: summary }));
    for (const c of clients) { c.__ended = true; c.end(true); }
    process.exit(0);
  }, Number(hold) * 1000);
}
for (let k = 0; k < Math.min(32, n); k++) openOne();
