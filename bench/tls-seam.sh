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
. "$ROOT/bench/lib.sh"
work_dir tls-seam
if [[ -z "${MOAT_A:-}" || -z "${MOAT_B:-}" ]]; then
  (cd "$ROOT" && cargo build --release -p moat --bin moat -p moat-bench >&2)
  cp "$ROOT/target/release/moat" "$WORK/moat-unbuffered"
  (cd "$ROOT" && cargo build --release -p moat --bin moat --features tls-buffered >&2)
  cp "$ROOT/target/release/moat" "$WORK/moat-buffered"
  MOAT_A="$WORK/moat-unbuffered" MOAT_B="$WORK/moat-buffered"
fi
BENCH=${BENCH:-$ROOT/target/release/moat-bench}

PKI="$WORK/pki"
bench_pki "$MOAT_A" "$PKI"
P_PLAIN=$(free_port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_connections -1\n' "$P_PLAIN" >"$WORK/mosq.conf"
mosquitto -c "$WORK/mosq.conf" 2>"$WORK/mosq.log" &
PIDS+=($!)
bench_policy "$WORK/policies"
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
