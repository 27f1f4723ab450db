#!/bin/bash
# Broker CPU per message, before issue 13 (51d854b) and after, in
# alternating rounds: on this shared, noisy VM CPU seconds per message move
# far less than msg/s do. Each load run moves a fixed number of messages;
# the broker's user+system CPU (all threads) is read from /proc around it.
# Usage (repo root): ROUNDS=4 bench-results/2026-12-02-issue13-cpu/run.sh
set -e
BEFORE=${BEFORE:-/tmp/before-target/release/warren}
AFTER=${AFTER:-target/release/warren}
PERF=${PERF:-target/release/warren-perf}
ROUNDS=${ROUNDS:-4}
OUT=${OUT:-bench-results/2026-12-02-issue13-cpu}
TCK=$(getconf CLK_TCK)
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
declare -A LOAD=(
  [S1]="--producers 1 --consumers 1 --size 16 --count 6000000"
  [S2]="--producers 1 --consumers 1 --size 16 --confirm 1000 --multi-ack-every 100 --prefetch 1000 --count 4000000"
  [S6]="--producers 4 --consumers 4 --queues 4 --size 16 --count 1500000"
)
echo "round build scenario messages broker_cpu_s cpu_us_per_msg consume_msg_s" > $OUT/results.txt
for r in $(seq 1 $ROUNDS); do
  if [ $((r % 2)) = 1 ]; then ORDER="before after"; else ORDER="after before"; fi
  for which in $ORDER; do
    if [ $which = before ]; then BIN=$BEFORE; else BIN=$AFTER; fi
    D=$(mktemp -d); PORT=$((20000 + RANDOM % 20000))
    $BIN serve --bind 127.0.0.1 --port $PORT --data-dir $D --log warn \
      --management-port 0 --prometheus-port 0 > $D/log 2>&1 &
    PID=$!
    for i in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
    for sc in S1 S2 S6; do
      c0=$(cpu $PID)
      $PERF --uri amqp://guest:guest@127.0.0.1:$PORT/%2F ${LOAD[$sc]} -q --cleanup \
        --queue-pattern cpu-$sc-%d --json $D/$sc.json > /dev/null
      c1=$(cpu $PID)
      python3 - "$r" "$which" "$sc" "$c0" "$c1" "$TCK" "$D/$sc.json" >> $OUT/results.txt <<'PY'
import json, sys
r, which, sc, c0, c1, tck, f = sys.argv[1:]
j = json.load(open(f))
cpu = (int(c1) - int(c0)) / int(tck)
print(r, which, sc, j["received"], f"{cpu:.2f}", f"{cpu / j['received'] * 1e6:.3f}", f"{j['consume_rate']:.0f}")
PY
    done
    kill $PID; wait $PID 2>/dev/null || true; rm -rf $D
  done
done
python3 - $OUT/results.txt <<'PY'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1]).read().splitlines()[1:]]
print("| scenario | before: CPU µs/msg (rounds) | median | after: CPU µs/msg (rounds) | median | change |")
print("|---|---|---|---|---|---|")
for sc in ["S1", "S2", "S6"]:
    b = [float(x[5]) for x in rows if x[2] == sc and x[1] == "before"]
    a = [float(x[5]) for x in rows if x[2] == sc and x[1] == "after"]
    mb, ma = st.median(b), st.median(a)
    print(f"| {sc} | {' '.join(f'{v:.3f}' for v in b)} | {mb:.3f} | {' '.join(f'{v:.3f}' for v in a)} | {ma:.3f} | {(ma / mb - 1) * 100:+.1f}% |")
PY
