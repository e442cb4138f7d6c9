#!/usr/bin/env bash
# moat in front of an existing broker cluster, on loopback, with one command:
#
#   HAProxy (L4, send-proxy-v2) ─┬─► moat-1 ─┐   ┌─► aedes-1 ─┐
#                                └─► moat-2 ─┴──►┴─► aedes-2 ─┴─► Redis (sessions, pub/sub)
#
#   examples/cluster/run.sh start   # picks free ports, starts everything, prints them
#   examples/cluster/run.sh test    # one message through moat-1 to a subscriber on moat-2
#   examples/cluster/run.sh stop    # stops everything it started (by the pids it recorded)
#
# Needs haproxy, redis-server, node/npm (Debian packages; scripts/test installs them), the npm
# packages locked in package-lock.json (installed here with `npm ci` when missing), and a moat
# binary (MOAT_BIN, else `moat` on PATH, else cargo's debug build). State, logs and the
# chosen ports go to CLUSTER_DIR (default examples/cluster/.state); `ports.env` there lists
# the ports for scripts and tests. moat-1 prefers aedes-1 and moat-2 prefers aedes-2
# (`broker.upstream` failover order), so traffic between the two instances crosses the
# broker cluster. HAProxy sends every new connection to the first moat instance that is up
# (`balance first`) and retries the other when a connect fails, so a test knows where its
# clients are and sees them move when that instance dies.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
state="${CLUSTER_DIR:-$here/.state}"
mkdir -p "$state"
state="$(cd "$state" && pwd)"

moat_bin() {
  if [ -n "${MOAT_BIN:-}" ]; then echo "$MOAT_BIN"; return; fi
  if command -v moat >/dev/null 2>&1; then command -v moat; return; fi
  local bin="${CARGO_TARGET_DIR:-$repo/target}/debug/moat"
  [ -x "$bin" ] || (cd "$repo" && cargo build --quiet --bin moat)
  echo "$bin"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Waits (at most ~10 s) until something accepts connections on 127.0.0.1:$1.
wait_port() {
  local port=$1 name=$2 i
  for i in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "run.sh: $name did not open port $port; its log:" >&2
  tail -n 20 "$state/$name.log" >&2 || true
  return 1
}

# Starts "$@" in the background as $name, its output in $state/$name.log and its pid recorded.
launch() {
  local name=$1; shift
  "$@" >"$state/$name.log" 2>&1 &
  echo $! >"$state/$name.pid"
}

stop_one() {
  local pidfile=$1 pid i
  pid="$(cat "$pidfile" 2>/dev/null || true)"
  rm -f "$pidfile"
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null || return 0
  for i in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
}

cmd_stop() {
  local f
  for f in "$state"/haproxy.pid "$state"/moat-*.pid "$state"/aedes-*.pid "$state"/redis.pid; do
    [ -e "$f" ] && stop_one "$f"
  done
  return 0
}

write_moat() {
  local n=$1 port=$2 lb_port=$3 first=$4 second=$5 dir="$state/moat-$1"
  mkdir -p "$dir/policies"
  cat >"$dir/moat.yaml" <<EOF
listeners:
  # Behind HAProxy: every connection opens with a PROXY v2 header naming the device.
  - name: lb
    kind: tls
    bind: "127.0.0.1:$lb_port"
    proxy_protocol: v2
    trusted_proxies: ["127.0.0.1/32"]
  # Straight to this instance (tests pin clients to one instance with it).
  - { name: mqtts, kind: tls, bind: "127.0.0.1:$port" }
tls:
  cert: ../pki/server.crt
  key: ../pki/server.key
  client_certs: none
broker:
  upstream:
    # This instance's preferred node first; the other when it fails (failover).
    addresses: ["127.0.0.1:$first", "localhost:$second"]
    strategy: failover
    backoff: 2s
policies: [policies/]
dev_certs: false
EOF
  cat >"$dir/policies/00-network.yaml" <<EOF
network:
  allow: ["127.0.0.0/8", "::1"]
  # A device refused by its own address, which only the PROXY header tells moat.
  deny: ["127.0.0.66/32"]
limits:
  connections: { per_ip: off, global: off }
EOF
  cp "$state/users.yaml" "$dir/policies/users.yaml"
}

cmd_start() {
  cmd_stop
  rm -f "$state/ports.env"
  trap 'echo "run.sh: start failed; stopping what it started" >&2; cmd_stop' ERR
  command -v haproxy >/dev/null && command -v redis-server >/dev/null \
    || { echo "run.sh: needs haproxy and redis-server" >&2; exit 1; }
  [ -d "$here/node_modules/aedes" ] \
    || (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
  local moat redis b1 b2 m1 m2 l1 l2 lb
  moat="$(moat_bin)"
  redis=$(free_port); b1=$(free_port); b2=$(free_port)
  m1=$(free_port); m2=$(free_port); l1=$(free_port); l2=$(free_port); lb=$(free_port)

  launch redis redis-server --bind 127.0.0.1 --port "$redis" --save "" --appendonly no
  wait_port "$redis" redis
  launch aedes-1 node "$here/broker.mjs" "$b1" "$redis" aedes-1
  launch aedes-2 node "$here/broker.mjs" "$b2" "$redis" aedes-2
  wait_port "$b1" aedes-1
  wait_port "$b2" aedes-2

  # One PKI for both instances: behind one balancer they are one server to a device.
  if [ ! -e "$state/pki/server.crt" ]; then
    "$moat" certs ca --out "$state/pki" >/dev/null
    "$moat" certs server --dns localhost --ip 127.0.0.1 --out "$state/pki" >/dev/null
  fi
  {
    echo "anonymous: false"
    echo "users:"
    for u in alice bob; do printf '%s-pw\n' "$u" | "$moat" passwd "$u" | sed 's/^/  /'; done
    echo "acl:"
    echo "  - allow: all"
    echo '    topics: ["#"]'
    echo "    users: [alice, bob]"
  } >"$state/users.yaml"
  write_moat 1 "$m1" "$l1" "$b1" "$b2"
  write_moat 2 "$m2" "$l2" "$b2" "$b1"
  (cd "$state/moat-1" && launch moat-1 "$moat" run -c moat.yaml)
  (cd "$state/moat-2" && launch moat-2 "$moat" run -c moat.yaml)
  wait_port "$m1" moat-1
  wait_port "$m2" moat-2

  cat >"$state/haproxy.cfg" <<EOF
global
  maxconn 4096
defaults
  mode tcp
  timeout connect 2s
  timeout client 1h
  timeout server 1h
  retries 3
  option redispatch
frontend mqtt
  bind 127.0.0.1:$lb
  default_backend moat
backend moat
  balance ${HAPROXY_BALANCE:-first}
  # The PROXY v2 header on every connection, health checks included (they are connections
  # to moat's PROXY listener too, and one without the header would be refused and audited).
  default-server check inter 500ms fall 1 rise 1 send-proxy-v2 check-send-proxy
  server moat-1 127.0.0.1:$l1
  server moat-2 127.0.0.1:$l2
EOF
  launch haproxy haproxy -db -f "$state/haproxy.cfg"
  wait_port "$lb" haproxy

  cat >"$state/ports.env" <<EOF
REDIS=$redis
AEDES_1=$b1
AEDES_2=$b2
MOAT_1=$m1
MOAT_2=$m2
MOAT_1_LB=$l1
MOAT_2_LB=$l2
BALANCER=$lb
CA=$state/pki/ca.crt
EOF
  echo "cluster up: HAProxy 127.0.0.1:$lb → moat 127.0.0.1:$l1, 127.0.0.1:$l2 (PROXY v2; direct: $m1, $m2) → aedes 127.0.0.1:$b1, 127.0.0.1:$b2 → Redis 127.0.0.1:$redis"
  echo "CA for clients: $state/pki/ca.crt (users alice/alice-pw, bob/bob-pw); logs in $state"
}

cmd_test() {
  # shellcheck disable=SC1091
  . "$state/ports.env"
  local got
  mosquitto_sub -h localhost -p "$MOAT_2" --cafile "$CA" -u bob -P bob-pw -i bed-sub \
    -t bed/smoke -C 1 -W 10 >"$state/smoke.out" &
  local sub=$!
  # Retained, so the subscriber gets it whether it subscribed before or after.
  mosquitto_pub -h localhost -p "$MOAT_1" --cafile "$CA" -u alice -P alice-pw -i bed-pub \
    -t bed/smoke -m "through the cluster" -q 1 -r
  wait "$sub" || true
  got="$(cat "$state/smoke.out")"
  mosquitto_pub -h localhost -p "$BALANCER" --cafile "$CA" -u alice -P alice-pw -i bed-clear \
    -t bed/smoke -r -n -q 1
  if [ "$got" = "through the cluster" ]; then
    echo "ok: published through moat-1, received through moat-2"
  else
    echo "FAILED: the subscriber on moat-2 got '$got'" >&2
    exit 1
  fi
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  test) cmd_test ;;
  *) echo "usage: $0 start|stop|test" >&2; exit 2 ;;
esac
