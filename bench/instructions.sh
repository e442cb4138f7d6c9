#!/usr/bin/env bash
# bench/instructions.sh: user-space instructions moat spends per forwarded message, counted by
# callgrind (repeatable on a noisy machine, unlike seconds), for one or more moat binaries.
#
#   bash bench/instructions.sh [MOAT_BINARY...]      (default: target/release/moat)
#   TRANSPORT=wss bash bench/instructions.sh ...      (the same over moat's WSS listener)
#
# For each binary: mosquitto on loopback as the broker, moat under callgrind in front of it,
# target/release/moat-bench as the client (1 publisher -> 1 subscriber over TLS 1.3). Two loads
# of different sizes are counted separately (counters zeroed before each); the difference divided
# by the difference in messages is the cost of one message, without connection set-up. Needs
# valgrind and mosquitto (Debian packages valgrind, mosquitto). Knobs: SMALL (default 2000),
# LARGE (default 12000), PAYLOAD (64), QOS (0), TRANSPORT (tls, or wss: the clients speak MQTT
# over WebSocket over TLS to a `kind: wss` listener), BENCH (the moat-bench binary),
# PROFILE_DIR (keep each binary's callgrind profile of the large load there).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BENCH="${BENCH:-$ROOT/target/release/moat-bench}"
TRANSPORT="${TRANSPORT:-tls}"
SMALL="${SMALL:-2000}"; LARGE="${LARGE:-12000}"; PAYLOAD="${PAYLOAD:-64}"; QOS="${QOS:-0}"
for tool in valgrind callgrind_control mosquitto python3; do
  command -v "$tool" >/dev/null || { echo "needs $tool (Debian: valgrind, mosquitto, python3)" >&2; exit 2; }
done
[[ -x "$BENCH" ]] || { echo "build first: cargo build --release --workspace --bins" >&2; exit 2; }
BINS=("$@"); ((${#BINS[@]})) || BINS=("$ROOT/target/release/moat")

W="$(mktemp -d /tmp/moat-instr.XXXXXX)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.5; rm -rf "$W"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

"${BINS[0]}" certs ca --out "$W/pki" >/dev/null
"${BINS[0]}" certs server --dns localhost --ip 127.0.0.1 --out "$W/pki" >/dev/null
P_BROKER=$(free_port)
printf 'user %s\nallow_anonymous true\nlog_type error\npersistence false\nlistener %s 127.0.0.1\n' \
  "$(id -un)" "$P_BROKER" >"$W/mosquitto.conf"
mosquitto -c "$W/mosquitto.conf" 2>/dev/null & PIDS+=("$!")
mkdir "$W/policies"
cat >"$W/policies/bench.yaml" <<'POLICY'
anonymous: true
network: { allow: ["127.0.0.0/8"] }
limits:
  connections: { per_ip: off, global: off }
  client: { max_inflight: 4096 }
acl:
  - allow: all
    topics: ["#"]
    users: [anonymous]
POLICY

case $TRANSPORT in
  tls) LISTENER="kind: tls"; VIA=() ;;
  wss) LISTENER="kind: wss, ws: { path: /mqtt }"; VIA=(--transport wss --ws-path /mqtt) ;;
  *) echo "TRANSPORT is tls or wss" >&2; exit 2 ;;
esac
echo "transport: $TRANSPORT"
printf '%-60s %14s %14s %12s\n' "moat binary" "instr small" "instr large" "instr/msg"
for bin in "${BINS[@]}"; do
  port=$(free_port)
  cat >"$W/moat.yaml" <<YAML
listeners:
  - { name: front, $LISTENER, bind: "127.0.0.1:$port" }
tls: { cert: $W/pki/server.crt, key: $W/pki/server.key, client_certs: none }
broker: { upstream: { v3: "127.0.0.1:$P_BROKER" } }
policies: [$W/policies/]
dev_certs: false
YAML
  out="$W/callgrind.out"
  RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$out.%p" "$bin" run -c "$W/moat.yaml" \
    2>"$W/valgrind.log" &
  vg=$!; PIDS+=("$vg")
  wait_port "$port"
  load() { "$BENCH" --target "127.0.0.1:$port" --ca "$W/pki/ca.crt" --sni localhost "${VIA[@]}" load \
    --count "$1" --payload "$PAYLOAD" --qos "$QOS" >/dev/null 2>>"$W/bench.log"; }
  load 500 # warm-up: first-use allocations, lazy statics
  count() { # zero the counters, run the load, read them: the instructions of that load
    callgrind_control -z "$vg" >/dev/null 2>&1
    load "$1"
    # One "Th N count" line per thread: the process's total is their sum.
    callgrind_control -e Ir "$vg" 2>/dev/null | awk '/^ *Th / {gsub(",", "", $3); s += $3} END {print s}'
  }
  small=$(count "$SMALL"); large=$(count "$LARGE")
  kill "$vg"; wait "$vg" 2>/dev/null || true
  # PROFILE_DIR: keep the profile of the large load (plus shutdown) for callgrind_annotate.
  if [[ -n "${PROFILE_DIR:-}" ]]; then
    mkdir -p "$PROFILE_DIR"; cp "$out".* "$PROFILE_DIR/" && rm -f "$out".*
  fi
  per=$(python3 -c "print(f'{($large - $small) / ($LARGE - $SMALL):,.0f}')")
  printf '%-60s %14s %14s %12s\n' "$bin" "$small" "$large" "$per"
done
