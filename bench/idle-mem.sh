#!/usr/bin/env bash
# bench/idle-mem.sh: KiB of RSS per idle TLS session of moat with its embedded broker, for one
# or more moat builds side by side (before/after a memory change), interleaved over ROUNDS.
# Each round starts every build afresh, opens CONNS idle sessions with moat-bench, and reads the
# process's RSS before and 3 s after the last session is up. Knobs: CONNS (3000), ROUNDS (2),
# BENCH (moat-bench). usage: bash bench/idle-mem.sh path/to/moat-A [path/to/moat-B ...]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CONNS=${CONNS:-3000}; ROUNDS=${ROUNDS:-2}
BENCH=${BENCH:-$ROOT/target/release/moat-bench}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
FDS=$(ulimit -n)
if ((CONNS > (FDS - 400) / 3)); then CONNS=$(((FDS - 400) / 3)); fi
. "$ROOT/bench/lib.sh"
work_dir idle
PKI=$WORK/pki
bench_pki "$1" "$PKI"
bench_policy "$WORK/pol"
for k in $(seq "$ROUNDS"); do
  i=0
  for bin in "$@"; do
    i=$((i + 1)); port=$(free_port); p3=$(free_port); p5=$(free_port)
    cat > $WORK/m.yaml <<EOF
listeners:
  - { name: mqtts, kind: tls, bind: "127.0.0.1:$port" }
tls: { cert: $PKI/server.crt, key: $PKI/server.key, client_certs: none }
broker: { embedded: { bind: "127.0.0.1:$p3", bind_v5: "127.0.0.1:$p5", max_connections: $((CONNS + 50)) } }
policies: [$WORK/pol/]
limits: { max_connections: $((CONNS + 50)) }
dev_certs: false
log: { format: text }
EOF
    RUST_LOG=warn "$bin" run -c $WORK/m.yaml 2>$WORK/moat$i.log & PID=$!
    PIDS=("$PID")
    wait_port $port
    sleep 1
    r0=$(rss_kib $PID)
    "$BENCH" --target 127.0.0.1:$port --ca $PKI/ca.crt --sni localhost idle --conns "$CONNS" --hold 5 \
      >$WORK/out 2>/dev/null &
    b=$!
    for _ in $(seq 1200); do grep -q '^ready' $WORK/out 2>/dev/null && break; sleep 0.1; done
    sleep 3
    r1=$(rss_kib $PID)
    wait $b || true
    up=$(python3 -c "import json,sys; print(json.loads(open('$WORK/out').read().splitlines()[-1])['up'])")
    python3 -c "print('moat%d round %d: %d sessions, RSS %d -> %d KiB, %.1f KiB per session' % ($i, $k, $up, $r0, $r1, ($r1 - $r0) / max($up, 1)))"
    kill $PID; wait $PID 2>/dev/null || true; PIDS=()
  done
done
