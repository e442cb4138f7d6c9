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
WORK=$(mktemp -d /tmp/idle.XXXXXX); PID=
trap '[[ -n "$PID" ]] && kill $PID 2>/dev/null; sleep 0.5; rm -rf $WORK' EXIT
fp() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wp() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; return 1; }
rss() { awk '/^VmRSS/ {print $2}' /proc/$1/status; }
PKI=$WORK/pki
"$1" certs ca --out $PKI >/dev/null; "$1" certs server --dns localhost --ip 127.0.0.1 --out $PKI >/dev/null
mkdir -p $WORK/pol
cat > $WORK/pol/b.yaml <<'EOF'
anonymous: true
network: { allow: ["127.0.0.0/8"] }
limits:
  connections: { per_ip: off, global: off, max_per_ip: 100000 }
acl:
  - allow: all
    topics: ["#"]
    users: [anonymous]
EOF
for k in $(seq "$ROUNDS"); do
  i=0
  for bin in "$@"; do
    i=$((i + 1)); port=$(fp); p3=$(fp); p5=$(fp)
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
    wp $port
    sleep 1
    r0=$(rss $PID)
    "$BENCH" --target 127.0.0.1:$port --ca $PKI/ca.crt --sni localhost idle --conns "$CONNS" --hold 5 \
      >$WORK/out 2>/dev/null &
    b=$!
    for _ in $(seq 1200); do grep -q '^ready' $WORK/out 2>/dev/null && break; sleep 0.1; done
    sleep 3
    r1=$(rss $PID)
    wait $b || true
    up=$(python3 -c "import json,sys; print(json.loads(open('$WORK/out').read().splitlines()[-1])['up'])")
    python3 -c "print('moat%d round %d: %d sessions, RSS %d -> %d KiB, %.1f KiB per session' % ($i, $k, $up, $r0, $r1, ($r1 - $r0) / max($up, 1)))"
    kill $PID; wait $PID 2>/dev/null || true; PID=
  done
done
