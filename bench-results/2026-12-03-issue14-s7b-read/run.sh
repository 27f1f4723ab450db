#!/bin/bash
# S7b (64 KiB bodies, 1 -> 1, auto-ack) with and without reading the rest
# of a big frame straight into the unzeroed spare capacity of the
# connection's buffer: the two builds alternate, each round a fresh broker
# (default shards), a fixed count of messages, the broker's user + system
# CPU read from /proc around the load.
# Usage (repo root): A=/tmp/warren-noread B=/tmp/warren-read ROUNDS=6 \
#   bench-results/2026-12-03-issue14-s7b-read/run.sh
set -e
A=${A:?build without the change}; B=${B:?build with it}
PERF=${PERF:-target/release/warren-perf}
ROUNDS=${ROUNDS:-6}; COUNT=${COUNT:-150000}; SHARDS=${SHARDS:-2}
OUT=${OUT:-bench-results/2026-12-03-issue14-s7b-read}
TCK=$(getconf CLK_TCK)
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
echo "round build shards messages broker_cpu_s cpu_s_per_gib consume_msg_s" > $OUT/results.txt
for r in $(seq 1 $ROUNDS); do
  if [ $((r % 2)) = 1 ]; then ORDER="noread read"; else ORDER="read noread"; fi
  for which in $ORDER; do
    if [ $which = noread ]; then BIN=$A; else BIN=$B; fi
    D=$(mktemp -d); PORT=$((20000 + RANDOM % 20000))
    $BIN serve --shards $SHARDS --bind 127.0.0.1 --port $PORT --data-dir $D --log warn \
      --management-port 0 --prometheus-port 0 > $D/log 2>&1 &
    PID=$!
    for i in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
    c0=$(cpu $PID)
    $PERF --uri amqp://guest:guest@127.0.0.1:$PORT/%2F --producers 1 --consumers 1 \
      --size 65536 --count $COUNT -q --cleanup --json $D/r.json > /dev/null
    c1=$(cpu $PID)
    python3 - "$r" "$which" "$SHARDS" "$c0" "$c1" "$TCK" "$D/r.json" >> $OUT/results.txt <<'PY'
import json, sys
r, which, shards, c0, c1, tck, f = sys.argv[1:]
j = json.load(open(f))
cpu = (int(c1) - int(c0)) / int(tck)
gib = j["received"] * 65536 / 2**30
print(r, which, shards, j["received"], f"{cpu:.2f}", f"{cpu / gib:.3f}", f"{j['consume_rate']:.0f}")
PY
    kill $PID; wait $PID 2>/dev/null || true; rm -rf $D
  done
done
python3 - $OUT/results.txt <<'PY'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1]).read().splitlines()[1:]]
for col, name in [(5, "CPU s/GiB"), (6, "consumed msg/s")]:
    n = [float(x[col]) for x in rows if x[1] == "noread"]
    y = [float(x[col]) for x in rows if x[1] == "read"]
    print(f"{name}: without {st.median(n):.3f} ({' '.join(map(str, n))}); "
          f"with {st.median(y):.3f} ({' '.join(map(str, y))}); {(st.median(y) / st.median(n) - 1) * 100:+.1f}%")
PY
