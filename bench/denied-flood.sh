#!/usr/bin/env bash
# bench/denied-flood.sh: refusals of a denied-source flood per CPU-second, moat with its kernel
# filter (limits.kernel_filter: true, the default), moat without it (every denied connection
# accepted and reset in user space), and HAProxy (`tcp-request connection reject`), plus a
# legitimate client's QoS 1 throughput through moat during the flood vs quiet.
#
# The flood: FLOODERS processes of bench/denied-flood.py, each opening non-blocking TCP
# connections from SOURCES addresses in 127.66.0.0/16 (denied by the policy, as in
# compare.sh) and closing each at once with a reset, for SECS seconds, at nice 10 (an attacker
# is another machine; here it shares the cores). Open loop: a dropped SYN costs the flooder
# what an accepted one does.
#
# CPU: the defending process (utime+stime from /proc/PID/stat) and, because on loopback the
# kernel's receive path runs in the sender's softirq (no IRQ time accounting on this kernel:
# CONFIG_IRQ_TIME_ACCOUNTING unset), the flooders' own user and system time and the ksoftirqd
# threads' time. "refusals" are the flood's connection attempts; for moat without the filter
# the user-space count from its log (aggregated audit lines) is shown too, and for HAProxy its
# denied-connections counter; they are lower when the listen queue overflows.
#
# SPLIT=1 models the attacker as another machine on a shared host: the flooders run on CPU 1
# (`taskset`), moat and the legitimate client on CPU 0, for the quiet and the flooded runs
# alike; without it every process shares both cores and the flooders take what they can.
#
# Knobs (environment): SECS (10), FLOODERS (2), SOURCES (64 per flooder), RUNS (3), SPLIT (0),
# LOAD_COUNT (QoS 1 messages per throughput run, 40000; with SPLIT=1 use more, e.g. 200000,
# since one core moves them in under a second), MOAT, BENCH (release binaries; default
# in $CARGO_TARGET_DIR or target/), KEEP=1 (keep the work directory).
# usage: cargo build --release -p moat --bin moat -p moat-bench && bash bench/denied-flood.sh
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
MOAT=${MOAT:-$TARGET/release/moat}
BENCH=${BENCH:-$TARGET/release/moat-bench}
SECS=${SECS:-10}
FLOODERS=${FLOODERS:-2}
SOURCES=${SOURCES:-64}
RUNS=${RUNS:-3}
LOAD_COUNT=${LOAD_COUNT:-40000}
[ -x "$MOAT" ] || { echo "no moat binary at $MOAT (cargo build --release)" >&2; exit 1; }
[ -x "$BENCH" ] || { echo "no moat-bench binary at $BENCH (cargo build --release -p moat-bench)" >&2; exit 1; }
HAVE_HAPROXY=0; command -v haproxy >/dev/null && HAVE_HAPROXY=1

. "$ROOT/bench/lib.sh"
work_dir flood
TCK=$(getconf CLK_TCK)
DEFEND=(); ATTACK=()
if [[ "${SPLIT:-0}" == 1 ]]; then DEFEND=(taskset -c 0); ATTACK=(taskset -c 1); fi
softirqd_ticks() {
  local t=0 p
  for p in $(pgrep -x 'ksoftirqd/[0-9]+' || true); do t=$((t + $(cpu_ticks "$p"))); done
  echo "$t"
}

# --- certificates, policy, configs ----------------------------------------------------------
PKI="$WORK/pki"
bench_pki "$MOAT" "$PKI"
bench_policy "$WORK/policies"
P_FILTER=$(free_port); P_PLAIN=$(free_port); P_HAP=$(free_port)
moat_config() { # name port kernel_filter
  cat >"$WORK/$1.yaml" <<EOF
listeners:
  - { name: mqtts, kind: tls, bind: "127.0.0.1:$2" }
tls: { cert: $PKI/server.crt, key: $PKI/server.key, client_certs: none }
broker: { embedded: { bind: "127.0.0.1:$(free_port)", bind_v5: "127.0.0.1:$(free_port)" } }
policies: [$WORK/policies/]
limits: { kernel_filter: $3, max_connections: 5000 }
dev_certs: false
log: { format: text }
EOF
}
moat_config moat-filter "$P_FILTER" true
moat_config moat-nofilter "$P_PLAIN" false
# warn: the audit lines (one per source and interval, then aggregated counts) are the
# user-space refusal count.
for m in moat-filter moat-nofilter; do
  RUST_LOG=warn "${DEFEND[@]}" "$MOAT" run -c "$WORK/$m.yaml" 2>"$WORK/$m.log" &
  PIDS+=("$!"); eval "PID_${m//-/_}=$!"
done
if ((HAVE_HAPROXY)); then
  cat >"$WORK/haproxy.cfg" <<EOF
global
  maxconn 5000
  stats socket $WORK/haproxy.sock level admin
defaults
  mode tcp
  timeout connect 5s
  timeout client 1h
  timeout server 1h
frontend mqtts
  bind 127.0.0.1:$P_HAP
  tcp-request connection reject if { src 127.66.0.0/16 }
  default_backend moat
backend moat
  server m1 127.0.0.1:$P_PLAIN
EOF
  "${DEFEND[@]}" haproxy -db -f "$WORK/haproxy.cfg" 2>"$WORK/haproxy.log" &
  PIDS+=("$!"); PID_haproxy=$!
fi
for p in "$P_FILTER" "$P_PLAIN"; do wait_port "$p"; done
((HAVE_HAPROXY)) && wait_port "$P_HAP"
log "up: moat (filter) $P_FILTER, moat (no filter) $P_PLAIN$( ((HAVE_HAPROXY)) && echo ", haproxy $P_HAP")"
log "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

# flood PORT → "attempts errors flooder_cpu_s" (runs FLOODERS processes for SECS, bounded)
flood() {
  local port=$1 i outs=()
  for ((i = 0; i < FLOODERS; i++)); do
    "${ATTACK[@]}" nice -n 10 timeout $((SECS + 30)) python3 "$ROOT/bench/denied-flood.py" 127.0.0.1 "$port" "$SECS" \
      $((i * SOURCES)) "$SOURCES" >"$WORK/flood-$i.out" &
    outs+=("$!")
  done
  for i in "${outs[@]}"; do wait "$i" || true; done
  cat "$WORK"/flood-*.out | awk '{n += $1; e += $2; c += $3 + $4} END {printf "%d %d %.2f\n", n, e, c}'
  rm -f "$WORK"/flood-*.out
}

# user-space refusals counted in a moat log so far
moat_refusals() {
  python3 - "$1" <<'EOF'
import re, sys
n = 0
for line in open(sys.argv[1], errors="replace"):
    if "connections refused (repeated" in line:
        n += int(re.search(r"more=(\d+)", line).group(1))
    elif "connection refused" in line:
        n += 1
    elif "log table full" in line:
        n += int(re.search(r"refused=(\d+)", line).group(1))
print(n)
EOF
}
haproxy_denied() {
  python3 - "$WORK/haproxy.sock" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(5); s.connect(sys.argv[1])
s.sendall(b"show stat\n"); data = b""
while True:
    b = s.recv(65536)
    if not b: break
    data += b
lines = data.decode().splitlines(); head = lines[0].lstrip("# ").split(",")
for l in lines[1:]:
    f = dict(zip(head, l.split(",")))
    if f.get("svname") == "FRONTEND": print(f.get("dcon") or 0)
EOF
}

RESULTS="$WORK/results.txt"; : >"$RESULTS"
# --- refusals per CPU-second -----------------------------------------------------------------
ROWS=("moat-filter $PID_moat_filter $P_FILTER" "moat-nofilter $PID_moat_nofilter $P_PLAIN")
((HAVE_HAPROXY)) && ROWS+=("haproxy $PID_haproxy $P_HAP")
for run in $(seq "$RUNS"); do
  for r in "${ROWS[@]}"; do
    read -r row pid port <<<"$r"
    before=0
    [[ $row == moat-nofilter ]] && before=$(moat_refusals "$WORK/moat-nofilter.log")
    [[ $row == haproxy ]] && before=$(haproxy_denied)
    c0=$(cpu_ticks "$pid"); k0=$(softirqd_ticks); t0=$(date +%s.%N)
    read -r attempts errors fcpu <<<"$(flood "$port")"
    t1=$(date +%s.%N); c1=$(cpu_ticks "$pid"); k1=$(softirqd_ticks)
    seen=-
    [[ $row == haproxy ]] && seen=$(($(haproxy_denied) - before))
    [[ $row == moat-nofilter ]] && seen="log:$before"
    echo "refusals $run $row $attempts $errors $t0 $t1 $((c1 - c0)) $((k1 - k0)) $fcpu $seen" >>"$RESULTS"
    log "$row run $run: $attempts attempts"
  done
done
# The aggregated audit counts are written every 10 s: wait for the last of them.
sleep 11
total_logged=$(moat_refusals "$WORK/moat-nofilter.log")
filter_logged=$(moat_refusals "$WORK/moat-filter.log")

# --- a legitimate client during the flood ------------------------------------------------------
# load ROW PORT → msgs/s of QoS 1, 64 B, one publisher → one subscriber through moat (TLS)
load() {
  timeout 120 "${DEFEND[@]}" "$BENCH" --target "127.0.0.1:$2" --ca "$PKI/ca.crt" --sni localhost --label "$1" \
    load --count "$LOAD_COUNT" --payload 64 --qos 1 2>>"$WORK/bench.log" | tail -n 1 \
    | python3 -c 'import json,sys; print(round(json.loads(sys.stdin.read())["msgs_per_s"]))'
}
# The control row floods a port nothing listens on (the kernel answers each SYN with a reset)
# while the client goes through moat: what the test bed itself takes from the client (shared
# host, caches, the loopback device), whatever the defender does.
P_CLOSED=$(free_port)
for r in "moat-filter $P_FILTER $P_FILTER" "moat-nofilter $P_PLAIN $P_PLAIN" \
  "control:flood-elsewhere $P_FILTER $P_CLOSED"; do
  read -r row port target <<<"$r"
  load "$row" "$port" >/dev/null # warm-up
  for run in $(seq "$RUNS"); do
    quiet=$(load "$row" "$port")
    ( SECS=$((SECS * 3)) flood "$target" >/dev/null ) &
    fl=$!
    sleep 1
    flooded=$(load "$row" "$port")
    kill -- "$fl" 2>/dev/null || true; pkill -P "$fl" 2>/dev/null || true; wait "$fl" 2>/dev/null || true
    echo "legit $run $row $quiet $flooded" >>"$RESULTS"
    log "$row run $run: legitimate QoS 1 $quiet msg/s quiet, $flooded msg/s during the flood"
  done
done

# --- table ----------------------------------------------------------------------------------------
python3 - "$RESULTS" "$TCK" "$total_logged" "$filter_logged" <<'EOF'
import sys, collections
tck = int(sys.argv[2]); logged = int(sys.argv[3]); filter_logged = int(sys.argv[4])
rows = collections.defaultdict(list); legit = collections.defaultdict(list)
for l in open(sys.argv[1]):
    f = l.split()
    if f[0] == "refusals":
        _, run, row, n, err, t0, t1, cpu, kcpu, fcpu, seen = f
        rows[row].append((int(n), float(t1) - float(t0), int(cpu) / tck, int(kcpu) / tck, float(fcpu), seen))
    else:
        _, run, row, q, fl = f
        legit[row].append((int(q), int(fl)))
print("| front | attempts/s | defender CPU-s | refusals per defender CPU-s | ksoftirqd CPU-s | flooders CPU-s | refusals per CPU-s, all (defender+flooders+ksoftirqd) | counted by the defender |")
print("|---|---|---|---|---|---|---|---|")
for row, runs in rows.items():
    for n, t, cpu, kcpu, fcpu, seen in runs:
        per = f"{n / cpu:,.0f}" if cpu > 0 else "∞ (no CPU tick)"
        if row == "moat-nofilter": seen = f"{logged:,} over all runs (log)"
        if row == "moat-filter": seen = f"{filter_logged} (log: nothing reached accept)"
        print(f"| {row} | {n / t:,.0f} | {cpu:.2f} | {per} | {kcpu:.2f} | {fcpu:.2f} | {n / (cpu + kcpu + fcpu):,.0f} | {seen} |")
print()
print("| moat | legitimate QoS 1 msg/s quiet | during the flood | ratio |")
print("|---|---|---|---|")
for row, runs in legit.items():
    for q, fl in runs:
        print(f"| {row} | {q:,} | {fl:,} | {100 * fl / max(q, 1):.0f} % |")
EOF
log "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
