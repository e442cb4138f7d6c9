#!/usr/bin/env bash
# examples/cluster/bench.sh: messages/s and connections/s through one vs two moat instances
# behind the same HAProxy, in front of the bed's aedes cluster, and the CPU each instance spent.
#
# Two bed runs (examples/cluster/run.sh), rounds interleaved: HAProxy `balance first` (every
# connection on moat-1: one instance) and `balance roundrobin` (connections alternate: two).
# The load is moat-bench's: QoS 0 publishers → subscribers (each subscriber on every
# publisher's topic; with two instances the deliveries cross instances and broker nodes), and
# TLS + CONNECT/CONNACK per second. CPU is utime+stime of each moat process (/proc/PID/stat)
# over the run. Needs release binaries (MOAT_BIN, MOAT_BENCH; default cargo's release builds).
# Knobs: COUNT (messages per run, default 100000), PUBS/SUBS (default 4/4), ROUNDS (default 2),
# HS_SECONDS (default 3).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
export MOAT_BIN="${MOAT_BIN:-$target/release/moat}"
BENCH="${MOAT_BENCH:-$target/release/moat-bench}"
COUNT="${COUNT:-100000}"
PUBS="${PUBS:-4}"
SUBS="${SUBS:-4}"
ROUNDS="${ROUNDS:-2}"
HS_SECONDS="${HS_SECONDS:-3}"
TCK="$(getconf CLK_TCK)"
work="$(mktemp -d /tmp/moat-cluster-bench.XXXXXX)"
cleanup() {
  for d in "$work"/bed-*; do [ -d "$d" ] && CLUSTER_DIR="$d" "$here/run.sh" stop; done
  rm -rf "$work"
}
trap cleanup EXIT

cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }

# One measurement on the bed in $1 (balance $2): prints one JSON line per moat-bench run with
# the instances' CPU seconds added.
measure() {
  local dir=$1 balance=$2 mode=$3; shift 3
  # shellcheck disable=SC1091
  . "$dir/ports.env"
  local p1 p2 a0 b0 a1 b1 line
  p1=$(cat "$dir/moat-1.pid"); p2=$(cat "$dir/moat-2.pid")
  a0=$(cpu_ticks "$p1"); b0=$(cpu_ticks "$p2")
  line=$("$BENCH" --target "127.0.0.1:$BALANCER" --ca "$CA" --sni localhost \
    --username alice --password alice-pw --label "$balance" "$@" 2>>"$work/bench.log" | tail -n 1)
  a1=$(cpu_ticks "$p1"); b1=$(cpu_ticks "$p2")
  python3 - "$line" "$balance" "$mode" "$((a1 - a0))" "$((b1 - b0))" "$TCK" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); r["balance"] = sys.argv[2]; r["mode"] = sys.argv[3]
r["cpu_moat1_s"] = int(sys.argv[4]) / int(sys.argv[6]); r["cpu_moat2_s"] = int(sys.argv[5]) / int(sys.argv[6])
print(json.dumps(r))
PY
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for balance in first roundrobin; do
  mkdir -p "$work/bed-$balance"
  CLUSTER_DIR="$work/bed-$balance" HAPROXY_BALANCE="$balance" "$here/run.sh" start >&2
done
for round in $(seq 1 "$ROUNDS"); do
  for balance in first roundrobin; do
    dir="$work/bed-$balance"
    measure "$dir" "$balance" qos0 load --pubs "$PUBS" --subs "$SUBS" --count "$COUNT" --payload 64 --qos 0 \
      >>"$work/results.jsonl"
    measure "$dir" "$balance" connect handshake --connect --concurrency 8 --duration "$HS_SECONDS" \
      >>"$work/results.jsonl"
  done
  echo "round $round done" >&2
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
cat "$work/results.jsonl" >&2
python3 - "$work/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def pick(r, *keys):
    for k in keys:
        if k in r: return r[k]
    return None
print("| instances | run | QoS0 msg/s | lost | TLS+CONNECT/s | CPU s moat-1 / moat-2 | CPU s per 1M msgs (both) |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    n = "1" if r["balance"] == "first" else "2"
    cpu = f'{r["cpu_moat1_s"]:.2f} / {r["cpu_moat2_s"]:.2f}'
    if r["mode"] == "qos0":
        rate = pick(r, "msgs_per_s")
        recv = pick(r, "received", "delivered")
        lost = pick(r, "lost")
        total = r["cpu_moat1_s"] + r["cpu_moat2_s"]
        per_m = total / (recv / 1e6) if recv else float("nan")
        print(f"| {n} | qos0 | {rate:,.0f} | {lost} | – | {cpu} | {per_m:.2f} |")
    else:
        rate = pick(r, "per_s")
        print(f"| {n} | connect | – | – | {rate:,.0f} | {cpu} | – |")
PY
