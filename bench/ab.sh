#!/usr/bin/env bash
# bench/ab.sh: moat builds side by side with HAProxy (TLS → the same plain mosquitto), one row
# per front and round, interleaved: CPU seconds of each front per million QoS 0 messages
# (utime+stime from /proc/PID/stat), msgs/s and latency percentiles. For A/B of hot-path
# changes; compare.sh is the full table. Needs mosquitto, haproxy, python3 and a release
# moat-bench. Knobs: ROUNDS (3), COUNT (200000), RATE (0 = peak; else paced, RATE×4
# messages), QOS (0), MOAT_ENV (environment for the moats). The row "mosq-tls" is mosquitto's
# own TLS listener (the direct path latency is compared with; its CPU is the broker's).
# usage: bash bench/ab.sh path/to/moat-A [path/to/moat-B ...]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
COUNT=${COUNT:-200000}; ROUNDS=${ROUNDS:-3}; RATE=${RATE:-0}
BENCH=${BENCH:-$ROOT/target/release/moat-bench}
WORK=$(mktemp -d /tmp/cpu.XXXXXX); PIDS=()
trap 'for p in "${PIDS[@]}"; do kill $p 2>/dev/null; done; sleep 0.5; rm -rf $WORK' EXIT
fp() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wp() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; return 1; }
M=$1; PKI=$WORK/pki
"$M" certs ca --out $PKI >/dev/null; "$M" certs server --dns localhost --ip 127.0.0.1 --out $PKI >/dev/null
cat $PKI/server.crt $PKI/server.key > $PKI/h.pem
PP=$(fp); PH=$(fp); PT=$(fp)
cat > $WORK/m.conf <<EOF
user $(id -un)
per_listener_settings false
allow_anonymous true
log_type error
persistence false
max_queued_messages 100000
listener $PP 127.0.0.1
listener $PT 127.0.0.1
certfile $PKI/server.crt
keyfile $PKI/server.key
EOF
mosquitto -c $WORK/m.conf 2>/dev/null & PIDS+=($!); MQ=$!
cat > $WORK/h.cfg <<EOF
global
  maxconn 1000
defaults
  mode tcp
  timeout connect 5s
  timeout client 1h
  timeout server 1h
frontend f
  bind 127.0.0.1:$PH ssl crt $PKI/h.pem
  default_backend b
backend b
  server m1 127.0.0.1:$PP
EOF
haproxy -db -f $WORK/h.cfg 2>/dev/null & PIDS+=($!); HP=$!
mkdir -p $WORK/pol
cat > $WORK/pol/b.yaml <<'EOF'
anonymous: true
network: { allow: ["127.0.0.0/8"] }
limits:
  connections: { per_ip: off, global: off, max_per_ip: 100000 }
  client: { max_inflight: 4096 }
acl:
  - allow: all
    topics: ["#"]
    users: [anonymous]
EOF
ROWS=("mosq-tls $MQ $PT" "haproxy $HP $PH")
i=0
for bin in "$@"; do
  i=$((i+1)); port=$(fp)
  cat > $WORK/moat$i.yaml <<EOF
listeners:
  - { name: mqtts, kind: tls, bind: "127.0.0.1:$port" }
tls: { cert: $PKI/server.crt, key: $PKI/server.key, client_certs: none }
broker: { upstream: { v3: "127.0.0.1:$PP" } }
policies: [$WORK/pol/]
dev_certs: false
log: { format: text }
EOF
  RUST_LOG=warn ${MOAT_ENV:-} $bin run -c $WORK/moat$i.yaml 2>$WORK/moat$i.log & PIDS+=($!)
  ROWS+=("moat$i $! $port")
done
for r in "${ROWS[@]}"; do read -r _ _ port <<<"$r"; wp $port; done
T=(--ca $PKI/ca.crt --sni localhost)
tk() { sed 's/.*) //' /proc/$1/stat | awk '{print $12+$13}'; }
for r in "${ROWS[@]}"; do read -r n pid port <<<"$r"; $BENCH --target 127.0.0.1:$port "${T[@]}" load --count 20000 >/dev/null 2>&1; done
for k in $(seq $ROUNDS); do
  for r in "${ROWS[@]}"; do
    read -r n pid port <<<"$r"
    if [[ $RATE == 0 ]]; then args=(load --count $COUNT --payload 64 --qos ${QOS:-0}); else args=(load --rate $RATE --count $((RATE*4)) --qos 0); fi
    c0=$(tk $pid); out=$($BENCH --target 127.0.0.1:$port "${T[@]}" "${args[@]}" 2>/dev/null | tail -1); c1=$(tk $pid)
    python3 -c "import json,sys; r=json.loads(sys.argv[1]); print('%-8s cpu/1M %.2f  msg/s %7.0f lost %d p50 %5.0f p99 %6.0f p999 %6.0f'%(sys.argv[2], ($c1-$c0)/100/max(r['received'],1)*1e6, r['msgs_per_s'], r['lost'], r['lat_p50_us'], r['lat_p99_us'], r.get('lat_p999_us',0)))" "$out" $n
  done
done
