#!/usr/bin/env bash
# bench/slope.sh: what one idle TLS session costs as the count grows (issue 17 item 4, "100k on
# paper"): RSS, descriptors and keep-alive CPU at each of SIZES sessions, for moat → mosquitto
# ("moat": moat's RSS and mosquitto's apart) and moat with its embedded broker ("embedded"); the
# front "mosquitto" (mosquitto's own TLS listener, no moat) is a reference row.
#
# Every (round, front, size) starts its processes afresh, reads RSS and /proc/PID/fd before,
# opens SIZE sessions with moat-bench (TLS 1.3, real CONNECT, keep alive KEEPALIVE s), reads
# them again 3 s after the last is up, then measures CPU (utime+stime) over QUIET s in which no
# client sends anything and
# over PING_WINDOW s in which every session sends a PINGREQ every PING_EVERY s, phases spread.
# (moat pings an external broker every 30 s per session; it sends none over the embedded
# broker's in-memory link, so "embedded" has no upstream keep-alive CPU.)
# Kernel memory per socket is not in any RSS: the script records the TCP and socket-inode slab
# counts and /proc/net/sockstat's TCP pages around the set-up (host-wide, so approximate).
#
# A size whose descriptors do not fit the hard `ulimit -n` (per session: FDS_MOAT for moat
# with an external broker, FDS_EMBEDDED with the embedded one; 64 kept aside, ops/fds.rs) is
# skipped with the reason printed; the size `max` is the most that fits. Knobs: SIZES
# ("1000 3000 6000 9000"), FRONTS ("moat embedded"), ROUNDS (2), KEEPALIVE (120), QUIET (30),
# PING_EVERY (5), PING_WINDOW (30), FDS_MOAT (2), FDS_EMBEDDED (1: the in-memory link; 3 with
# `broker.embedded.link: loopback`), MOAT, BENCH (release binaries), KEEP=1 (keep the work directory).
# CLIENT=mqttjs: the sessions come from MQTT.js instead (bench/idle-mqttjs.js; MQTTJS = a folder
# whose node_modules holds `mqtt`): RSS and descriptors only, held QUIET + 5 s, no CPU windows.
# usage: bash bench/slope.sh     (results: one JSON line per run in $WORK/slope.jsonl, a table)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SIZES=${SIZES:-1000 3000 6000 9000}; FRONTS=${FRONTS:-moat embedded}; ROUNDS=${ROUNDS:-2}
KEEPALIVE=${KEEPALIVE:-120}; QUIET=${QUIET:-30}; PING_EVERY=${PING_EVERY:-5}; PING_WINDOW=${PING_WINDOW:-30}
FDS_MOAT=${FDS_MOAT:-2}; FDS_EMBEDDED=${FDS_EMBEDDED:-1}
MOAT=${MOAT:-$ROOT/target/release/moat}; BENCH=${BENCH:-$ROOT/target/release/moat-bench}
for t in mosquitto python3; do command -v $t >/dev/null || { echo "slope.sh needs $t" >&2; exit 2; }; done
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
FDS=$(ulimit -n)
. "$ROOT/bench/lib.sh"
work_dir slope
# Between runs: every process of the run stopped (the exit handler stops what is left).
stop() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; PIDS=(); }
rss() { [[ -n "$1" ]] && rss_kib "$1" || echo 0; }
nfd() { [[ -n "$1" ]] && ls /proc/$1/fd | wc -l || echo 0; }
# Host-wide kernel counters: TCP sockets and socket inodes in the slab, TCP pages in sockstat.
kern() { awk '$1=="TCP" {t=$2} $1=="sock_inode_cache" {i=$2} END {printf "%d %d ", t, i}' /proc/slabinfo
  awk '/^TCP:/ {print $NF}' /proc/net/sockstat; }
waitfor() { # pattern file seconds
  for _ in $(seq $(($3 * 10))); do grep -q "$1" "$2" 2>/dev/null && return 0; sleep 0.1; done; return 1; }
PKI=$WORK/pki
bench_pki "$MOAT" "$PKI"
bench_policy "$WORK/pol"
RES=$WORK/slope.jsonl; : >$RES
log "hard descriptor limit $FDS; sizes $SIZES; fronts $FRONTS; $ROUNDS round(s); load $(cut -d' ' -f1-3 /proc/loadavg)"
for k in $(seq "$ROUNDS"); do
  for front in $FRONTS; do
    case $front in moat) per=$FDS_MOAT ;; embedded) per=$FDS_EMBEDDED ;; mosquitto) per=1 ;;
      *) echo "unknown front $front (moat, embedded, mosquitto)" >&2; exit 2 ;; esac
    for n in $SIZES; do
      [[ $n == max ]] && n=$(((FDS - 64) / per - 10))
      cap=$((n + 10))
      if ((cap * per + 64 > FDS)); then
        log "skip $front at $n sessions: $per descriptors each + 64 = $((cap * per + 64)) > ulimit -n $FDS"
        continue
      fi
      port=$(free_port); bport=$(free_port); p5=$(free_port); BPID=
      if [[ $front == mosquitto ]]; then
        # The reference: mosquitto's own TLS listener, no moat (the front process is mosquitto).
        printf 'user %s\nallow_anonymous true\nlog_type error\nlog_dest stderr\npersistence false\nlistener %s 127.0.0.1\ncertfile %s\nkeyfile %s\n' \
          "$(id -un)" "$port" $PKI/server.crt $PKI/server.key >$WORK/mosq.conf
        mosquitto -c $WORK/mosq.conf 2>>$WORK/mosquitto.log & MPID=$!; PIDS+=($MPID)
      else
        if [[ $front == moat ]]; then
          printf 'user %s\nallow_anonymous true\nlog_type error\nlog_dest stderr\npersistence false\nlistener %s 127.0.0.1\n' \
            "$(id -un)" "$bport" >$WORK/mosq.conf
          mosquitto -c $WORK/mosq.conf 2>>$WORK/mosquitto.log & BPID=$!; PIDS+=($BPID)
          wait_port $bport
          broker="{ upstream: { v3: \"127.0.0.1:$bport\" } }"
        else
          broker="{ embedded: { bind: \"127.0.0.1:$bport\", bind_v5: \"127.0.0.1:$p5\", max_connections: $cap } }"
        fi
        cat >$WORK/m.yaml <<EOF
listeners:
  - { name: mqtts, kind: tls, bind: "127.0.0.1:$port" }
tls: { cert: $PKI/server.crt, key: $PKI/server.key, client_certs: none }
broker: $broker
policies: [$WORK/pol/]
limits: { max_connections: $cap, kernel_filter: false }
dev_certs: false
log: { format: text }
EOF
        RUST_LOG=warn "$MOAT" run -c $WORK/m.yaml 2>>$WORK/moat.log & MPID=$!; PIDS+=($MPID)
      fi
      wait_port $port; sleep 1
      r0=$(rss $MPID); b0=$(rss "$BPID"); f0=$(nfd $MPID); g0=$(nfd "$BPID"); k0=$(kern)
      out=$WORK/out.$k.$front.$n
      bargs=(--front-pid $MPID); [[ -n "$BPID" ]] && bargs+=(--broker-pid $BPID)
      if [[ "${CLIENT:-}" == mqttjs ]]; then
        NODE_PATH=$MQTTJS/node_modules timeout $((600 + QUIET + 30)) node "$ROOT/bench/idle-mqttjs.js" \
          $port $PKI/ca.crt $n $KEEPALIVE $((QUIET + 5)) >$out 2>>$WORK/bench.log & B=$!; PIDS+=($B)
      else
      timeout $((600 + QUIET + PING_WINDOW + 30)) "$BENCH" --target 127.0.0.1:$port --ca $PKI/ca.crt --sni localhost \
        --label $front idle --conns $n --keep-alive $KEEPALIVE --quiet $QUIET --ping-every $PING_EVERY \
        --ping-window $PING_WINDOW --hold 1 "${bargs[@]}" >$out 2>>$WORK/bench.log & B=$!; PIDS+=($B)
      fi
      waitfor '^ready' $out 600 || log "$front $n: no ready line in 600 s"
      sleep 3
      r1=$(rss $MPID); b1=$(rss "$BPID"); f1=$(nfd $MPID); g1=$(nfd "$BPID"); k1=$(kern)
      [[ "${CLIENT:-}" == mqttjs ]] || waitfor '^pinged' $out $((QUIET + PING_WINDOW + 30)) || true
      r2=$(rss $MPID); b2=$(rss "$BPID")
      wait $B || log "$front $n: moat-bench exited with $?"
      python3 - "$(tail -n 1 $out)" $k $front $n $r0 $r1 $r2 $b0 $b1 $b2 $f0 $f1 $g0 $g1 $k0 $k1 >>$RES <<'EOF'
import json, sys
a = sys.argv
r = json.loads(a[1]); r.update(round=int(a[2]), front=a[3], size=int(a[4]))
keys = "rss0 rss1 rss2 brss0 brss1 brss2 fd0 fd1 bfd0 bfd1 tcp0 inode0 tcpmem0 tcp1 inode1 tcpmem1".split()
r.update(zip(keys, map(int, a[5:]))); print(json.dumps(r))
EOF
      log "$(tail -n 1 $RES | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); print(r["front"], r["size"], "up", r["up"], "failed", r["failed"], "dropped", r["dropped_while_held"], "RSS", r["rss0"], "->", r["rss1"], "pings", r.get("pings"), "pongs", r.get("pongs"))')"
      stop
    done
  done
done
python3 - $RES "$KEEPALIVE" "$QUIET" "$PING_EVERY" "$PING_WINDOW" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
ka, quiet, every, window = sys.argv[2:]
print(f"\nkeep alive {ka} s; quiet window {quiet} s; then a PINGREQ every {every} s per session for {window} s")
print("| front | round | sessions | front RSS KiB before → after | KiB/session | marginal KiB/session | broker KiB/session | fds/session (front, broker) | kernel per session: TCP socks, sockstat pages | quiet CPU ms/session/min (front, broker) | µs CPU per PINGREQ (front, broker) | dropped |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
prev = {}
for r in rows:
    up = max(r["up"], 1)
    kib = (r["rss1"] - r["rss0"]) / up
    key = (r["front"], r["round"])
    if key in prev:
        p = prev[key]
        marg = f'{((r["rss1"] - p["rss1"]) / (r["up"] - p["up"])):.1f}' if r["up"] != p["up"] else "–"
    else:
        marg = "–"
    prev[key] = r
    bkib = f'{(r["brss1"] - r["brss0"]) / up:.1f}' if r["brss0"] else "(in front)"
    fds = f'{(r["fd1"] - r["fd0"]) / up:.2f}, ' + (f'{(r["bfd1"] - r["bfd0"]) / up:.2f}' if r["bfd0"] else "–")
    tcp = f'{(r["tcp1"] - r["tcp0"]) / up:.2f}, {(r["tcpmem1"] - r["tcpmem0"]) / up:.3f}'
    qm = lambda k: f'{r[k] * 1000 / up / (r["quiet_s"] / 60):.3f}' if k in r else "–"
    quiet_cpu = qm("quiet_front_cpu_s") + ", " + qm("quiet_broker_cpu_s")
    def per_ping(pf, qf):
        if pf not in r or not r.get("pings"):
            return "–"
        extra = r[pf] - r[qf] * r["ping_s"] / r["quiet_s"]
        return f'{extra * 1e6 / r["pings"]:.1f}'
    ping = per_ping("ping_front_cpu_s", "quiet_front_cpu_s") + ", " + per_ping("ping_broker_cpu_s", "quiet_broker_cpu_s")
    print(f'| {r["front"]}{" (" + r["label"] + ")" if r.get("label") == "mqttjs" else ""} | {r["round"]} | {r["up"]:,} | {r["rss0"]:,} → {r["rss1"]:,} | {kib:.1f} | {marg} | {bkib} | {fds} | {tcp} | {quiet_cpu} | {ping} | {r["dropped_while_held"]} |')
EOF
