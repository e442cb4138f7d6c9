#!/usr/bin/env bash
# bench/password-flood.sh: the wrong-password flood of tests/password_flood.rs, longer and against a
# release moat. 8 source addresses (127.0.0.2-9) send raw CONNECTs over TLS with a wrong
# password for alice (argon2id at the crate's default cost, as `moat passwd` writes), auto-ban
# and connection rates off, while a legitimate client from 127.0.0.10 logs in every 100 ms
# (success cache off, so it queues like everyone else). Prints one line per run: CONNACK codes,
# moat's RSS (idle after one login, peak during the flood, after it), legitimate logins and the
# slowest CONNECT→CONNACK; the test's assertions (RSS within 64 MiB of idle, back within
# 16 MiB, logins under 1 s) apply to every run.
# Knobs: SECS (30), PER_SOURCE ("6 32": connections each source keeps going at once, one run
# each), MOAT (the moat binary; default the release build in the cargo target dir).
# usage: cargo build --release && bash bench/password-flood.sh
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
MOAT=${MOAT:-$TARGET/release/moat}
SECS=${SECS:-30}
[ -x "$MOAT" ] || { echo "no moat binary at $MOAT (cargo build --release)" >&2; exit 1; }
cd "$ROOT"
for per in ${PER_SOURCE:-6 32}; do
  MOAT_FLOOD_BIN="$MOAT" MOAT_FLOOD_SECS="$SECS" MOAT_FLOOD_PER_SOURCE="$per" \
    cargo test --quiet --test password_flood -- --nocapture 2>&1 \
    | grep -E '^flood|panicked|RSS|legitimate|test result' || true
done
