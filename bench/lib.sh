# bench/lib.sh: what the bench scripts set up the same way. Sourced (`. "$ROOT/bench/lib.sh"`),
# not run.
#
#   work_dir NAME        WORK = a fresh /tmp/moat-NAME.XXXXXX; every PID added to PIDS is
#                        stopped on exit (TERM, then KILL after 5 s), then WORK is removed
#                        (kept with KEEP=1)
#   log TEXT…            a time-stamped line on stderr
#   free_port            a loopback TCP port free now
#   wait_port PORT       until something listens on 127.0.0.1:PORT (bounded: WAIT_PORT_S, 10)
#   cpu_ticks PID        utime+stime in clock ticks;  rss_kib PID: VmRSS
#   bench_pki MOAT DIR   a CA and a server certificate for localhost/127.0.0.1 (moat certs)
#   bench_policy DIR     DIR/bench.yaml: deny by default, opened for the bench (loopback allowed,
#                        127.66.0.0/16 denied, no connection rate limits, anonymous on every
#                        topic, 4096 QoS 1 in flight: moat-bench keeps 1000 outstanding)

work_dir() {
  WORK="$(mktemp -d "/tmp/moat-$1.XXXXXX")"
  PIDS=()
  trap _bench_cleanup EXIT
  trap 'exit 130' INT TERM
}
_bench_cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  if [[ "${KEEP:-0}" == 1 ]]; then echo "work directory kept: $WORK" >&2; else rm -rf "$WORK"; fi
}

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() {
  for _ in $(seq $((${WAIT_PORT_S:-10} * 10))); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "nothing listens on port $1" >&2
  return 1
}

cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

bench_pki() {
  "$1" certs ca --out "$2" >/dev/null
  "$1" certs server --dns localhost --ip 127.0.0.1 --out "$2" >/dev/null
}

bench_policy() {
  mkdir -p "$1"
  cat >"$1/bench.yaml" <<'POLICY'
anonymous: true
# 127.66.0.0/16 is the denied source of the refused-connection and flood measurements.
network: { allow: ["127.0.0.0/8", "::1"], deny: ["127.66.0.0/16"] }
limits:
  connections: { per_ip: off, global: off, max_per_ip: 100000 }
  # moat-bench keeps up to 1000 QoS 1 messages in flight; moat's default cap (128) closes a
  # 3.1.1 client above it, which is right for devices and wrong for a throughput test.
  client: { max_inflight: 4096 }
auto_ban:
  failed_auth: { count: 0, within: 1m, ban_for: 1s }
acl:
  - allow: all
    topics: ["#"]
    users: [anonymous]
POLICY
}
