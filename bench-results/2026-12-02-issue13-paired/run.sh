#!/bin/bash
# Before (51d854b) and after, side by side with RabbitMQ, in paired
# one-round runs: each round runs the script once per build, back to back,
# the order alternating, so slow drift on this shared machine hits both.
# Usage (from the repo root): ROUNDS=5 bench-results/2026-12-02-issue13-paired/run.sh
set -e
BEFORE=${BEFORE:-/tmp/before-target/release/warren}
AFTER=${AFTER:-target/release/warren}
ROUNDS=${ROUNDS:-5}
OUT=${OUT:-bench-results/2026-12-02-issue13-paired}
cargo build --release -p warren -p warren-perf
for r in $(seq 1 $ROUNDS); do
  if [ $((r % 2)) = 1 ]; then ORDER="before after"; else ORDER="after before"; fi
  for which in $ORDER; do
    if [ $which = before ]; then BIN=$BEFORE; else BIN=$AFTER; fi
    python3 tools/bench-vs-rabbitmq.py --warren-bin "$BIN" --scenarios S1,S2,S6 \
      --rounds 1 --seconds 8 --no-chart --out "$OUT/r$r-$which" > "$OUT/r$r-$which.log" 2>&1
  done
done
python3 "$(dirname "$0")/ratios.py" "$OUT"
