#!/usr/bin/env bash
# bench/compare.sh: moat side by side with its peers, on loopback, in one run.
#
# Front doors (all in front of ONE mosquitto, except the last):
#   mosquitto-tls  mosquitto's own TLS listener
#   haproxy        HAProxy terminating TLS → mosquitto on plain TCP
#   moat           moat (release build, `moat run`, broker: upstream) → the same mosquitto
#   moat-embedded  moat with its embedded rumqttd
# plus the same moat → mosquitto instance through its other front doors, WSS (path /mqtt) and
# QUIC (rows "moat wss → mosquitto", "moat quic → mosquitto": throughput and paced latency only).
# Each is driven by target/release/moat-bench with the same load. The table at the end has
# msgs/s, CPU seconds of the front process per million messages (utime+stime from
# /proc/PID/stat), latency at a fixed rate (half of mosquitto-tls's peak), RSS per idle TLS
# connection, full TLS handshakes/s, TLS+CONNECT/CONNACK per s and refused connections/s.
#
# It installs nothing: it checks for its tools and says which Debian packages to install.
# Knobs (environment): COUNT (QoS 0 messages per throughput run, default 500000),
# QOS1_COUNT (default 200000), IDLE_CONNS (default 9000), HS_SECONDS (default 5),
# NO_BUILD=1 (use existing release binaries), KEEP=1 (keep the work directory),
# MOAT_BEFORE=/path/to/an/older/moat (adds a "moat-before" row: before/after in one run),
# MOAT, BENCH (binaries), FLEET=0 (leave out the fleet shapes: bench/shapes.sh, run after this
# table with the same binaries; its own knobs apply, e.g. FANIN_PUBS, QOS_LIST),
# PARTS (which measurements, default "load latency connect idle refused xcheck"; e.g.
# PARTS=connect ROUNDS=3 FLEET=0 for connection set-up only, three times over).
# The connect part also runs MQTT.js (bench/connect.mjs, needs node and tests/js installed:
# `cd tests/js && npm ci`), the real-client row of TLS + CONNECT → CONNACK.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
COUNT="${COUNT:-500000}"
QOS1_COUNT="${QOS1_COUNT:-200000}"
IDLE_CONNS="${IDLE_CONNS:-9000}"
HS_SECONDS="${HS_SECONDS:-5}"
PARTS=" ${PARTS:-load latency connect idle refused xcheck} "
ROUNDS="${ROUNDS:-1}"
part() { [[ "$PARTS" == *" $1 "* ]]; }
MOAT="${MOAT:-$ROOT/target/release/moat}"
BENCH="${BENCH:-$ROOT/target/release/moat-bench}"

# --- tools --------------------------------------------------------------------------------
missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
need mosquitto mosquitto
need mosquitto_pub mosquitto-clients
need mosquitto_sub mosquitto-clients
need haproxy haproxy
need openssl openssl
need python3 python3
need cargo "the Rust toolchain (rustup)"
if ((${#missing[@]})); then
  echo "compare.sh needs: ${missing[*]}" >&2
  echo "on Debian/Ubuntu: sudo apt-get install -y $(printf '%s\n' "${missing[@]}" | grep -v Rust | sort -u | tr '\n' ' ')" >&2
  exit 2
fi

# --- limits -------------------------------------------------------------------------------
# Every proxied connection costs the proxy two descriptors (client + broker side).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
FDS="$(ulimit -n)"
MAX_IDLE=$(((FDS - 400) / 2))
if ((IDLE_CONNS > MAX_IDLE)); then
  echo "note: ulimit -n is $FDS (hard limit); a proxy needs 2 descriptors per connection," >&2
  echo "      so idle connections are capped at $MAX_IDLE instead of $IDLE_CONNS" >&2
  IDLE_CONNS=$MAX_IDLE
fi

# --- work directory and cleanup -----------------------------------------------------------
. "$ROOT/bench/lib.sh"
work_dir compare
RESULTS="$WORK/results.jsonl"
: >"$RESULTS"

# --- build --------------------------------------------------------------------------------
if [[ "${NO_BUILD:-0}" != 1 ]]; then
  log "building moat and moat-bench (release)"
  (cd "$ROOT" && cargo build --release -p moat --bin moat -p moat-bench 2>&1 | tail -n 2) >&2
fi

# --- certificates (ECDSA P-256 from `moat certs`) -----------------------------------------
PKI="$WORK/pki"
bench_pki "$MOAT" "$PKI"
cat "$PKI/server.crt" "$PKI/server.key" >"$PKI/haproxy.pem"
openssl x509 -in "$PKI/server.crt" -noout -text | grep -q 'prime256v1\|P-256' || {
  echo "server certificate is not ECDSA P-256" >&2
  exit 1
}

# --- ports ----------------------------------------------------------------------------------
P_PLAIN=$(free_port); P_MTLS=$(free_port); P_MCAP=$(free_port)
P_HAP=$(free_port); P_MOAT=$(free_port); P_EMB=$(free_port)
P_E3=$(free_port); P_E5=$(free_port); P_CAP=$(free_port); P_BEFORE=$(free_port)
# moat's WSS (TCP) and QUIC (UDP) listeners; a free TCP port number is free for UDP here too.
P_MWSS=$(free_port); P_MQUIC=$(free_port)

# --- mosquitto: plain for the proxies, its own TLS listener, and a capped one ---------------
cat >"$WORK/mosquitto.conf" <<EOF
# Started as root, mosquitto would switch to the mosquitto user and lose the key in $WORK.
user $(id -un)
per_listener_settings false
allow_anonymous true
log_type error
log_dest stderr
persistence false
# mosquitto's default queue per client (1000) equals moat-bench's window of messages in flight;
# PUBACKs still on their way back push its count past it, and it drops QoS 1 messages
# ("Outgoing messages are being dropped"), more often behind a proxy. The figures are about
# throughput, not mosquitto's overflow policy.
max_queued_messages 100000
listener $P_PLAIN 127.0.0.1
listener $P_MTLS 127.0.0.1
certfile $PKI/server.crt
keyfile $PKI/server.key
listener $P_MCAP 127.0.0.1
max_connections 1
certfile $PKI/server.crt
keyfile $PKI/server.key
EOF
mosquitto -c "$WORK/mosquitto.conf" 2>"$WORK/mosquitto.log" &
MOSQ=$!; PIDS+=("$MOSQ")

# --- HAProxy: TLS termination in tcp mode, one denied source range --------------------------
cat >"$WORK/haproxy.cfg" <<EOF
global
  maxconn $((IDLE_CONNS + 100))
defaults
  mode tcp
  timeout connect 5s
  timeout client 1h
  timeout server 1h
  maxconn $((IDLE_CONNS + 100))
frontend mqtts
  bind 127.0.0.1:$P_HAP ssl crt $PKI/haproxy.pem
  tcp-request connection reject if { src 127.66.0.0/16 }
  default_backend mosquitto
backend mosquitto
  server m1 127.0.0.1:$P_PLAIN
EOF
haproxy -db -f "$WORK/haproxy.cfg" 2>"$WORK/haproxy.log" &
HAP=$!; PIDS+=("$HAP")

# --- moat ---------------------------------------------------------------------------------
bench_policy "$WORK/policies"
# kernel_filter off: the refused-connections row measures moat's user-space refusal (a dropped
# SYN never "closes" for moat-bench's closed-loop refused mode); bench/denied-flood.sh measures
# the kernel filter.
moat_config() { # name port broker-yaml max-connections [more listener lines]
  cat >"$WORK/$1.yaml" <<EOF
listeners:
  - { name: mqtts, kind: tls, bind: "127.0.0.1:$2" }
${5:-}
tls:
  cert: $PKI/server.crt
  key: $PKI/server.key
  client_certs: none
broker: $3
policies: [$WORK/policies/]
limits: { max_connections: $4, kernel_filter: false }
dev_certs: false
log: { format: text }
EOF
}
moat_config moat "$P_MOAT" "{ upstream: { v3: \"127.0.0.1:$P_PLAIN\" } }" "$((IDLE_CONNS + 100))" \
  "  - { name: wss, kind: wss, bind: \"127.0.0.1:$P_MWSS\", ws: { path: /mqtt } }
  - { name: quic, kind: quic, bind: \"127.0.0.1:$P_MQUIC\" }"
# With its embedded broker moat holds 3 descriptors per connection and keeps 64 aside: a
# max_connections set above (FDS - 64) / 3 makes it refuse to start (ops/fds.rs).
EMB_MAX=$(((FDS - 64) / 3))
((EMB_MAX > IDLE_CONNS + 100)) && EMB_MAX=$((IDLE_CONNS + 100))
moat_config moat-embedded "$P_EMB" \
  "{ embedded: { bind: \"127.0.0.1:$P_E3\", bind_v5: \"127.0.0.1:$P_E5\", max_connections: $EMB_MAX } }" \
  "$EMB_MAX"
moat_config moat-cap "$P_CAP" "{ upstream: { v3: \"127.0.0.1:$P_PLAIN\" } }" 1
moat_config moat-before "$P_BEFORE" "{ upstream: { v3: \"127.0.0.1:$P_PLAIN\" } }" "$((IDLE_CONNS + 100))"
# Warnings only, as for mosquitto (log_type error) and HAProxy (no log section): the figures
# are about the data path, not the cost of an info line per connection.
for m in moat moat-embedded moat-cap; do
  RUST_LOG=warn "$MOAT" run -c "$WORK/$m.yaml" 2>"$WORK/$m.log" &
  PIDS+=("$!")
  eval "PID_${m//-/_}=$!"
done
MOAT_PID=$PID_moat; EMB_PID=$PID_moat_embedded
if [[ -n "${MOAT_BEFORE:-}" ]]; then
  RUST_LOG=warn "$MOAT_BEFORE" run -c "$WORK/moat-before.yaml" 2>"$WORK/moat-before.log" &
  PIDS+=("$!"); PID_moat_before=$!
fi

for p in "$P_PLAIN" "$P_MTLS" "$P_MCAP" "$P_HAP" "$P_MOAT" "$P_MWSS" "$P_EMB" "$P_CAP"; do wait_port "$p"; done
log "up: mosquitto $P_PLAIN/$P_MTLS, haproxy $P_HAP, moat $P_MOAT (wss $P_MWSS, quic udp/$P_MQUIC), moat-embedded $P_EMB"

# --- measurement helpers --------------------------------------------------------------------
TCK=$(getconf CLK_TCK)

# run ROW PID KIND moat-bench-args… → appends the JSON line, plus the front's CPU seconds
run() {
  local row=$1 pid=$2 kind=$3; shift 3
  local c0 c1 line
  c0=$(cpu_ticks "$pid")
  line=$("$BENCH" --label "$row" "$@" 2>>"$WORK/bench.log" | tail -n 1)
  c1=$(cpu_ticks "$pid")
  python3 - "$line" "$row" "$kind" "$(((c1 - c0)))" "$TCK" >>"$RESULTS" <<'EOF'
import json, sys
r = json.loads(sys.argv[1]); r["row"] = sys.argv[2]; r["kind"] = sys.argv[3]
r["cpu_s"] = int(sys.argv[4]) / int(sys.argv[5]); print(json.dumps(r))
EOF
}

# run_js ROW PID KIND connect.mjs-args… → the same for MQTT.js (bench/connect.mjs)
JS=0
if command -v node >/dev/null 2>&1 && [[ -d "$ROOT/tests/js/node_modules/mqtt" ]]; then JS=1; fi
run_js() {
  local row=$1 pid=$2 kind=$3; shift 3
  local c0 c1 line
  c0=$(cpu_ticks "$pid")
  line=$(node "$ROOT/bench/connect.mjs" --label "$row" "$@" 2>>"$WORK/bench.log" | tail -n 1)
  c1=$(cpu_ticks "$pid")
  python3 - "$line" "$row" "$kind" "$(((c1 - c0)))" "$TCK" >>"$RESULTS" <<'EOF'
import json, sys
r = json.loads(sys.argv[1]); r["row"] = sys.argv[2]; r["kind"] = sys.argv[3]
r["cpu_s"] = int(sys.argv[4]) / int(sys.argv[5]); print(json.dumps(r))
EOF
}

# Row name, front PID, TLS port, (for idle memory) the PID whose RSS is the front's cost.
ROWS=("mosquitto-tls $MOSQ $P_MTLS" "haproxy $HAP $P_HAP" "moat $MOAT_PID $P_MOAT" "moat-embedded $EMB_PID $P_EMB")
if [[ -n "${MOAT_BEFORE:-}" ]]; then
  wait_port "$P_BEFORE"
  ROWS+=("moat-before $PID_moat_before $P_BEFORE")
fi
TLS=(--ca "$PKI/ca.crt" --sni localhost)
# The moat → mosquitto instance through its other front doors: row, port, moat-bench transport.
# CPU is moat's process, as for the TLS row.
TRANSPORTS=("moat-wss $P_MWSS --transport wss --ws-path /mqtt" "moat-quic $P_MQUIC --transport quic")

log "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$ROUNDS"); do
((ROUNDS > 1)) && log "round $round of $ROUNDS"
if part load; then
for r in "${ROWS[@]}"; do
  read -r row pid port <<<"$r"
  log "$row: warm-up, QoS 0 peak, QoS 1 peak"
  "$BENCH" --target "127.0.0.1:$port" "${TLS[@]}" load --count 20000 >/dev/null 2>>"$WORK/bench.log"
  run "$row" "$pid" qos0 --target "127.0.0.1:$port" "${TLS[@]}" load --count "$COUNT" --payload 64 --qos 0
  run "$row" "$pid" qos1 --target "127.0.0.1:$port" "${TLS[@]}" load --count "$QOS1_COUNT" --payload 64 --qos 1
done
for t in "${TRANSPORTS[@]}"; do
  read -r row port via <<<"$t"
  read -ra via <<<"$via"
  log "$row: warm-up, QoS 0 peak, QoS 1 peak"
  "$BENCH" --target "127.0.0.1:$port" "${TLS[@]}" "${via[@]}" load --count 20000 >/dev/null 2>>"$WORK/bench.log"
  run "$row" "$MOAT_PID" qos0 --target "127.0.0.1:$port" "${TLS[@]}" "${via[@]}" load --count "$COUNT" --payload 64 --qos 0
  run "$row" "$MOAT_PID" qos1 --target "127.0.0.1:$port" "${TLS[@]}" "${via[@]}" load --count "$QOS1_COUNT" --payload 64 --qos 1
done

fi

# Latency at one fixed rate for every row: half of mosquitto's own TLS peak.
RATE=$(python3 -c "
import json
for l in open('$RESULTS'):
    r = json.loads(l)
    if r['row'] == 'mosquitto-tls' and r['kind'] == 'qos0': print(int(r['msgs_per_s'] / 2))" | tail -n 1)
if part latency && [[ -n "$RATE" ]]; then
for r in "${ROWS[@]}"; do
  read -r row pid port <<<"$r"
  log "$row: latency at $RATE msg/s"
  run "$row" "$pid" paced --target "127.0.0.1:$port" "${TLS[@]}" load --rate "$RATE" --count "$((RATE * 5))" --qos 0
done
for t in "${TRANSPORTS[@]}"; do
  read -r row port via <<<"$t"
  read -ra via <<<"$via"
  log "$row: latency at $RATE msg/s"
  run "$row" "$MOAT_PID" paced --target "127.0.0.1:$port" "${TLS[@]}" "${via[@]}" load --rate "$RATE" --count "$((RATE * 5))" --qos 0
done
fi

if part connect; then
for r in "${ROWS[@]}"; do
  read -r row pid port <<<"$r"
  log "$row: full TLS handshakes, then TLS + CONNECT/CONNACK (moat-bench, then MQTT.js)"
  run "$row" "$pid" handshake --target "127.0.0.1:$port" "${TLS[@]}" handshake --concurrency 4 --duration "$HS_SECONDS"
  run "$row" "$pid" connect --target "127.0.0.1:$port" "${TLS[@]}" handshake --connect --concurrency 4 --duration "$HS_SECONDS"
  if ((JS)); then
    run_js "$row" "$pid" connect_js --port "$port" --ca "$PKI/ca.crt" --servername localhost --concurrency 4 --duration "$HS_SECONDS"
  fi
done
fi

if part idle; then
for r in "${ROWS[@]}"; do
  read -r row pid port <<<"$r"
  log "$row: idle TLS sessions"
  sleep 2
  rss0=$(rss_kib "$pid")
  out="$WORK/idle-$row.out"
  conns=$IDLE_CONNS
  # moat with its embedded broker holds three descriptors per session (client, broker side,
  # and rumqttd's accepted socket, all in one process); past the limit rumqttd's accept loop
  # spins and logs an error per attempt.
  if [[ "$row" == moat-embedded ]] && ((conns > (FDS - 400) / 3)); then conns=$(((FDS - 400) / 3)); fi
  "$BENCH" --target "127.0.0.1:$port" "${TLS[@]}" --label "$row" idle --conns "$conns" --hold 6 \
    >"$out" 2>>"$WORK/bench.log" &
  bench=$!
  for _ in $(seq 1200); do grep -q '^ready' "$out" 2>/dev/null && break; sleep 0.1; done
  sleep 3
  rss1=$(rss_kib "$pid")
  wait "$bench" || true
  python3 - "$(tail -n 1 "$out")" "$row" "$rss0" "$rss1" >>"$RESULTS" <<'EOF' || true
import json, sys
r = json.loads(sys.argv[1]); r["row"] = sys.argv[2]; r["kind"] = "idle"
r["rss0_kib"] = int(sys.argv[3]); r["rss1_kib"] = int(sys.argv[4])
r["kib_per_conn"] = (r["rss1_kib"] - r["rss0_kib"]) / max(r["up"], 1); print(json.dumps(r))
EOF
done
fi

if part refused; then
log "refused connections"
# HAProxy and moat refuse the denied source range 127.66.0.0/16 (before any TLS work).
# mosquitto has no source rule: its figure is the connection-cap refusal (cap 1, one session
# held), shown for scale, and moat's cap refusal is measured beside it.
run haproxy "$HAP" refused --target "127.0.0.1:$P_HAP" refused --duration 5
run moat "$MOAT_PID" refused --target "127.0.0.1:$P_MOAT" refused --duration 5
run mosquitto-tls "$MOSQ" refused --target "127.0.0.1:$P_MCAP" "${TLS[@]}" refused --duration 5 --hold 1
run moat "$PID_moat_cap" refused_cap --target "127.0.0.1:$P_CAP" "${TLS[@]}" refused --duration 5 --hold 1
fi

# --- cross-check with external clients: mosquitto_pub -l | … | mosquitto_sub -C N ------------
N=$((COUNT / 5))
xcheck() { # row port
  local row=$1 port=$2 t0 t1 got
  python3 -c "import sys; sys.stdout.write(('x'*64+'\n')*$N)" >"$WORK/lines"
  timeout 120 mosquitto_sub -h 127.0.0.1 -p "$port" --cafile "$PKI/ca.crt" -t 'xcheck/#' -C "$N" \
    -i "xsub-$row" >"$WORK/xsub-$row.out" 2>/dev/null &
  local sub=$!
  sleep 1
  t0=$(date +%s.%N)
  timeout 120 mosquitto_pub -h 127.0.0.1 -p "$port" --cafile "$PKI/ca.crt" -t xcheck/a -l \
    -i "xpub-$row" <"$WORK/lines" 2>/dev/null || true
  wait "$sub" || true
  t1=$(date +%s.%N)
  got=$(wc -l <"$WORK/xsub-$row.out")
  python3 -c "import json; print(json.dumps({'row':'$row','kind':'xcheck','sent':$N,'received':$got,'msgs_per_s':$got/($t1-$t0)}))" >>"$RESULTS"
}
if part xcheck; then
log "cross-check with mosquitto_pub -l / mosquitto_sub -C $N"
xcheck mosquitto-tls "$P_MTLS"
xcheck moat "$P_MOAT"
fi
done

log "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

# --- the table ------------------------------------------------------------------------------
python3 - "$RESULTS" "$COUNT" "$IDLE_CONNS" "$RATE" <<'EOF'
import json, sys
rows = {}
every = {}  # (row, kind) -> the results of every round, in order
for line in open(sys.argv[1]):
    r = json.loads(line)
    rows.setdefault(r["row"], {})[r["kind"]] = r  # the table shows the last round
    every.setdefault((r["row"], r["kind"]), []).append(r)
count, idle, rate = sys.argv[2], sys.argv[3], sys.argv[4]
order = [r for r in ["mosquitto-tls", "haproxy", "moat", "moat-wss", "moat-quic", "moat-embedded",
                     "moat-before"] if r in rows]
names = {"moat-wss": "moat wss → mosquitto", "moat-quic": "moat quic → mosquitto"}

def g(row, kind, key, default=None):
    return rows.get(row, {}).get(kind, {}).get(key, default)

def cpu_per_m(row, kind):
    r = rows.get(row, {}).get(kind)
    if not r or not r.get("received"):
        return None
    return r["cpu_s"] / r["received"] * 1e6

def f(v, fmt="{:,.0f}"):
    return "–" if v is None else fmt.format(v)

head = ["front door", "QoS0 msg/s", "CPU s/1M QoS0", "lost QoS0/1", "QoS1 msg/s", "CPU s/1M QoS1",
        f"p50/p99/p999 µs @ {rate}/s", "KiB/idle conn", "handshakes/s", "CPU ms/hs",
        "TLS+CONNECT/s", "MQTT.js TLS+CONNECT/s (p50 ms)", "refused/s (CPU each)"]
out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
for row in order:
    hs = rows.get(row, {}).get("handshake")
    cpu_hs = hs["cpu_s"] / hs["ok"] * 1e3 if hs and hs.get("ok") else None
    lat = (f"{g(row,'paced','lat_p50_us',0):.0f} / {g(row,'paced','lat_p99_us',0):.0f} / "
           f"{g(row,'paced','lat_p999_us',0):.0f}") if g(row, "paced", "lat_p50_us") is not None else "–"
    refused = g(row, "refused", "per_s")
    ref = f(refused)
    rr = rows.get(row, {}).get("refused")
    if rr and rr.get("refused"):
        ref += f" ({rr['cpu_s'] / rr['refused'] * 1e6:.0f} µs CPU)"
    if row == "mosquitto-tls" and refused is not None:
        ref += " (cap)"
    out.append("| " + " | ".join([
        names.get(row, row), f(g(row, "qos0", "msgs_per_s")), f(cpu_per_m(row, "qos0"), "{:.2f}"),
        f"{f(g(row, 'qos0', 'lost'))} / {f(g(row, 'qos1', 'lost'))}", f(g(row, "qos1", "msgs_per_s")),
        f(cpu_per_m(row, "qos1"), "{:.2f}"), lat, f(g(row, "idle", "kib_per_conn"), "{:.1f}"),
        f(g(row, "handshake", "per_s")), f(cpu_hs, "{:.2f}"), f(g(row, "connect", "per_s")),
        (f"{f(g(row, 'connect_js', 'per_s'))} ({g(row, 'connect_js', 'lat_p50_us', 0) / 1e3:.1f})"
         if g(row, "connect_js", "per_s") is not None else "–"), ref,
    ]) + " |")
print("\n".join(out))
print()
# Several rounds (ROUNDS=N): every round's figure, so the spread is in the output.
if any(len(v) > 1 for v in every.values()):
    print("Every round (the table shows the last):")
    for (row, kind), rs in sorted(every.items(), key=lambda kv: (order.index(kv[0][0]) if kv[0][0] in order else 99, kv[0][1])):
        if kind in ("qos0", "qos1"):
            vals = [f"{r['msgs_per_s']:,.0f} msg/s {r['cpu_s'] / max(r.get('received', 0), 1) * 1e6:.2f} s/1M" for r in rs]
        elif kind == "paced":
            vals = [f"p50 {r['lat_p50_us']:.0f} µs p99 {r['lat_p99_us']:.0f} µs" for r in rs]
        elif kind in ("connect", "connect_js", "handshake"):
            vals = [f"{r['per_s']:,.0f}/s p50 {r.get('lat_p50_us', 0) / 1e3:.1f} ms" for r in rs]
        elif kind == "idle":
            vals = [f"{r['kib_per_conn']:.1f} KiB" for r in rs]
        else:
            vals = [f"{r.get('per_s', r.get('msgs_per_s', 0)):,.0f}/s" for r in rs]
        print(f"  {names.get(row, row)} {kind}: " + "; ".join(vals))
    print()
print(f"QoS 0: {count} messages of 64 bytes, 1 publisher → 1 subscriber, TLS 1.3, ECDSA P-256; "
      f"idle: {idle} sessions; latency at a fixed {rate} msg/s (half of mosquitto-tls's peak).")
print("moat wss / moat quic: the moat → mosquitto instance through its WSS (/mqtt, one binary "
      "message per client write) and QUIC (one stream per connection) listeners; CPU is moat's.")
cap = rows.get("moat", {}).get("refused_cap")
print("refused/s: haproxy and moat = the denied source range 127.66.0.0/16 (HAProxy: "
      "tcp-request connection reject; moat: policy network.deny); mosquitto has no source rule, "
      "its figure is the connection-cap refusal (cap 1, one session held)"
      + (f"; moat's own cap refusal: {cap['per_s']:,.0f}/s." if cap else "."))

def ratio(a, b):
    return None if a is None or b in (None, 0) else a / b
print()
print("Headline ratios (moat → mosquitto):")
print(f"  CPU per QoS0 message vs HAProxy:        {f(ratio(cpu_per_m('moat','qos0'), cpu_per_m('haproxy','qos0')), '{:.2f}')}×  (goal ≤ 1.0)")
print(f"  msgs/s vs mosquitto's own TLS:          {f(ratio(g('moat','qos0','msgs_per_s'), g('mosquitto-tls','qos0','msgs_per_s')), '{:.2f}')}×  (goal ≥ 0.9)")
p99m, p99d = g('moat','paced','lat_p99_us'), g('mosquitto-tls','paced','lat_p99_us')
print(f"  added p99 latency vs mosquitto TLS:     {f(None if p99m is None or p99d is None else p99m - p99d, '{:.0f}')} µs  (goal ≤ 200)")
print(f"  KiB per idle TLS connection:            {f(g('moat','idle','kib_per_conn'), '{:.1f}')}  (goal ≤ 8)")
print(f"  handshakes/s vs HAProxy:                {f(ratio(g('moat','handshake','per_s'), g('haproxy','handshake','per_s')), '{:.2f}')}×  (goal ≥ 1.0)")
print(f"  TLS+CONNECT/s vs HAProxy (moat-bench):  {f(ratio(g('moat','connect','per_s'), g('haproxy','connect','per_s')), '{:.2f}')}×  (goal ≥ 1.0)")
print(f"  TLS+CONNECT/s vs HAProxy (MQTT.js):     {f(ratio(g('moat','connect_js','per_s'), g('haproxy','connect_js','per_s')), '{:.2f}')}×, "
      f"p50 {f(g('moat','connect_js','lat_p50_us'), '{:,.0f}')} vs {f(g('haproxy','connect_js','lat_p50_us'), '{:,.0f}')} µs  (goal ≥ 1.0, p50 ≤ HAProxy's)")
print(f"  denied-source refusals/s:               {f(g('moat','refused','per_s'))}  (goal ≥ 20,000; HAProxy {f(g('haproxy','refused','per_s'))})")
print(f"  moat-embedded msgs/s vs mosquitto TLS:  {f(ratio(g('moat-embedded','qos0','msgs_per_s'), g('mosquitto-tls','qos0','msgs_per_s')), '{:.2f}')}×")
print()
# Every connection set-up that did not end in a session, per row and mode: moat-bench counts
# CONNACK refusals (the server's answer, e.g. 0x03 server unavailable) apart from broken
# connections (reset, timeout, TLS error), and keeps the commonest error texts.
fails = []
for row in order:
    for kind, what in (("handshake", "TLS handshakes"), ("connect", "TLS+CONNECT"),
                       ("idle", "idle sessions")):
        r = rows.get(row, {}).get(kind)
        if r and r.get("failed"):
            total = r["failed"] + r.get("ok", r.get("up", 0))
            fails.append(f"  {names.get(row, row)} {what}: {r['failed']:,} of {total:,} failed "
                         f"({r.get('refused', 0):,} refused by CONNACK): {r.get('errors', '')}")
print("\n".join(["Set-up failures:"] + fails) if fails else
      "Set-up failures: none (every handshake, CONNECT and idle session of the run succeeded).")
print()
print("Cross-check with mosquitto_pub -l | mosquitto_sub -C N (external clients, QoS 0):")
for row in ("mosquitto-tls", "moat"):
    x = rows.get(row, {}).get("xcheck")
    if x:
        print(f"  {row:14} {x['received']:>8,} / {x['sent']:,} received, {x['msgs_per_s']:,.0f} msg/s")
EOF
cp "$RESULTS" "${RESULTS_OUT:-/tmp/moat-compare-results.jsonl}"
log "raw results: ${RESULTS_OUT:-/tmp/moat-compare-results.jsonl}"

# --- the fleet shapes (fan-in, fan-out, nginx as a peer): their own servers and table --------
if [[ "${FLEET:-1}" == 1 ]]; then
  log "fleet shapes (bench/shapes.sh)"
  NO_BUILD=1 MOAT="$MOAT" BENCH="$BENCH" RESULTS_OUT="${SHAPES_OUT:-/tmp/moat-shapes-results.jsonl}" \
    bash "$ROOT/bench/shapes.sh"
fi
