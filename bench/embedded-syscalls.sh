#!/usr/bin/env bash
# bench/embedded-syscalls.sh: system calls per forwarded message of moat + its embedded broker
# (all threads, `strace -c -f`), for one or more moat builds in turn. A count, not a time, so a
# busy machine does not move it much (strace slows the process, which batches less: compare
# builds within one run). Fleet fan-in shape by default: PUBS publishers → 1 subscriber, QoS 0,
# 64 bytes, RATE msg/s in total; two loads (SMALL and LARGE messages) are counted and the
# difference divided by the difference in messages, so connection set-up cancels out.
# Knobs: PUBS (200), RATE (400), SMALL (1200), LARGE (4800), BENCH (moat-bench).
# usage: bash bench/embedded-syscalls.sh path/to/moat-A [path/to/moat-B ...]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BENCH=${BENCH:-$ROOT/target/release/moat-bench}
PUBS=${PUBS:-200}; RATE=${RATE:-400}; SMALL=${SMALL:-1200}; LARGE=${LARGE:-4800}
command -v strace >/dev/null || { echo "needs strace" >&2; exit 2; }
. "$ROOT/bench/lib.sh"
work_dir sys
W=$WORK
bench_pki "$1" "$W/pki"
bench_policy "$W/pol"
for bin in "$@"; do
  port=$(free_port); p3=$(free_port); p5=$(free_port)
  cat > $W/m.yaml <<Y
listeners:
  - { name: mqtts, kind: tls, bind: "127.0.0.1:$port" }
tls: { cert: $W/pki/server.crt, key: $W/pki/server.key, client_certs: none }
broker: { embedded: { bind: "127.0.0.1:$p3", bind_v5: "127.0.0.1:$p5", max_connections: $((PUBS + 100)) } }
policies: [$W/pol/]
limits: { max_connections: $((PUBS + 100)) }
dev_certs: false
Y
  RUST_LOG=warn "$bin" run -c $W/m.yaml 2>$W/log & PID=$!
  PIDS=("$PID")
  wait_port $port; sleep 1
  for n in $SMALL $LARGE; do
    strace -c -f -p $PID -o $W/st.$n 2>/dev/null & S=$!
    sleep 1
    "$BENCH" --target 127.0.0.1:$port --ca $W/pki/ca.crt --sni localhost load --pubs "$PUBS" --subs 1 \
      --rate "$RATE" --count $n --payload 64 --qos 0 --duration $((n / RATE + 5)) --drain 2 \
      >$W/out.$n 2>&1 || grep -m3 -i "error" $W/out.$n
    kill -INT $S; wait $S 2>/dev/null || true
  done
  python3 - $W/st.$SMALL $W/st.$LARGE $((LARGE - SMALL)) "$bin" <<'PY'
import sys
def calls(path):
    out = {}
    for line in open(path):
        f = line.split()
        # % time, seconds, usecs/call, calls, [errors], syscall
        if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
            out[f[-1]] = int(f[3])
    return out
a, b, n = calls(sys.argv[1]), calls(sys.argv[2]), int(sys.argv[3])
d = {k: b.get(k, 0) - a.get(k, 0) for k in set(a) | set(b)}
top = sorted(d.items(), key=lambda kv: -kv[1])[:6]
print(f"{sys.argv[4]}: {sum(d.values()) / n:.2f} system calls per message ("
      + ", ".join(f"{k} {v / n:.2f}" for k, v in top) + ")")
PY
  kill $PID; wait $PID 2>/dev/null || true; PIDS=()
done
