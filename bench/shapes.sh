#!/usr/bin/env bash
# bench/shapes.sh: the fleet shapes of issue 17 for every front door, in one run on loopback.
#
# Shapes (moat-bench `load`, TLS 1.3, ECDSA P-256, 64-byte messages):
#   1to1     1 publisher → 1 subscriber at full speed (QoS 0), COUNT messages
#   fanin    N publishers at FANIN_RATE msg/s each → 1 subscriber, for N in FANIN_PUBS
#            (skipped where the descriptor budget cannot hold N), QoS in QOS_LIST
#   fanout   1 publisher at FANOUT_RATE msg/s → FANOUT_SUBS subscribers, QoS in QOS_LIST
# Front doors, all in front of ONE mosquitto (plain TCP, or its WebSocket listener for nginx-wss):
#   mosquitto-tls  mosquitto's own TLS listener (front = broker)
#   haproxy        HAProxy, TLS in tcp mode
#   nginx-tls      nginx stream module, TLS
#   moat           moat, broker: upstream
#   moat-embedded  moat with its embedded rumqttd (its CPU includes the broker's)
# and WSS front doors (1to1 and the first fanin size, QoS 0): mosquitto-wss (its own WSS
# listener), nginx-wss (WSS terminated by nginx → mosquitto's plain WebSocket listener),
# moat-wss (moat's WSS listener → mosquitto).
#
# Every row prints CPU seconds per million delivered messages for the front door AND for the
# broker behind it (utime+stime from /proc/PID/stat, counted by moat-bench from the first
# publish to the end of the drain, so connection set-up is left out). On a shared machine only
# ratios within one run mean anything.
#
# Knobs (environment, defaults keep a run to minutes): COUNT (1to1 messages, 100000),
# FANIN_PUBS ("2000 6000"), FANIN_RATE (2 msg/s per publisher), FANIN_SECONDS (10),
# FANOUT_SUBS (1000), FANOUT_RATE (20 msg/s), FANOUT_SECONDS (10), QOS_LIST ("0 1"),
# SHAPES ("1to1 fanin fanout"), FRONTS (all of the above), WSS (1: also the WSS front doors),
# MOAT, BENCH (binaries; default target/release), NO_BUILD=1, KEEP=1, RESULTS_OUT,
# EMBEDDED_LINK (moat-embedded's broker.embedded.link: memory or loopback; unset: moat's default).
# Counting hooks (bench/floor.sh uses them): HOOK_START / HOOK_END, shell commands moat-bench
# runs just before the first publish and after the drain, with FRONT_PID, ROW and SHAPE in
# their environment; MOAT_PREFIX, a command the moat row's process is started under (e.g.
# valgrind), WAIT_PORT_S (10) how long a front door may take to listen. FANIN_RATE may be a
# fraction.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
COUNT="${COUNT:-100000}"
FANIN_PUBS="${FANIN_PUBS:-2000 6000}"
FANIN_RATE="${FANIN_RATE:-2}"
FANIN_SECONDS="${FANIN_SECONDS:-10}"
FANOUT_SUBS="${FANOUT_SUBS:-1000}"
FANOUT_RATE="${FANOUT_RATE:-20}"
FANOUT_SECONDS="${FANOUT_SECONDS:-10}"
QOS_LIST="${QOS_LIST:-0 1}"
SHAPES="${SHAPES:-1to1 fanin fanout}"
FRONTS="${FRONTS:-mosquitto-tls haproxy nginx-tls moat moat-embedded}"
WSS="${WSS:-1}"
MOAT="${MOAT:-$ROOT/target/release/moat}"
BENCH="${BENCH:-$ROOT/target/release/moat-bench}"

# --- tools --------------------------------------------------------------------------------
missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
need mosquitto mosquitto
need haproxy haproxy
# nginx-light carries the stream module as libnginx-mod-stream (nginx-full has both).
need nginx "nginx-light libnginx-mod-stream"
need python3 python3
need cargo "the Rust toolchain (rustup)"
STREAM_MOD=/usr/lib/nginx/modules/ngx_stream_module.so
[[ -e "$STREAM_MOD" ]] || missing+=(libnginx-mod-stream)
if ((${#missing[@]})); then
  echo "shapes.sh needs: ${missing[*]}" >&2
  echo "on Debian/Ubuntu: sudo apt-get install -y $(printf '%s\n' "${missing[@]}" | grep -v Rust | sort -u | tr '\n' ' ')" >&2
  exit 2
fi

# --- descriptor budget --------------------------------------------------------------------
# A proxy holds 2 descriptors per connection, moat with its embedded broker 1 in memory, 3 over
# loopback (and keeps 64 aside, ops/fds.rs): budgeted at 3, so EMBEDDED_LINK=loopback and
# builds from before the in-memory link fit too; the broker behind a proxy 1, moat-bench 1.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
FDS="$(ulimit -n)"
MAX_PROXIED=$(((FDS - 400) / 2))
MAX_EMBEDDED=$(((FDS - 400) / 3))
MAXN=0
for n in $FANIN_PUBS $FANOUT_SUBS; do ((n > MAXN)) && MAXN=$n; done
MAXN=$((MAXN + 100))

. "$ROOT/bench/lib.sh"
work_dir shapes
RESULTS="$WORK/results.jsonl"
: >"$RESULTS"

if [[ "${NO_BUILD:-0}" != 1 ]]; then
  log "building moat and moat-bench (release)"
  (cd "$ROOT" && cargo build --release -p moat --bin moat -p moat-bench 2>&1 | tail -n 2) >&2
fi

PKI="$WORK/pki"
bench_pki "$MOAT" "$PKI"
cat "$PKI/server.crt" "$PKI/server.key" >"$PKI/haproxy.pem"

P_PLAIN=$(free_port); P_MTLS=$(free_port); P_WS=$(free_port); P_MWSS=$(free_port)
P_HAP=$(free_port); P_NTLS=$(free_port); P_NWSS=$(free_port)
P_MOAT=$(free_port); P_MOATW=$(free_port); P_EMB=$(free_port); P_E3=$(free_port); P_E5=$(free_port)

# --- mosquitto ----------------------------------------------------------------------------
cat >"$WORK/mosquitto.conf" <<EOF
user $(id -un)
per_listener_settings false
allow_anonymous true
log_type error
log_dest stderr
persistence false
max_queued_messages 100000
listener $P_PLAIN 127.0.0.1
listener $P_MTLS 127.0.0.1
certfile $PKI/server.crt
keyfile $PKI/server.key
EOF
# The WebSocket listeners only when a WSS row runs (mosquitto's libwebsockets listener is the
# one that sometimes fails to start on a busy machine).
[[ "$WSS" == 1 ]] && cat >>"$WORK/mosquitto.conf" <<EOF
listener $P_WS 127.0.0.1
protocol websockets
listener $P_MWSS 127.0.0.1
protocol websockets
certfile $PKI/server.crt
keyfile $PKI/server.key
EOF
mosquitto -c "$WORK/mosquitto.conf" 2>"$WORK/mosquitto.log" &
MOSQ=$!; PIDS+=("$MOSQ")

# --- HAProxy ------------------------------------------------------------------------------
cat >"$WORK/haproxy.cfg" <<EOF
global
  maxconn $MAXN
defaults
  mode tcp
  timeout connect 5s
  timeout client 1h
  timeout server 1h
  maxconn $MAXN
frontend mqtts
  bind 127.0.0.1:$P_HAP ssl crt $PKI/haproxy.pem
  default_backend mosquitto
backend mosquitto
  server m1 127.0.0.1:$P_PLAIN
EOF
haproxy -db -f "$WORK/haproxy.cfg" 2>"$WORK/haproxy.log" &
HAP=$!; PIDS+=("$HAP")

# --- nginx: one worker, TLS (stream) and WSS (http, Upgrade) ------------------------------
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx.conf" <<EOF
load_module $STREAM_MOD;
user $(id -un);
worker_processes 1;
worker_rlimit_nofile $FDS;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections $((MAXN * 2 + 100)); }
stream {
  server {
    listen 127.0.0.1:$P_NTLS ssl;
    ssl_certificate $PKI/server.crt;
    ssl_certificate_key $PKI/server.key;
    ssl_protocols TLSv1.3;
    proxy_timeout 1h;
    proxy_pass 127.0.0.1:$P_PLAIN;
  }
}
http {
  access_log off;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  server {
    listen 127.0.0.1:$P_NWSS ssl;
    ssl_certificate $PKI/server.crt;
    ssl_certificate_key $PKI/server.key;
    ssl_protocols TLSv1.3;
    location /mqtt {
      proxy_pass http://127.0.0.1:$P_WS;
      proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_buffering off;
      proxy_read_timeout 1h;
      proxy_send_timeout 1h;
    }
  }
}
EOF
nginx -p "$WORK/nginx" -c "$WORK/nginx.conf" -g 'daemon off;' 2>"$WORK/nginx/stderr.log" &
NGX=$!; PIDS+=("$NGX")

# --- moat ---------------------------------------------------------------------------------
bench_policy "$WORK/policies"
EMB_MAX=$(((FDS - 64) / 3)); ((EMB_MAX > MAXN)) && EMB_MAX=$MAXN
cat >"$WORK/moat.yaml" <<EOF
listeners:
  - { name: mqtts, kind: tls, bind: "127.0.0.1:$P_MOAT" }
  - { name: wss, kind: wss, bind: "127.0.0.1:$P_MOATW", ws: { path: /mqtt } }
tls: { cert: $PKI/server.crt, key: $PKI/server.key, client_certs: none }
broker: { upstream: { v3: "127.0.0.1:$P_PLAIN" } }
policies: [$WORK/policies/]
limits: { max_connections: $MAXN }
dev_certs: false
log: { format: text }
EOF
cat >"$WORK/moat-embedded.yaml" <<EOF
listeners:
  - { name: mqtts, kind: tls, bind: "127.0.0.1:$P_EMB" }
tls: { cert: $PKI/server.crt, key: $PKI/server.key, client_certs: none }
broker: { embedded: { bind: "127.0.0.1:$P_E3", bind_v5: "127.0.0.1:$P_E5", max_connections: $EMB_MAX${EMBEDDED_LINK:+, link: $EMBEDDED_LINK} } }
policies: [$WORK/policies/]
limits: { max_connections: $EMB_MAX }
dev_certs: false
log: { format: text }
EOF
# shellcheck disable=SC2086 # MOAT_PREFIX is a command line
RUST_LOG=warn ${MOAT_PREFIX:-} "$MOAT" run -c "$WORK/moat.yaml" 2>"$WORK/moat.log" &
MOATP=$!; PIDS+=("$MOATP")
EMBP=-
if [[ " $FRONTS " == *" moat-embedded "* ]]; then
  RUST_LOG=warn "$MOAT" run -c "$WORK/moat-embedded.yaml" 2>"$WORK/moat-embedded.log" &
  EMBP=$!; PIDS+=("$EMBP")
fi

for p in "$P_PLAIN" "$P_MTLS" "$P_HAP" "$P_NTLS" "$P_NWSS" "$P_MOAT" "$P_MOATW"; do
  wait_port "$p"
done
if [[ "$WSS" == 1 ]]; then wait_port "$P_WS"; wait_port "$P_MWSS"; fi
[[ "$EMBP" == - ]] || wait_port "$P_EMB"
NGXW=$(pgrep -P "$NGX" | head -n 1)
[[ -n "$NGXW" ]] || { echo "no nginx worker" >&2; exit 1; }
log "up: mosquitto $P_PLAIN (tls $P_MTLS, ws $P_WS, wss $P_MWSS), haproxy $P_HAP, nginx $P_NTLS/$P_NWSS, moat $P_MOAT/$P_MOATW, moat-embedded $P_EMB; ulimit -n $FDS"

# front door → "pid broker-pid port max-sessions transport-args"
declare -A FRONT=(
  [mosquitto-tls]="$MOSQ $MOSQ $P_MTLS $MAX_PROXIED"
  [haproxy]="$HAP $MOSQ $P_HAP $MAX_PROXIED"
  [nginx-tls]="$NGXW $MOSQ $P_NTLS $MAX_PROXIED"
  [moat]="$MOATP $MOSQ $P_MOAT $MAX_PROXIED"
  [moat-embedded]="$EMBP - $P_EMB $MAX_EMBEDDED"
  [mosquitto-wss]="$MOSQ $MOSQ $P_MWSS $MAX_PROXIED --transport wss --ws-path /mqtt"
  [nginx-wss]="$NGXW $MOSQ $P_NWSS $MAX_PROXIED --transport wss --ws-path /mqtt"
  [moat-wss]="$MOATP $MOSQ $P_MOATW $MAX_PROXIED --transport wss --ws-path /mqtt"
)
TLS=(--ca "$PKI/ca.crt" --sni localhost)

# shape ROW SHAPE-LABEL CONNS load-args… → one JSON line in $RESULTS
shape() {
  local row=$1 label=$2 conns=$3; shift 3
  local pid bpid port max via line
  read -r pid bpid port max via <<<"${FRONT[$row]}"
  read -ra via <<<"${via:-}"
  if ((conns > max)); then
    log "$row $label: skipped ($conns sessions exceed the descriptor budget $max at ulimit -n $FDS)"
    echo "{\"row\":\"$row\",\"shape\":\"$label\",\"skipped\":\"descriptors: $conns > $max\"}" >>"$RESULTS"
    return 0
  fi
  local cpu=(--front-pid "$pid")
  [[ "$bpid" != - && "$bpid" != "$pid" ]] && cpu+=(--broker-pid "$bpid")
  [[ -n "${HOOK_START:-}" ]] && cpu+=(--hook-start "$HOOK_START")
  [[ -n "${HOOK_END:-}" ]] && cpu+=(--hook-end "$HOOK_END")
  log "$row: $label"
  line=$(ROW=$row SHAPE=$label timeout 600 "$BENCH" --target "127.0.0.1:$port" "${TLS[@]}" "${via[@]}" \
    --label "$row" load "$@" "${cpu[@]}" 2>>"$WORK/bench.log" | tail -n 1) || true
  [[ -n "$line" ]] || line='{"failed":1}'
  python3 - "$line" "$row" "$label" "$bpid" "$pid" >>"$RESULTS" <<'EOF'
import json, sys
r = json.loads(sys.argv[1]); r["row"] = sys.argv[2]; r["shape"] = sys.argv[3]
r["broker_same"] = sys.argv[4] in ("-", sys.argv[5])
print(json.dumps(r))
EOF
}

ROWS=($FRONTS)
WROWS=()
[[ "$WSS" == 1 ]] && WROWS=(mosquitto-wss nginx-wss moat-wss)
log "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for row in "${ROWS[@]}" "${WROWS[@]}"; do
  read -r _ _ port _ via <<<"${FRONT[$row]}"
  read -ra via <<<"${via:-}"
  "$BENCH" --target "127.0.0.1:$port" "${TLS[@]}" "${via[@]}" load --count 20000 >/dev/null 2>>"$WORK/bench.log" || true
done
# Rows interleaved inside each shape, so a change of the machine's load hits all of them alike.
for s in $SHAPES; do
  case $s in
  1to1)
    for row in "${ROWS[@]}" "${WROWS[@]}"; do
      shape "$row" "1→1 q0" 2 --count "$COUNT" --payload 64 --qos 0
    done ;;
  fanin)
    first=1
    for n in $FANIN_PUBS; do
      for q in $QOS_LIST; do
        rows=("${ROWS[@]}")
        ((first && q == 0)) && rows+=("${WROWS[@]}")
        rate=$(awk -v n="$n" -v r="$FANIN_RATE" 'BEGIN { printf "%d", n * r }')
        for row in "${rows[@]}"; do
          shape "$row" "fan-in $n→1 q$q" "$((n + 1))" --pubs "$n" --subs 1 --qos "$q" --payload 64 \
            --rate "$rate" --count "$((rate * FANIN_SECONDS))" \
            --duration "$((FANIN_SECONDS + 5))" --drain 5
        done
      done
      first=0
    done ;;
  fanout)
    for q in $QOS_LIST; do
      for row in "${ROWS[@]}"; do
        shape "$row" "fan-out 1→$FANOUT_SUBS q$q" "$((FANOUT_SUBS + 1))" --pubs 1 --subs "$FANOUT_SUBS" \
          --qos "$q" --payload 64 --rate "$FANOUT_RATE" --count "$((FANOUT_RATE * FANOUT_SECONDS))" \
          --duration "$((FANOUT_SECONDS + 5))" --drain 5
      done
    done ;;
  *) echo "unknown shape $s" >&2 ;;
  esac
done
log "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$RESULTS" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def f(v, fmt="{:,.0f}"):
    return "–" if v is None else fmt.format(v)
head = ["shape", "front door", "delivered/s", "lost", "p50 / p99 ms", "front CPU s/1M",
        "broker CPU s/1M", "total CPU s/1M"]
out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
for r in rows:
    if "skipped" in r:
        out.append(f"| {r['shape']} | {r['row']} | skipped: {r['skipped']} |  |  |  |  |  |")
        continue
    if r.get("failed") or not r.get("received"):
        out.append(f"| {r['shape']} | {r['row']} | failed (see bench.log) |  |  |  |  |  |")
        continue
    m = r["received"] / 1e6
    front = r.get("front_cpu_s")
    broker = None if r.get("broker_same") else r.get("broker_cpu_s")
    fc = None if front is None else front / m
    bc = None if broker is None else broker / m
    tot = None if fc is None else fc + (bc or 0)
    note = " (= broker)" if r["row"].startswith("mosquitto") else (" (incl. broker)" if r["row"] == "moat-embedded" else "")
    lat = f"{r.get('lat_p50_us', 0) / 1000:.2f} / {r.get('lat_p99_us', 0) / 1000:.2f}"
    out.append("| " + " | ".join([r["shape"], r["row"], f(r.get("msgs_per_s")), f(r.get("lost")), lat,
                                   f(fc, "{:.1f}") + note, f(bc, "{:.1f}"), f(tot, "{:.1f}")]) + " |")
print("\n".join(out))
print()
print("CPU: utime+stime per million delivered messages, counted by moat-bench from the first "
      "publish to the end of the drain (set-up excluded). front = the TLS/WSS terminator, "
      "broker = mosquitto behind it; mosquitto-* rows are their own broker, moat-embedded's "
      "process holds its broker. Fan-out counts every delivery. Shared machine: ratios only.")
EOF
cp "$RESULTS" "${RESULTS_OUT:-/tmp/moat-shapes-results.jsonl}"
log "raw results: ${RESULTS_OUT:-/tmp/moat-shapes-results.jsonl}"
