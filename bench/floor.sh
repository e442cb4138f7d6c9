#!/usr/bin/env bash
# bench/floor.sh: where a front door's time goes per forwarded message in the fleet fan-in shape
# (N TLS publishers at a few msg/s each → 1 subscriber, QoS 0, 64 B), counted rather than timed:
#
#   perf      system calls by type (perf stat on the syscalls:sys_enter_* tracepoints, counted in
#             the kernel, little overhead), context switches and CPU migrations of the front
#             door's process (all threads), and its user/system CPU split (/proc/PID/stat)
#   strace    the same system calls through strace -c -f (ptrace: slows the process; a
#             cross-check of the perf counts, and time per call type)
#   record    perf record (cpu-clock samples with call graphs) of each front door, kernel and
#             user: which kernel paths the system time is (first round only)
#   callgrind moat's user-space instructions per message, and the functions they go to
#             (callgrind_annotate, inclusive); the moat row only, at a rate valgrind keeps up with
#
# Every count covers the publishing phase only (moat-bench's --hook-start/--hook-end, from the
# first publish to the end of the drain) and is divided by the messages delivered. The set-up
# (mosquitto, HAProxy, nginx, moat) is bench/shapes.sh's, run once per pass and round.
#
#   bash bench/floor.sh
#
# Knobs: PASSES ("perf strace record callgrind"), ROUNDS (2; perf and strace passes alternate with
# each other round by round), FRONTS ("haproxy nginx-tls moat"), PUBS (2000), RATE (2 msg/s
# per publisher), SECONDS_ (10), CG_RATE (0.2: callgrind pass), MOAT, BENCH, OUT
# (/tmp/moat-floor: raw outputs are kept there). Needs perf (linux-perf) with the syscall
# tracepoints readable, strace, valgrind, and what bench/shapes.sh needs.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PASSES="${PASSES:-perf strace record callgrind}"
ROUNDS="${ROUNDS:-2}"
FRONTS="${FRONTS:-haproxy nginx-tls moat}"
PUBS="${PUBS:-2000}"
RATE="${RATE:-2}"
SECS="${SECONDS_:-10}"
CG_RATE="${CG_RATE:-0.2}"
export FLOOR_OUT="${OUT:-/tmp/moat-floor}"
mkdir -p "$FLOOR_OUT"
for tool in perf strace valgrind callgrind_control callgrind_annotate; do
  command -v "$tool" >/dev/null || { echo "floor.sh needs $tool (Debian: linux-perf, strace, valgrind)" >&2; exit 2; }
done
perf stat -e 'syscalls:sys_enter_read' -- true >/dev/null 2>&1 ||
  { echo "perf cannot count syscall tracepoints here (perf_event_paranoid, tracefs)" >&2; exit 2; }

# Hooks, run by moat-bench with FRONT_PID, ROW and SHAPE set; FLOOR_TAG names the pass and round.
# A counter is started in the background and stopped with SIGINT, which makes perf and strace
# print their summaries; the end hook waits (bounded) for it to finish writing.
STOP='p=$(cat "$FLOOR_OUT/$FLOOR_TAG.$ROW.pid"); kill -INT "$p"; for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || exit 0; sleep 0.1; done; kill -9 "$p"'
# The calls a proxy makes per message, and the total (raw_syscalls) so the rest shows as "other"
# (all 361 tracepoints at once make perf slow to attach and detach on a many-threaded process).
CALLS="read readv recvfrom recvmsg recvmmsg write writev sendto sendmsg sendmmsg epoll_wait
  epoll_pwait epoll_pwait2 epoll_ctl futex sched_yield setsockopt getsockopt clock_gettime
  clock_nanosleep nanosleep accept4 close io_uring_enter timerfd_settime mprotect madvise mmap
  munmap brk openat statx getrandom"
EVENTS=raw_syscalls:sys_enter,context-switches,cpu-migrations,task-clock
for c in $CALLS; do EVENTS+=",syscalls:sys_enter_$c"; done
export EVENTS
PERF_START='perf stat -x, -e "$EVENTS" -p "$FRONT_PID" -o "$FLOOR_OUT/$FLOOR_TAG.$ROW.txt" & echo $! >"$FLOOR_OUT/$FLOOR_TAG.$ROW.pid"; sleep 1'
STRACE_START='strace -c -f -p "$FRONT_PID" -o "$FLOOR_OUT/$FLOOR_TAG.$ROW.txt" 2>/dev/null & echo $! >"$FLOOR_OUT/$FLOOR_TAG.$ROW.pid"; sleep 1'
RECORD_START='perf record -e cpu-clock -F 2000 -g -p "$FRONT_PID" -o "$FLOOR_OUT/$FLOOR_TAG.$ROW.data" >/dev/null 2>&1 & echo $! >"$FLOOR_OUT/$FLOOR_TAG.$ROW.pid"; sleep 1'
CG_START='[ "$ROW" = moat ] && callgrind_control -z "$FRONT_PID" >/dev/null 2>&1; true'
CG_END='[ "$ROW" = moat ] && callgrind_control -d publishing "$FRONT_PID" >/dev/null 2>&1; true'

run_shapes() { # TAG FRONTS RATE [env…]
  local tag=$1 fronts=$2 rate=$3; shift 3
  FLOOR_TAG=$tag env "$@" NO_BUILD=1 SHAPES=fanin FANIN_PUBS="$PUBS" QOS_LIST=0 WSS=0 \
    FRONTS="$fronts" FANIN_RATE="$rate" FANIN_SECONDS="$SECS" \
    WAIT_PORT_S="${WAIT_PORT_S:-30}" RESULTS_OUT="$FLOOR_OUT/$tag.jsonl" bash "$ROOT/bench/shapes.sh" \
    >"$FLOOR_OUT/$tag.table" 2>"$FLOOR_OUT/$tag.log" || echo "$tag failed: see $FLOOR_OUT/$tag.log" >&2
}

for k in $(seq "$ROUNDS"); do
  for pass in $PASSES; do
    case $pass in
    perf) echo "round $k: perf stat" >&2
      run_shapes "perf.$k" "$FRONTS" "$RATE" HOOK_START="$PERF_START" HOOK_END="$STOP" ;;
    strace) echo "round $k: strace -c" >&2
      run_shapes "strace.$k" "$FRONTS" "$RATE" HOOK_START="$STRACE_START" HOOK_END="$STOP" ;;
    record) ((k == 1)) || continue; echo "perf record (cpu-clock samples, kernel and user)" >&2
      run_shapes "record" "$FRONTS" "$RATE" HOOK_START="$RECORD_START" HOOK_END="$STOP" ;;
    callgrind) ((k == 1)) || continue; echo "callgrind (moat only, $CG_RATE msg/s per publisher)" >&2
      run_shapes "callgrind" moat "$CG_RATE" WAIT_PORT_S=120 HOOK_START="$CG_START" HOOK_END="$CG_END" \
        MOAT_PREFIX="valgrind --tool=callgrind --callgrind-out-file=$FLOOR_OUT/callgrind.out.%p" ;;
    esac
  done
done

python3 "$ROOT/bench/floor_report.py" "$FLOOR_OUT" $PASSES
