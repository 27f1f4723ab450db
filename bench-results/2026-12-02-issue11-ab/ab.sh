#!/bin/bash
# A/B: the before and after binaries, alternating, S2 at 1 and 2 shards.
PERF=/work/main/target/release/warren-perf
for shards in 1 2; do
for round in 1 2 3; do
  for which in before after; do
    if [ $which = before ]; then BIN=/tmp/before/target/release/warren; else BIN=/work/main/target/release/warren; fi
    D=$(mktemp -d); PORT=$((20000 + RANDOM % 20000))
    $BIN serve --port $PORT --bind 127.0.0.1 --shards $shards --data-dir $D --log warn >/dev/null 2>&1 &
    PID=$!; sleep 1
    R=$($PERF --uri amqp://guest:guest@127.0.0.1:$PORT/%2F --producers 1 --consumers 1 --size 16 --confirm 1000 --multi-ack-every 100 --prefetch 1000 --duration 8 2>&1 | grep -oE "received [0-9]+ \([0-9]+ msg/s\)" | tail -1)
    echo "shards=$shards round=$round $which $R"
    kill $PID; wait $PID 2>/dev/null; rm -rf $D
  done
done; done
