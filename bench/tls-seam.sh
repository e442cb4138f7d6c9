#!/usr/bin/env bash
# Memory per idle TLS session of the two implementations of the TLS seam, in one run:
# moat built by default (rustls' unbuffered API) and with `--features tls-buffered`
# (tokio-rustls), each in front of the same mosquitto, N idle sessions from moat-bench.
#
#   bash bench/tls-seam.sh [SESSIONS]       (default 2000)
#   MOAT_A=… MOAT_B=… BENCH=…               binaries (default: builds both, release)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${1:-2000}
WORK=$(mktemp -d)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; rm -rf "$WORK"' EXIT
if [[ -z "${MOAT_A:-}" || -z "${MOAT_B:-}" ]]; then
  (cd "$ROOT" && cargo build --release -p moat --bin moat -p moat-bench >&2)
  cp "$ROOT/target/release/moat" "$WORK/moat-unbuffered"
  (cd "$ROOT" && cargo build --release -p moat --bin moat --features tls-buffered >&2)
  cp "$ROOT/target/release/moat" "$WORK/moat-buffered"
  MOAT_A="$WORK/moat-unbuffered" MOAT_B="$WORK/moat-buffered"
fi
BENCH=${BENCH:-$ROOT/target/release/moat-bench}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

PKI="$WORK/pki"
"$MOAT_A" certs ca --out "$PKI" >/dev/null
"$MOAT_A" certs server --dns localhost --out "$PKI" >/dev/null
P_PLAIN=$(free_port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_connections -1\n' "$P_PLAIN" >"$WORK/mosq.conf"
mosquitto -c "$WORK/mosq.conf" 2>"$WORK/mosq.log" &
PIDS+=($!)
mkdir -p "$WORK/policies"
cat >"$WORK/policies/bench.yaml" <<'POLICY'
anonymous: true
network: { allow: ["127.0.0.0/8"] }
limits:
  connections: { per_ip: off, global: off, max_per_ip: 100000 }
auto_ban:
  failed_auth: { count: 0, within: 1m, ban_for: 1s }
acl:
  - allow: all
    topics: ["#"]
    users: [anonymous]
POLICY
for variant in unbuffered buffered; do
  bin=$MOAT_A; [[ $variant == buffered ]] && bin=$MOAT_B
  port=$(free_port)
  cat >"$WORK/$variant.yaml" <<YAML
listeners:
  - { name: mqtts, kind: tls, bind: "127.0.0.1:$port" }
tls: { cert: $PKI/server.crt, key: $PKI/server.key, client_certs: none }
broker: { upstream: { v3: "127.0.0.1:$P_PLAIN" } }
policies: [$WORK/policies/]
limits: { max_connections: $((N + 100)) }
dev_certs: false
YAML
  "$bin" run -c "$WORK/$variant.yaml" 2>"$WORK/$variant.log" &
  pid=$!
  PIDS+=("$pid")
  for _ in $(seq 100); do grep -q "moat is up" "$WORK/$variant.log" && break; sleep 0.1; done
  sleep 1
  rss0=$(rss_kib "$pid")
  "$BENCH" --target "127.0.0.1:$port" --ca "$PKI/ca.crt" --sni localhost idle --conns "$N" --hold 4 \
    >"$WORK/idle-$variant.out" 2>/dev/null &
  bench=$!
  for _ in $(seq 600); do grep -q '^ready' "$WORK/idle-$variant.out" 2>/dev/null && break; sleep 0.1; done
  sleep 2
  rss1=$(rss_kib "$pid")
  wait "$bench" || true
  up=$(tail -n 1 "$WORK/idle-$variant.out" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("up", 0))')
  python3 -c "print(f'$variant: {($rss1 - $rss0) / max($up, 1):.2f} KiB per idle TLS session ($up sessions, RSS $rss0 -> $rss1 KiB)')"
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
